"""Bad and unusual inputs, through the API and the CLI, as a hostile user tries them.

Every case asserts the exception type, that the message names the offending argument or
value, and that nothing of the caller's changed: guide parameters and the global param
store, the data tensors, a network's parameters, buffers (batch-norm statistics) and
train/eval mode, and the global random state of torch, Pyro, numpy and ``random``.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer.autoguide import AutoDelta, AutoMultivariateNormal, AutoNormal
from torch import nn

import pyro_unlearn as pu
from pyro_unlearn import classifiers as unn
from pyro_unlearn.cli import main

N = 30


class State:
    """Everything a case may touch, built once per test."""

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.blr = pu.BayesianLinearRegression(noise_scale=0.7, prior_scale=1.5)
        self.model = self.blr.model
        self.X = torch.randn(N, 3, generator=g)
        self.y = self.X @ torch.tensor([1.0, -1.0, 0.5]) + 0.7 * torch.randn(N, generator=g)
        post = self.blr.posterior(self.X, self.y)
        self.guide = pu.LaplaceGuide.from_precision(
            self.model, post.mean, post.precision, model_args=(self.X, self.y)
        )
        self.Xe, self.ye = self.X[:3], self.y[:3]
        self.draws = {"w": post.mean + torch.randn(200, 3, generator=g) * 0.1}
        pyro.clear_param_store()
        self.auto = AutoNormal(self.model)  # parameters in the global param store
        self.auto(self.X, self.y)
        self.delta = AutoDelta(self.model)  # a point estimate, in the param store too
        self.delta(self.X, self.y)
        self.ledger = pu.ForgetLedger(N)
        self.net = nn.Sequential(
            nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 3)
        )
        self.net.train()  # batch norm and dropout active: the hardest case for "untouched"
        self.xc = torch.randn(20, 4, generator=g)
        self.yc = torch.randint(0, 3, (20,), generator=g)
        self.mask = torch.zeros(N, dtype=torch.bool)
        self.mask[:3] = True


def _frozen(net: nn.Module) -> nn.Module:
    """A copy of ``net`` with every parameter frozen (``requires_grad=False``)."""
    net = copy.deepcopy(net)
    net.requires_grad_(False)
    return net


def _class_zero(s: State) -> tuple:
    """The tiny network, its class-0 examples to forget and the others retained."""
    return s.net, s.xc[s.yc == 0], s.yc[s.yc == 0], s.xc[s.yc > 0], s.yc[s.yc > 0]


class Snapshot:
    """The caller's objects and random state, to compare bit for bit afterwards."""

    def __init__(self, s: State):
        self.s = s
        self.tensors = {k: v.clone() for k, v in vars(s).items() if isinstance(v, torch.Tensor)}
        self.draws = {k: v.clone() for k, v in s.draws.items()}
        self.guide = copy.deepcopy(s.guide.state_dict())
        self.store = {k: v.detach().clone() for k, v in pyro.get_param_store().items()}
        self.net = copy.deepcopy(s.net.state_dict())
        self.mode = [m.training for m in s.net.modules()]
        self.rng = (
            torch.get_rng_state(),
            np.random.get_state()[1].copy(),
            random.getstate(),
        )

    def assert_unchanged(self):
        s = self.s
        for k, v in self.tensors.items():
            assert torch.equal(getattr(s, k), v), f"data tensor {k} changed"
        assert all(torch.equal(s.draws[k], v) for k, v in self.draws.items())
        assert all(torch.equal(v, self.guide[k]) for k, v in s.guide.state_dict().items())
        store = {k: v.detach() for k, v in pyro.get_param_store().items()}
        assert set(store) == set(self.store) and all(
            torch.equal(store[k], self.store[k]) for k in store
        )
        assert all(torch.equal(v, self.net[k]) for k, v in s.net.state_dict().items()), (
            "net changed"
        )
        assert [m.training for m in s.net.modules()] == self.mode
        assert torch.equal(torch.get_rng_state(), self.rng[0]), "torch RNG state changed"
        assert np.array_equal(np.random.get_state()[1], self.rng[1]), "numpy RNG state changed"
        assert random.getstate() == self.rng[2], "random's state changed"


@dataclass
class Case:
    name: str
    call: Callable[[State], object]
    error: type
    match: str


def unlearn(s, *args, **kwargs):
    return pu.unlearn(s.model, s.guide, *args, **kwargs)


def bad_model(X, y=None):
    w = pyro.sample("w", dist.Normal(torch.zeros(3), 1.0).to_event(1))
    with pyro.plate("data", len(X)):
        pyro.sample("y", dist.Normal(X @ w, 0.7).to_event(0), obs=y)


def no_obs_model(X, y=None):
    pyro.sample("w", dist.Normal(torch.zeros(3), 1.0).to_event(1))


def local_model(X, y=None):
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    with pyro.plate("data", len(X)):
        theta = pyro.sample("theta", dist.Normal(mu, 1.0))
        pyro.sample("y", dist.Normal(theta, 0.5), obs=y)


def _nan(t, i=0):
    t = t.clone()
    t.view(-1)[i] = float("nan")
    return t


def _inf(t, i=0):
    t = t.clone()
    t.view(-1)[i] = float("inf")
    return t


def api_cases() -> list[Case]:
    C = Case
    cases = [
        # ---------------------------------------------------------------- unlearn(): the request
        C(
            "unknown method",
            lambda s: unlearn(s, s.Xe, s.ye, method="magic"),
            ValueError,
            "unknown unlearning method 'magic'",
        ),
        C(
            "mask without plate",
            lambda s: unlearn(s, s.X, s.y, mask=[0]),
            ValueError,
            "mask and plate go together",
        ),
        C(
            "plate without mask",
            lambda s: unlearn(s, s.X, s.y, plate="data"),
            ValueError,
            "mask and plate go together",
        ),
        C(
            "mask of wrong length",
            lambda s: unlearn(s, s.X, s.y, mask=torch.ones(29, dtype=torch.bool), plate="data"),
            ValueError,
            "length 29 but the plate has size 30",
        ),
        C(
            "index out of range",
            lambda s: unlearn(s, s.X, s.y, mask=[0, 30], plate="data"),
            ValueError,
            "forget index 30 is out of range",
        ),
        C(
            "negative index",
            lambda s: unlearn(s, s.X, s.y, mask=[-1], plate="data"),
            ValueError,
            "forget index -1 is negative",
        ),
        C(
            "repeated index",
            lambda s: unlearn(s, s.X, s.y, mask=[2, 2, 5], plate="data"),
            ValueError,
            r"repeated: \[2\]",
        ),
        C(
            "0/1 integer mask",
            lambda s: unlearn(s, s.X, s.y, mask=s.mask.long(), plate="data"),
            ValueError,
            "integers 0/1.*mask.bool",
        ),
        C(
            "float mask",
            lambda s: unlearn(s, s.X, s.y, mask=torch.tensor([0.5]), plate="data"),
            ValueError,
            "bool tensor or integer indices",
        ),
        C(
            "2-d mask",
            lambda s: unlearn(s, s.X, s.y, mask=torch.zeros(2, 2, dtype=torch.long), plate="data"),
            ValueError,
            "one-dimensional",
        ),
        C(
            "empty mask",
            lambda s: unlearn(s, s.X, s.y, mask=torch.zeros(N, dtype=torch.bool), plate="data"),
            ValueError,
            "empty forget set",
        ),
        C(
            "empty index list",
            lambda s: unlearn(s, s.X, s.y, mask=[], plate="data"),
            ValueError,
            "empty forget set",
        ),
        C(
            "string mask",
            lambda s: unlearn(s, s.X, s.y, mask="all", plate="data"),
            ValueError,
            "bool tensor or integer indices",
        ),
        C(
            "unknown plate",
            lambda s: unlearn(s, s.X, s.y, mask=[0], plate="rows"),
            ValueError,
            "not inside plate 'rows'",
        ),
        C(
            "positive int plate",
            lambda s: unlearn(s, s.X, s.y, mask=[0], plate=1),
            ValueError,
            "plate=1",
        ),
        C(
            "plate of a wrong type",
            lambda s: unlearn(s, s.X, s.y, mask=[0], plate=3.5),
            ValueError,
            "plate must be a plate name",
        ),
        C("unknown site", lambda s: unlearn(s, s.Xe, s.ye, sites=["z"]), ValueError, r"\['z'\]"),
        C(
            "ids without ledger",
            lambda s: unlearn(s, s.Xe, s.ye, ids=[0, 1, 2]),
            ValueError,
            "ids were given without a ledger",
        ),
        C(
            "ids already forgotten",
            lambda s: unlearn(s, s.Xe, s.ye, ids=[0, 1, 2], ledger=s.ledger.after([1])),
            pu.RepeatedDeletionError,
            r"data ids \[1\] were already",
        ),
        C(
            "ledger too large for the plate",
            lambda s: unlearn(s, s.X, s.y, mask=[0, 1], plate="data", ledger=pu.ForgetLedger(1000)),
            pu.BadRequestError,
            "covers 1000 ids",
        ),
        C(
            "bool ids of the wrong length",
            lambda s: unlearn(
                s, s.X, s.y, mask=torch.ones(29, dtype=torch.bool), plate="data", ledger=s.ledger
            ),
            pu.BadRequestError,
            "length 29",
        ),
        C(
            "ids count differs from the forget rows",
            lambda s: unlearn(s, s.Xe, s.ye, ids=[0, 1], ledger=s.ledger),
            pu.BadRequestError,
            "request names 2 ids",
        ),
        C(
            "NaN in the data",
            lambda s: unlearn(s, s.Xe, _nan(s.ye)),
            pu.BadRequestError,
            r"argument 1 .*non-finite",
        ),
        C(
            "inf in the inputs",
            lambda s: unlearn(s, _inf(s.Xe), s.ye),
            pu.BadRequestError,
            r"argument 0 .*non-finite",
        ),
        C(
            "NaN in model_kwargs",
            lambda s: pu.unlearn(
                lambda X, y=None, c=None: s.model(X, y),
                s.guide,
                s.Xe,
                s.ye,
                model_kwargs={"c": _nan(s.ye)},
            ),
            pu.BadRequestError,
            "keyword argument 'c'",
        ),
        C(
            "y of shape (N, 1)",
            lambda s: unlearn(s, s.Xe, s.ye.unsqueeze(-1)),
            ValueError,
            r"observed site 'y' has data of shape \(3, 1\)",
        ),
        C(
            "inputs of another width",
            lambda s: unlearn(s, torch.zeros(4, 5), s.ye[:1].expand(4)),
            ValueError,
            r"latent site 'w' has shape \(5,\)",
        ),
        C(
            "fewer labels than inputs",
            lambda s: unlearn(s, s.Xe, s.ye[:2]),
            ValueError,
            "running the model on the given data failed",
        ),
        C(
            "guide never fitted",
            lambda s: pu.unlearn(s.model, AutoMultivariateNormal(s.model), s.Xe, s.ye),
            pu.GuideNotFittedError,
            "never fitted",
        ),
        C(
            "MCMC draws to laplace",
            lambda s: pu.unlearn(s.model, s.draws, s.Xe, s.ye, method="laplace"),
            pu.UnsupportedPosteriorError,
            "use method='psis'",
        ),
        C(
            "MCMC draws to eubo",
            lambda s: pu.unlearn(s.model, s.draws, s.Xe, s.ye, method="eubo"),
            pu.UnsupportedPosteriorError,
            "use method='psis'",
        ),
        C(
            "MCMC draws to rkl",
            lambda s: pu.unlearn(s.model, s.draws, s.Xe, s.ye, method="rkl"),
            pu.UnsupportedPosteriorError,
            "use method='psis'",
        ),
        C(
            "MCMC draws to smc",
            lambda s: pu.unlearn(s.model, s.draws, s.Xe, s.ye, method="smc"),
            pu.UnsupportedPosteriorError,
            "use method='psis'",
        ),
        C(
            "a guide to psis",
            lambda s: unlearn(s, s.Xe, s.ye, method="psis"),
            pu.UnsupportedPosteriorError,
            "takes posterior draws",
        ),
        C(
            "a guide function to eubo",
            lambda s: pu.unlearn(s.model, lambda X, y=None: None, s.Xe, s.ye, method="eubo"),
            pu.UnsupportedPosteriorError,
            "guide function",
        ),
        C(
            "a network to laplace",
            lambda s: pu.unlearn(s.model, s.net, s.Xe, s.ye, method="laplace"),
            pu.UnsupportedPosteriorError,
            "torch classifier",
        ),
        C(
            "a guide to pbu",
            lambda s: unlearn(s, s.Xe, s.ye, method="pbu"),
            pu.UnsupportedPosteriorError,
            "torch classifier",
        ),
        C(
            "weighted draws to psis",
            lambda s: pu.unlearn(
                s.model,
                pu.WeightedSamples(s.draws, torch.full((200,), -np.log(200))),
                s.Xe,
                s.ye,
                method="psis",
            ),
            pu.UnsupportedPosteriorError,
            "original draws",
        ),
        C(
            "AutoDelta to eubo",
            lambda s: pu.unlearn(s.model, _delta(s), s.Xe, s.ye, method="eubo"),
            pu.UnsupportedPosteriorError,
            "point estimate",
        ),
        C(
            "AutoDelta to laplace without full_args",
            lambda s: pu.unlearn(s.model, _delta(s), s.Xe, s.ye, method="laplace"),
            ValueError,
            "pass full_args",
        ),
        C(
            "a latent the posterior lacks",
            lambda s: pu.unlearn(local_model, _laplace_of(s, local_model), s.Xe, s.ye),
            ValueError,
            "latent site",
        ),
        C(
            "model without observations",
            lambda s: pu.unlearn(
                no_obs_model,
                pu.LaplaceGuide.from_precision(
                    no_obs_model, torch.zeros(3), torch.eye(3), model_args=(s.Xe,)
                ),
                s.Xe,
                s.ye,
            ),
            ValueError,
            "no observed site",
        ),
        C(
            "unknown method option",
            lambda s: unlearn(s, s.Xe, s.ye, method="laplace", num_steps=3),
            pu.UnknownOptionError,
            "method='laplace' has no option 'num_steps'",
        ),
        C(
            "a misspelt option",
            lambda s: unlearn(s, s.Xe, s.ye, method="eubo", num_stepz=3),
            TypeError,  # as Python's own unexpected keyword argument
            "no option 'num_stepz': did you mean 'num_steps'",
        ),
        C(
            "a misspelt policy where no result is ever flagged",
            lambda s: unlearn(s, s.Xe, s.ye, method="laplace", on_unreliable="wran"),
            pu.BadRequestError,
            "on_unreliable",
        ),
        C(
            "lam='certified''s option without it",
            lambda s: unlearn(s, s.Xe, s.ye, method="eubo", retained=(s.X, s.y)),
            pu.BadRequestError,
            "no option 'retained': it goes with lam='certified'",
        ),
        C(
            "a classifier option misspelt through unlearn",
            lambda s: pu.unlearn(
                unn.ClassifierModel(s.net), s.net, s.xc, s.yc, method="pbu", max_step=3
            ),
            pu.BadRequestError,
            "no option 'max_step': did you mean 'max_steps'",
        ),
        # ---------------------------------------------------------------- laplace
        C(
            "laplace hessian",
            lambda s: unlearn(s, s.Xe, s.ye, hessian="kron"),
            ValueError,
            "hessian must be one of",
        ),
        C(
            "laplace psd",
            lambda s: unlearn(s, s.Xe, s.ye, psd="ignore"),
            ValueError,
            "psd must be one of",
        ),
        C(
            "laplace negative newton_steps",
            lambda s: unlearn(s, s.Xe, s.ye, newton_steps=-1),
            ValueError,
            "newton_steps must be a non-negative int",
        ),
        C(
            "laplace float newton_steps",
            lambda s: unlearn(s, s.Xe, s.ye, newton_steps=1.5),
            ValueError,
            "newton_steps",
        ),
        C(
            "laplace indefinite downdate",
            lambda s: pu.unlearn(
                s.model, _weak(s), s.X, s.y, mask=torch.arange(20), plate="data", psd="raise"
            ),
            pu.NotPositiveDefiniteError,
            r"smallest eigenvalue -?\d",
        ),
        C(
            "laplace ggn with an unsupported likelihood",
            lambda s: pu.unlearn(_student, _laplace_of(s, _student), s.Xe, s.ye, hessian="ggn"),
            NotImplementedError,
            "StudentT",
        ),
        # ---------------------------------------------------------------- eubo
        C(
            "eubo negative lam",
            lambda s: unlearn(s, s.Xe, s.ye, method="eubo", lam=-0.1),
            ValueError,
            "lam",
        ),
        C(
            "eubo NaN lam",
            lambda s: unlearn(s, s.Xe, s.ye, method="eubo", lam=float("nan")),
            ValueError,
            "lam",
        ),
        C(
            "eubo infinite lam",
            lambda s: unlearn(s, s.Xe, s.ye, method="eubo", lam=float("inf")),
            ValueError,
            "finite",
        ),
        C(
            "eubo num_steps=0",
            lambda s: unlearn(s, s.Xe, s.ye, method="eubo", num_steps=0),
            pu.BadRequestError,
            "num_steps must be an integer >= 1",
        ),
        C(
            "eubo float num_steps",
            lambda s: unlearn(s, s.Xe, s.ye, method="eubo", num_steps=2.0),
            pu.BadRequestError,
            "num_steps",
        ),
        C(
            "eubo num_particles=0",
            lambda s: unlearn(s, s.Xe, s.ye, method="eubo", num_particles=0),
            pu.BadRequestError,
            "num_particles",
        ),
        C(
            "eubo negative num_samples",
            lambda s: unlearn(s, s.Xe, s.ye, method="eubo", num_samples=-5),
            pu.BadRequestError,
            "num_samples",
        ),
        C(
            "eubo lr=0",
            lambda s: unlearn(s, s.Xe, s.ye, method="eubo", lr=0.0),
            pu.BadRequestError,
            "lr must be a positive number",
        ),
        C(
            "eubo infinite lr",
            lambda s: unlearn(s, s.Xe, s.ye, method="eubo", lr=float("inf")),
            pu.BadRequestError,
            "lr must be finite",
        ),
        C(
            "eubo patience=0",
            lambda s: unlearn(s, s.Xe, s.ye, method="eubo", patience=0),
            pu.BadRequestError,
            "patience",
        ),
        C(
            "eubo negative seed",
            lambda s: unlearn(s, s.Xe, s.ye, method="eubo", seed=-1),
            pu.BadRequestError,
            "seed must be an integer",
        ),
        C(
            "eubo seed 2**64",
            lambda s: unlearn(s, s.Xe, s.ye, method="eubo", seed=2**64),
            pu.BadRequestError,
            "seed must be an integer",
        ),
        C(
            "eubo float seed",
            lambda s: unlearn(s, s.Xe, s.ye, method="eubo", seed=1.5),
            pu.BadRequestError,
            "seed",
        ),
        C(
            "eubo optimizer",
            lambda s: unlearn(s, s.Xe, s.ye, method="eubo", optimizer="sgd"),
            ValueError,
            "optimizer must be",
        ),
        C(
            "eubo init",
            lambda s: unlearn(s, s.Xe, s.ye, method="eubo", init="random"),
            ValueError,
            "init must be",
        ),
        C(
            "eubo family",
            lambda s: unlearn(s, s.Xe, s.ye, method="eubo", family="spline"),
            ValueError,
            "family",
        ),
        C(
            "eubo curvature",
            lambda s: unlearn(s, s.Xe, s.ye, method="eubo", curvature="exact"),
            ValueError,
            "curvature must be",
        ),
        C(
            "eubo natural with a delta family",
            lambda s: unlearn(s, s.Xe, s.ye, method="eubo", family="delta", optimizer="natural"),
            ValueError,
            "needs a Gaussian family",
        ),
        C(
            "eubo on_unreliable",
            lambda s: unlearn(s, s.Xe, s.ye, method="eubo", on_unreliable="maybe"),
            pu.BadRequestError,
            "on_unreliable must be one of",
        ),
        C(
            "eubo: the same data twice",
            lambda s: pu.unlearn(s.model, _forgotten(s), s.X[:25], s.y[:25], method="eubo"),
            pu.ImproperTargetError,
            "improper",
        ),
        # ---------------------------------------------------------------- rkl
        C(
            "rkl num_samples=10",
            lambda s: unlearn(s, s.Xe, s.ye, method="rkl", num_samples=10),
            pu.BadRequestError,
            "num_samples must be an integer >= 25",
        ),
        C(
            "rkl num_steps=0",
            lambda s: unlearn(s, s.Xe, s.ye, method="rkl", num_steps=0),
            pu.BadRequestError,
            "num_steps",
        ),
        C(
            "rkl proposal",
            lambda s: unlearn(s, s.Xe, s.ye, method="rkl", proposal="prior"),
            ValueError,
            "proposal must be",
        ),
        C(
            "rkl family",
            lambda s: unlearn(s, s.Xe, s.ye, method="rkl", family="delta"),
            ValueError,
            "rkl needs family",
        ),
        C("rkl lam", lambda s: unlearn(s, s.Xe, s.ye, method="rkl", lam=-1.0), ValueError, "lam"),
        C(
            "rkl seed",
            lambda s: unlearn(s, s.Xe, s.ye, method="rkl", seed=-3),
            pu.BadRequestError,
            "seed",
        ),
        C(
            "rkl on_unreliable",
            lambda s: unlearn(s, s.Xe, s.ye, method="rkl", on_unreliable="never"),
            pu.BadRequestError,
            "on_unreliable",
        ),
        C(
            "rkl: the same data twice",
            lambda s: pu.unlearn(s.model, _forgotten(s), s.X[:25], s.y[:25], method="rkl"),
            pu.ImproperTargetError,
            "improper",
        ),
        C(
            "rkl: degenerate weights",
            lambda s: unlearn(s, s.X[:25], s.y[:25], method="rkl", num_samples=2000),
            pu.DegenerateWeightsError,
            "Pareto k",
        ),
        # ---------------------------------------------------------------- smc
        C(
            "smc ess_threshold 0",
            lambda s: unlearn(s, s.Xe, s.ye, method="smc", ess_threshold=0.0),
            ValueError,
            "ess_threshold",
        ),
        C(
            "smc ess_threshold 1.5",
            lambda s: unlearn(s, s.Xe, s.ye, method="smc", ess_threshold=1.5),
            ValueError,
            "ess_threshold",
        ),
        C(
            "smc chunk_size 0",
            lambda s: unlearn(s, s.Xe, s.ye, method="smc", chunk_size=0),
            ValueError,
            "chunk_size",
        ),
        C(
            "smc num_moves -1",
            lambda s: unlearn(s, s.Xe, s.ye, method="smc", num_moves=-1),
            pu.BadRequestError,
            "num_moves",
        ),
        C(
            "smc num_particles 1",
            lambda s: unlearn(s, s.Xe, s.ye, method="smc", num_particles=1),
            pu.BadRequestError,
            "num_particles",
        ),
        C(
            "smc num_particles 0",
            lambda s: unlearn(s, s.Xe, s.ye, method="smc", num_particles=0),
            pu.BadRequestError,
            "num_particles",
        ),
        C(
            "smc max_steps 0",
            lambda s: unlearn(s, s.Xe, s.ye, method="smc", max_steps=0),
            pu.BadRequestError,
            "max_steps",
        ),
        C(
            "smc seed",
            lambda s: unlearn(s, s.Xe, s.ye, method="smc", seed=2**70),
            pu.BadRequestError,
            "seed",
        ),
        C(
            "smc lam",
            lambda s: unlearn(s, s.Xe, s.ye, method="smc", lam="big"),
            ValueError,
            "could not convert|lam",
        ),
        C(
            "smc on_unreliable",
            lambda s: unlearn(s, s.Xe, s.ye, method="smc", on_unreliable=True),
            pu.BadRequestError,
            "on_unreliable",
        ),
        C(
            "smc: the same data twice",
            lambda s: pu.unlearn(s.model, _forgotten(s), s.X[:25], s.y[:25], method="smc"),
            pu.ImproperTargetError,
            "improper",
        ),
        # ---------------------------------------------------------------- psis
        C(
            "psis one draw",
            lambda s: pu.unlearn(s.model, {"w": s.draws["w"][:1]}, s.Xe, s.ye, method="psis"),
            pu.BadRequestError,
            "at least 25 posterior draws to fit the Pareto tail, got 1",
        ),
        C(
            "psis wrong site name",
            lambda s: pu.unlearn(s.model, {"v": s.draws["w"]}, s.Xe, s.ye, method="psis"),
            ValueError,
            "latent site 'w'",
        ),
        C(
            "psis draws of the wrong shape",
            lambda s: pu.unlearn(s.model, {"w": s.draws["w"][:, :2]}, s.Xe, s.ye, method="psis"),
            ValueError,
            r"latent site 'w' has shape \(3,\)",
        ),
        C(
            "psis on_unreliable",
            lambda s: pu.unlearn(s.model, s.draws, s.Xe, s.ye, method="psis", on_unreliable="x"),
            pu.BadRequestError,
            "on_unreliable",
        ),
        C(
            "psis a list of draws",
            lambda s: pu.methods.psis_unlearn(s.model, [s.draws["w"]], s.Xe, s.ye),
            TypeError,
            "expected posterior draws",
        ),
        C(
            "psis high k-hat",
            lambda s: pu.unlearn(s.model, s.draws, s.X[:25], s.y[:25] + 5.0, method="psis"),
            pu.DegenerateWeightsError,
            "Pareto k",
        ),
        C(
            "psis NaN data",
            lambda s: pu.unlearn(s.model, s.draws, s.Xe, _nan(s.ye), method="psis"),
            pu.BadRequestError,
            "non-finite",
        ),
        # ---------------------------------------------------------------- handlers
        C(
            "forget NaN weight",
            lambda s: pu.forget(s.model, weight=float("nan")),
            ValueError,
            "forget weight must be finite",
        ),
        C(
            "forget inf weight",
            lambda s: pu.forget(s.model, weight=float("inf")),
            ValueError,
            "forget weight must be finite",
        ),
        C(
            "forget a string weight",
            lambda s: pu.forget(s.model, weight="one"),
            ValueError,
            "could not convert",
        ),
        C(
            "forget unknown site",
            lambda s: _trace(pu.forget(s.model, sites=["y", "z"]), s.X, s.y),
            ValueError,
            r"sites \['z'\] were not observed",
        ),
        C(
            "forget mask without plate",
            lambda s: pu.forget(s.model, mask=[0]),
            ValueError,
            "mask and plate go together",
        ),
        C(
            "forget a sequential plate",
            lambda s: _trace(pu.forget(_sequential, mask=[0], plate="data"), s.X, s.y),
            ValueError,
            "sequential",
        ),
        C(
            "forget an event dim",
            lambda s: _trace(pu.forget(_event, mask=[0], plate=-1), s.X, s.y),
            ValueError,
            "event dimension",
        ),
        C(
            "forget under TraceEnum_ELBO",
            lambda s: _forked(
                pyro.infer.TraceEnum_ELBO(max_plate_nesting=1).loss,
                pu.forget(s.model),
                lambda X, y=None: pyro.sample("w", dist.Normal(torch.zeros(3), 1.0).to_event(1)),
                s.X,
                s.y,
            ),
            ValueError,
            "TraceEnum_ELBO supports only positive",
        ),
        C(
            "retain mask of wrong length",
            lambda s: _trace(
                pu.retain(s.model, mask=torch.ones(5, dtype=torch.bool), plate="data"), s.X, s.y
            ),
            ValueError,
            "length 5",
        ),
        C(
            "retain unknown plate",
            lambda s: _trace(pu.retain(s.model, mask=[0], plate="rows"), s.X, s.y),
            ValueError,
            "not inside plate 'rows'",
        ),
        C(
            "anchor of an unfitted guide",
            lambda s: pu.anchor(s.model, guide=AutoMultivariateNormal(s.model)),
            pu.GuideNotFittedError,
            "never fitted",
        ),
        C(
            "anchor of a point estimate",
            lambda s: pu.anchor(s.model, guide=_delta(s)),
            TypeError,
            "point estimate",
        ),
        # ---------------------------------------------------------------- ledger
        C(
            "ledger of 10.5",
            lambda s: pu.ForgetLedger(10.5),
            pu.BadRequestError,
            "num_data must be a positive integer, got 10.5",
        ),
        C("ledger of 0", lambda s: pu.ForgetLedger(0), pu.BadRequestError, "num_data"),
        C("ledger of -4", lambda s: pu.ForgetLedger(-4), pu.BadRequestError, "num_data"),
        C("ledger of True", lambda s: pu.ForgetLedger(True), pu.BadRequestError, "num_data"),
        C("ledger of a string", lambda s: pu.ForgetLedger("30"), pu.BadRequestError, "num_data"),
        C(
            "ledger with unsorted ids",
            lambda s: pu.ForgetLedger(10, (3, 1)),
            pu.BadRequestError,
            "sorted, unique ids",
        ),
        C(
            "ledger with ids out of range",
            lambda s: pu.ForgetLedger(10, (11,)),
            pu.BadRequestError,
            r"\[0, 10\)",
        ),
        C("ledger after out of range", lambda s: s.ledger.after([31]), ValueError, "out of range"),
        C("ledger after negative", lambda s: s.ledger.after([-1]), ValueError, "negative"),
        C("ledger after empty", lambda s: s.ledger.after([]), ValueError, "empty forget set"),
        C(
            "ledger after repeated",
            lambda s: s.ledger.after([4, 5, 4]),
            ValueError,
            r"repeated: \[4\]",
        ),
        C(
            "ledger after twice",
            lambda s: s.ledger.after([4]).after([4]),
            pu.RepeatedDeletionError,
            r"\[4\]",
        ),
        C(
            "ledger from a bad record",
            lambda s: pu.ForgetLedger.from_dict({"size": 3}),
            pu.BadRequestError,
            "not a ForgetLedger record",
        ),
        C(
            "a different ledger than the posterior's",
            lambda s: pu.unlearn(s.model, _with_ledger(s), s.Xe, s.ye, ledger=pu.ForgetLedger(N)),
            pu.BadRequestError,
            "carries its own ledger",
        ),
        # ---------------------------------------------------------------- fits
        C(
            "fit_svi a misspelt option (the fitters pass keywords on to the model)",
            lambda s: pu.fit_svi(s.model, s.X, s.y, num_step=10),
            pu.UnknownOptionError,
            "fit_svi has no option 'num_step' and the model takes no argument.*'num_steps'",
        ),
        C(
            "fit_laplace another fitter's option",
            lambda s: pu.fit_laplace(s.model, s.X, s.y, num_steps=10),
            TypeError,
            "fit_laplace has no option 'num_steps'.*model's arguments: X, subsample_size, y",
        ),
        C(
            "fit_svi num_steps 0",
            lambda s: pu.fit_svi(s.model, s.X, s.y, num_steps=0),
            pu.BadRequestError,
            "num_steps",
        ),
        C(
            "fit_svi num_particles 0",
            lambda s: pu.fit_svi(s.model, s.X, s.y, num_particles=0),
            pu.BadRequestError,
            "num_particles",
        ),
        C(
            "fit_svi natural_steps -1",
            lambda s: pu.fit_svi(s.model, s.X, s.y, natural_steps=-1),
            pu.BadRequestError,
            "natural_steps",
        ),
        C(
            "fit_svi lr -1",
            lambda s: pu.fit_svi(s.model, s.X, s.y, lr=-1.0),
            pu.BadRequestError,
            "lr",
        ),
        C(
            "fit_svi seed",
            lambda s: pu.fit_svi(s.model, s.X, s.y, seed=-1),
            pu.BadRequestError,
            "seed",
        ),
        C(
            "fit_svi NaN data",
            lambda s: pu.fit_svi(s.model, s.X, _nan(s.y)),
            pu.BadRequestError,
            "non-finite",
        ),
        C(
            "fit_laplace max_iter 0",
            lambda s: pu.fit_laplace(s.model, s.X, s.y, max_iter=0),
            pu.BadRequestError,
            "max_iter",
        ),
        C(
            "fit_laplace seed",
            lambda s: pu.fit_laplace(s.model, s.X, s.y, seed=2**64),
            pu.BadRequestError,
            "seed",
        ),
        C(
            "fit_laplace inf data",
            lambda s: pu.fit_laplace(s.model, _inf(s.X), s.y),
            pu.BadRequestError,
            "non-finite",
        ),
        C(
            "fit_laplace at a saddle",
            lambda s: pu.fit_laplace(_saddle, s.X, s.y),
            pu.fit.LaplaceFitError,
            "not positive definite",
        ),
        # ---------------------------------------------------------------- retrain
        C(
            "retrain method",
            lambda s: pu.retrain(s.model, s.X, s.y, forget_mask=[0], plate="data", method="gibbs"),
            ValueError,
            "retrain method must be one of",
        ),
        C(
            "retrain num_samples 0",
            lambda s: pu.retrain(s.model, s.X, s.y, forget_mask=[0], plate="data", num_samples=0),
            pu.BadRequestError,
            "num_samples",
        ),
        C(
            "retrain warmup -1",
            lambda s: pu.retrain(s.model, s.X, s.y, forget_mask=[0], plate="data", warmup_steps=-1),
            pu.BadRequestError,
            "warmup_steps",
        ),
        C(
            "retrain num_chains 0",
            lambda s: pu.retrain(s.model, s.X, s.y, forget_mask=[0], plate="data", num_chains=0),
            pu.BadRequestError,
            "num_chains",
        ),
        C(
            "retrain seed",
            lambda s: pu.retrain(s.model, s.X, s.y, forget_mask=[0], plate="data", seed=-2),
            pu.BadRequestError,
            "seed",
        ),
        C(
            "retrain svi_steps 0",
            lambda s: pu.retrain(
                s.model, s.X, s.y, forget_mask=[0], plate="data", method="svi", svi_steps=0
            ),
            pu.BadRequestError,
            "svi_steps",
        ),
        C(
            "retrain NaN data",
            lambda s: pu.retrain(s.model, s.X, _nan(s.y), forget_mask=[0], plate="data"),
            pu.BadRequestError,
            "non-finite",
        ),
        C(
            "retrain exact on a plain function",
            lambda s: pu.retrain(
                lambda X, y: s.model(X, y), s.X, s.y, forget_mask=[0], plate="data", method="exact"
            ),
            ValueError,
            "needs the model method of a conjugate",
        ),
        C(
            "retrain a corrupt cache",
            lambda s: pu.retrain(
                s.model, s.X, s.y, forget_mask=[0], plate="data", cache=_garbage()
            ),
            ValueError,
            "delete it",
        ),
        # ---------------------------------------------------------------- checks
        C(
            "compare without the reference",
            lambda s: pu.compare_posteriors(
                {"original": s.guide}, s.model, s.X, s.y, forget_mask=[0]
            ),
            KeyError,
            "reference 'retrained'",
        ),
        C(
            "compare an empty dict",
            lambda s: pu.compare_posteriors({}, s.model, s.X, s.y, forget_mask=[0]),
            pu.BadRequestError,
            "non-empty dict",
        ),
        C(
            "compare num_samples 1",
            lambda s: pu.compare_posteriors(
                {"retrained": s.guide}, s.model, s.X, s.y, forget_mask=[0], num_samples=1
            ),
            pu.BadRequestError,
            "num_samples",
        ),
        C(
            "compare a posterior without the site",
            lambda s: pu.compare_posteriors(
                {"retrained": s.guide, "x": {"v": s.draws["w"]}},
                s.model,
                s.X,
                s.y,
                forget_mask=[0],
                num_samples=50,
            ),
            KeyError,
            "latent site.*'w'",
        ),
        C(
            "compare a mask out of range",
            lambda s: pu.compare_posteriors(
                {"retrained": s.guide}, s.model, s.X, s.y, forget_mask=[40], num_samples=50
            ),
            ValueError,
            "out of range",
        ),
        C(
            "to_inference_data num_samples 0",
            lambda s: pu.to_inference_data(s.guide, s.model, s.X, s.y, num_samples=0),
            pu.BadRequestError,
            "num_samples",
        ),
        C(
            "to_inference_data seed",
            lambda s: pu.to_inference_data(s.guide, s.model, s.X, s.y, seed=-1),
            pu.BadRequestError,
            "seed",
        ),
        C(
            "to_inference_data unknown plate",
            lambda s: pu.to_inference_data(
                s.guide, s.model, s.X, s.y, forget_mask=[0], plate="rows", num_samples=20
            ),
            ValueError,
            "not inside plate 'rows'",
        ),
        C(
            "to_inference_data a string posterior",
            lambda s: pu.to_inference_data("posterior", s.model, s.X, s.y, num_samples=20),
            TypeError,
            "cannot draw from a posterior of type str",
        ),
        # ---------------------------------------------------------------- certify
        C(
            "certify unknown scope",
            lambda s: pu.certify(s.guide, s.model, s.X, s.y, scope="all"),
            pu.BadRequestError,
            "scope must be 'retained' or 'full'",
        ),
        C(
            "certify too few draws",
            lambda s: pu.certify(s.guide, s.model, s.X, s.y, num_samples=5),
            pu.BadRequestError,
            "num_samples must be an integer >= 20",
        ),
        C(
            "certify negative seed",
            lambda s: pu.certify(s.guide, s.model, s.X, s.y, seed=-1),
            pu.BadRequestError,
            "seed",
        ),
        C(
            "certify NaN data",
            lambda s: pu.certify(s.guide, s.model, s.X, _nan(s.y)),
            pu.BadRequestError,
            "non-finite",
        ),
        C(
            "certify mask of wrong length",
            lambda s: pu.certify(s.guide, s.model, s.X, s.y, forget_mask=s.mask[:29]),
            pu.ModelEvaluationError,
            "length 29 but the plate has size 30",
        ),
        C(
            "certify a network",
            lambda s: pu.certify(s.net, s.model, s.X, s.y),
            pu.UnsupportedPosteriorError,
            "point estimate",
        ),
        C(
            "certify a posterior of another model",
            lambda s: pu.certify(s.guide, local_model, s.X, s.y),
            pu.MissingLatentError,
            "does not hold",
        ),
        # ---------------------------------------------------------------- classifiers
        C(
            "pbu label out of range",
            lambda s: unn.pbu(s.net, s.xc, s.yc + 3),
            pu.BadRequestError,
            r"labels \[3, 4, 5\] outside the network's 3 classes",
        ),
        C(
            "pbu label -1",
            lambda s: unn.pbu(s.net, s.xc, torch.full_like(s.yc, -1)),
            pu.BadRequestError,
            r"labels \[-1\]",
        ),
        C(
            "pbu label -100",
            lambda s: unn.pbu(s.net, s.xc, torch.full_like(s.yc, -100)),
            pu.BadRequestError,
            r"-100",
        ),
        C(
            "pbu float labels",
            lambda s: unn.pbu(s.net, s.xc, s.yc.double()),
            pu.BadRequestError,
            "integer class labels",
        ),
        C(
            "pbu labels of another length",
            lambda s: unn.pbu(s.net, s.xc, s.yc[:5]),
            pu.BadRequestError,
            "one label per input",
        ),
        C(
            "pbu empty forget set",
            lambda s: unn.pbu(s.net, s.xc[:0], s.yc[:0]),
            pu.BadRequestError,
            "non-empty",
        ),
        C(
            "pbu NaN inputs",
            lambda s: unn.pbu(s.net, _nan(s.xc), s.yc),
            pu.BadRequestError,
            "non-finite",
        ),
        C("pbu seed", lambda s: unn.pbu(s.net, s.xc, s.yc, seed=-1), pu.BadRequestError, "seed"),
        C(
            "pbu target accuracy above 1 (it would stop at once, having done nothing)",
            lambda s: unn.pbu(s.net, s.xc, s.yc, target_forget_accuracy=1.5),
            pu.BadRequestError,
            r"target_forget_accuracy must be a number in \[0, 1\], got 1.5",
        ),
        C(
            "instance-wise target accuracy negative",
            lambda s: unn.instance_unlearn(s.net, s.xc, s.yc, target_forget_accuracy=-0.1),
            pu.BadRequestError,
            "target_forget_accuracy",
        ),
        C(
            "pbu batch_size 0",
            lambda s: unn.pbu(s.net, s.xc, s.yc, batch_size=0),
            pu.BadRequestError,
            "batch_size must be an integer >= 1, got 0",
        ),
        C(
            "l1_sparse epochs 0 (a copy returned as if unlearned)",
            lambda s: unn.l1_sparse(s.net, s.xc, s.yc, epochs=0),
            pu.BadRequestError,
            "epochs must be an integer >= 1",
        ),
        C(
            "salun lr 0 (nothing would move)",
            lambda s: unn.salun(s.net, s.xc[:4], s.yc[:4], s.xc, s.yc, lr=0.0),
            pu.BadRequestError,
            "lr must be a positive number",
        ),
        C(
            "scrub temperature 0 (was reported as a divergence)",
            lambda s: unn.scrub(s.net, s.xc[:4], s.yc[:4], s.xc, s.yc, temperature=0.0),
            pu.BadRequestError,
            "temperature",
        ),
        C(
            "ssd negative alpha",
            lambda s: unn.ssd(s.net, s.xc[:4], s.yc[:4], s.xc, s.yc, alpha=-1.0),
            pu.BadRequestError,
            "alpha must be a number >= 0",
        ),
        C(
            "half-precision inputs to a network of another dtype",
            lambda s: unn.salun(s.net, s.xc.half(), s.yc, s.xc, s.yc),
            pu.BadRequestError,
            r"cannot read x_forget \(a torch.float16 tensor.*its parameters are torch.float",
        ),
        C(
            "accuracy of labels of another shape",
            lambda s: unn.accuracy(s.net, s.xc, s.yc[:, None]),
            pu.BadRequestError,
            "y has shape",
        ),
        C(
            "a network with every parameter frozen",
            lambda s: unn.pbu(_frozen(s.net), s.xc, s.yc),
            pu.BadRequestError,
            "no trainable parameters",
        ),
        C(
            "instance-wise no adversarial examples",
            lambda s: unn.instance_unlearn(s.net, s.xc, s.yc, num_adversarial=0),
            pu.BadRequestError,
            "num_adversarial",
        ),
        C(
            "jit sigma 0",
            lambda s: unn.jit(s.net, s.xc, sigma=0.0),
            pu.BadRequestError,
            "sigma must be a positive number",
        ),
        C(
            "finetune lr negative",
            lambda s: unn.finetune(s.net, s.xc, s.yc, lr=-1e-3),
            pu.BadRequestError,
            "lr must be a positive number",
        ),
        C(
            "pbu on_unreliable misspelt",
            lambda s: unn.pbu(s.net, s.xc, s.yc, on_unreliable="loud"),
            ValueError,
            "on_unreliable",
        ),
        C(
            "neggrad stopped short of its target (the policy's default)",
            lambda s: unn.neggrad(s.net, s.xc, s.yc, max_steps=1),
            pu.TargetNotReachedError,
            "short of its target",
        ),
        C(
            "neggrad label out of range",
            lambda s: unn.neggrad(s.net, s.xc, s.yc + 3),
            pu.BadRequestError,
            "outside the network's 3 classes",
        ),
        C(
            "neggrad empty forget set",
            lambda s: unn.neggrad(s.net, s.xc[:0], s.yc[:0]),
            pu.BadRequestError,
            "non-empty",
        ),
        C(
            "jit empty forget set",
            lambda s: unn.jit(s.net, s.xc[:0]),
            pu.BadRequestError,
            "non-empty",
        ),
        C("jit NaN inputs", lambda s: unn.jit(s.net, _nan(s.xc)), pu.BadRequestError, "non-finite"),
        C(
            "jit a list of inputs",
            lambda s: unn.jit(s.net, [1.0, 2.0]),
            pu.BadRequestError,
            "x_forget must be a non-empty tensor",
        ),
        C(
            "jit unknown variant",
            lambda s: unn.jit(s.net, s.xc, variant="paper"),
            pu.BadRequestError,
            r"variant must be one of \('library', 'authors'\)",
        ),
        C(
            "instance_unlearn unknown variant",
            lambda s: unn.instance_unlearn(s.net, s.xc, s.yc, variant="paper"),
            pu.BadRequestError,
            "variant must be one of",
        ),
        C(
            "salun retained labels out of range",
            lambda s: unn.salun(s.net, s.xc[:4], s.yc[:4], s.xc, s.yc + 3),
            pu.BadRequestError,
            "y_retain holds labels",
        ),
        C(
            "salun sparsity 1",
            lambda s: unn.salun(s.net, s.xc[:4], s.yc[:4], s.xc, s.yc, sparsity=1.0),
            ValueError,
            "sparsity must be in",
        ),
        C(
            "class_distillation examples of a retained class",
            lambda s: unn.class_distillation(s.net, s.xc[:4], s.yc[:4], s.xc, s.yc),
            pu.BadRequestError,
            "forgets whole classes",
        ),
        C(
            "class_distillation min_steps above max_steps",
            lambda s: unn.class_distillation(*_class_zero(s), min_steps=5, max_steps=2),
            pu.BadRequestError,
            "min_steps <= max_steps",
        ),
        C(
            "class_distillation learning rate 0",
            lambda s: unn.class_distillation(*_class_zero(s), lr=0.0),
            pu.BadRequestError,
            "lr must be a positive number",
        ),
        C(
            "class_distillation no forget examples per step",
            lambda s: unn.class_distillation(*_class_zero(s), batch_size=0),
            pu.BadRequestError,
            "batch_size must be an integer >= 1",
        ),
        C(
            "class_distillation through unlearn without the retained data",
            lambda s: pu.unlearn(
                unn.ClassifierModel(s.net), s.net, s.xc, s.yc, method="class_distillation"
            ),
            pu.BadRequestError,
            "x_retain",
        ),
        C(
            "scrub empty retained set",
            lambda s: unn.scrub(s.net, s.xc[:4], s.yc[:4], s.xc[:0], s.yc[:0]),
            pu.BadRequestError,
            "x_retain must be a non-empty tensor",
        ),
        C(
            "scrub more max epochs than epochs",
            lambda s: unn.scrub(s.net, s.xc[:4], s.yc[:4], s.xc, s.yc, epochs=1, max_epochs=2),
            ValueError,
            "max_epochs",
        ),
        C(
            "l1_sparse NaN retained inputs",
            lambda s: unn.l1_sparse(s.net, _nan(s.xc), s.yc),
            pu.BadRequestError,
            "x_retain holds non-finite",
        ),
        C(
            "salun through unlearn without the retained data",
            lambda s: pu.unlearn(unn.ClassifierModel(s.net), s.net, s.xc, s.yc, method="salun"),
            pu.BadRequestError,
            "x_retain",
        ),
        C(
            "ssd empty forget set",
            lambda s: unn.ssd(s.net, s.xc[:0], s.yc[:0], s.xc, s.yc),
            pu.BadRequestError,
            "non-empty",
        ),
        C(
            "ssd labels out of range",
            lambda s: unn.ssd(s.net, s.xc, s.yc + 3, s.xc, s.yc),
            pu.BadRequestError,
            "y_forget holds labels",
        ),
        C(
            "ssd training labels out of range",
            lambda s: unn.ssd(s.net, s.xc, s.yc, s.xc, s.yc + 3),
            pu.BadRequestError,
            "y_all holds labels",
        ),
        C(
            "instance label out of range",
            lambda s: unn.instance_unlearn(s.net, s.xc, s.yc + 7),
            pu.BadRequestError,
            "outside the network's 3 classes",
        ),
        C(
            "instance empty forget set",
            lambda s: unn.instance_unlearn(s.net, s.xc[:0], s.yc[:0]),
            pu.BadRequestError,
            "non-empty",
        ),
        C(
            "runner-up labels out of range",
            lambda s: unn.runner_up_labels(s.net, s.xc, s.yc + 3),
            pu.BadRequestError,
            "outside the network",
        ),
        C(
            "runner-up labels of another length",
            lambda s: unn.runner_up_labels(s.net, s.xc, s.yc[:3]),
            pu.BadRequestError,
            "one label per input",
        ),
        C(
            "a guide to a classifier function",
            lambda s: unn.pbu(s.guide, s.xc, s.yc),
            pu.BadRequestError,
            "takes a trained torch network, got LaplaceGuide",
        ),
        C(
            "unlearn pbu with a mask",
            lambda s: pu.unlearn(None, s.net, s.xc, s.yc, method="pbu", mask=[0], plate="data"),
            ValueError,
            "not a mask",
        ),
        C(
            "membership attack, empty forget set",
            lambda s: unn.membership_attack(s.net, s.xc[:0], s.yc[:0], s.xc, s.yc),
            ValueError,
            "x_forget must be a non-empty tensor",
        ),
        C(
            "membership attack, one test example",
            lambda s: unn.membership_attack(s.net, s.xc, s.yc, s.xc[:1], s.yc[:1]),
            ValueError,
            "x_test must hold at least 2 examples",
        ),
    ]
    return cases


def _delta(s):
    return s.delta


def _laplace_of(s, model):
    """A Gaussian over ``w``: the latent of ``s.model`` and ``_student`` (``local_model``
    samples ``mu`` and ``theta`` instead, which this posterior lacks)."""
    return pu.LaplaceGuide.from_precision(
        s.model, torch.zeros(3), torch.eye(3), model_args=(s.X, s.y)
    )


def _student(X, y=None):
    w = pyro.sample("w", dist.Normal(torch.zeros(3), 1.0).to_event(1))
    with pyro.plate("data", len(X)):
        pyro.sample("y", dist.StudentT(4.0, X @ w, 0.7), obs=y)


def _sequential(X, y=None):
    w = pyro.sample("w", dist.Normal(torch.zeros(3), 1.0).to_event(1))
    for i in pyro.plate("data", len(X)):
        pyro.sample(f"y_{i}", dist.Normal(X[i] @ w, 0.7), obs=y[i])


def _event(X, y=None):
    w = pyro.sample("w", dist.Normal(torch.zeros(3), 1.0).to_event(1))
    pyro.sample("y", dist.Normal(X @ w, 0.7).to_event(1), obs=y)


def _saddle(X, y=None):
    """Centred hierarchical regression: the MAP sends the group scale to 0 (a funnel)."""
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = pyro.sample("tau", dist.HalfCauchy(5.0))
    with pyro.plate("data", len(X)):
        theta = pyro.sample("theta", dist.Normal(mu, tau))
        pyro.sample("y", dist.Normal(theta, 15.0), obs=y)


def _weak(s):
    return pu.LaplaceGuide.from_precision(
        s.model, s.guide.loc, s.guide.precision / 50, like=s.guide
    )


def _forgotten(s):
    """The posterior after forgetting rows 0-24: forgetting them again is impossible."""
    return pu.unlearn(s.model, s.guide, s.X[:25], s.y[:25]).guide


def _with_ledger(s):
    return pu.unlearn(s.model, s.guide, s.Xe, s.ye, ids=[0, 1, 2], ledger=pu.ForgetLedger(N)).guide


def _trace(fn, *args):
    """A plain Pyro trace draws the latents from the prior: the RNG is the caller's to fork."""
    with torch.random.fork_rng():
        return pyro.poutine.trace(fn).get_trace(*args)


def _forked(fn, *args):
    with torch.random.fork_rng():
        return fn(*args)


def _garbage():
    import tempfile

    path = tempfile.NamedTemporaryFile(suffix=".nc", delete=False).name
    with open(path, "wb") as file:
        file.write(b"not a netCDF file at all")
    return path


def cli_cases() -> list[Case]:
    C = Case
    cases = []
    for args, match in [
        (["demo", "--fraction", "1.5"], "--fraction must lie in"),
        (["demo", "--fraction", "0"], "--fraction must lie in"),
        (["demo", "--fraction", "-0.2"], "--fraction must lie in"),
        (["demo", "--fraction", "nan"], "--fraction must lie in"),
        (["demo", "--fraction", "0.0001"], "forgets no patient"),
        (["demo", "--seed", "-1"], "--seed must be an integer in"),
        (["demo", "--seed", str(2**66)], "--seed must be an integer in"),
        (["demo", "--device", "meta"], "choose cpu or cuda"),
        (["demo", "--device", "tpu"], "--device tpu"),
        (["demo", "--out", "/proc/forbidden"], "cannot create --out"),
        (["bench", "--suite", "nonsense"], "unknown suite 'nonsense'"),
        (["bench", "--seeds", "-1"], "--seed must be an integer"),
        (["bench", "--seeds", "0", str(2**64)], "--seed must be an integer"),
        (["bench", "--device", "meta"], "choose cpu or cuda"),
        (["bench", "--out", "/proc/forbidden", "--suite", "evaluator"], "cannot create --out"),
    ] + (
        [(["demo", "--device", "cuda"], "no CUDA device")] if not torch.cuda.is_available() else []
    ):
        cases.append(C(f"cli {' '.join(args)}", lambda s, args=args: _cli(args), SystemExit, match))
    for args, match in [
        (["demo", "--seed", "x"], "invalid int value"),
        (["demo", "--fraction", "half"], "invalid float value"),
        (["bench", "--seeds"], "expected at least one argument"),
        (["frobnicate"], "invalid choice"),
        ([], "required"),
        (["demo", "--nonsense"], "unrecognized arguments"),
    ]:
        cases.append(
            C(f"cli argparse {' '.join(args)}", lambda s, args=args: _cli(args), SystemExit, match)
        )
    return cases


def _cli(args):
    """Run the CLI in-process; a user error must return 2 with one line on stderr."""
    import contextlib
    import io

    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            code = main(args)
        except SystemExit as exit_:  # argparse's own errors
            code = exit_.code
    text = stderr.getvalue()
    assert code == 2, (code, text)
    assert "Traceback" not in text and "error:" in text
    raise SystemExit(text)


CASES = api_cases() + cli_cases()


def test_there_are_at_least_150_cases():
    assert len(CASES) >= 150, len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_refused_clearly_and_changes_nothing(case):
    state = State()
    snapshot = Snapshot(state)
    with pytest.raises(case.error) as caught:
        case.call(state)
    assert caught.match(case.match)
    snapshot.assert_unchanged()


def _success_cases():
    """Calls that succeed: they must leave the caller's objects and RNG state alone too."""
    return {
        "laplace, a set of ids as the mask": lambda s: pu.unlearn(
            s.model, s.guide, s.X, s.y, mask={0, 5, 7}, plate="data"
        ),
        "eubo": lambda s: pu.unlearn(s.model, s.guide, s.Xe, s.ye, method="eubo"),
        "eubo, Adam, from the param store's AutoNormal": lambda s: pu.unlearn(
            s.model,
            s.auto,
            s.Xe,
            s.ye,
            method="eubo",
            optimizer="adam",
            num_steps=20,
            progress_bar=False,
        ),
        "rkl": lambda s: pu.unlearn(s.model, s.guide, s.Xe, s.ye, method="rkl", num_samples=500),
        "smc": lambda s: pu.unlearn(
            s.model, s.guide, s.Xe, s.ye, method="smc", num_particles=200, num_moves=1
        ),
        "psis": lambda s: pu.unlearn(
            s.model, s.draws, s.Xe, s.ye, method="psis", on_unreliable="ignore"
        ),
        "fit_svi": lambda s: pu.fit_svi(s.model, s.X, s.y, num_steps=10),
        "fit_laplace": lambda s: pu.fit_laplace(s.model, s.X, s.y),
        "compare_posteriors": lambda s: pu.compare_posteriors(
            {"original": s.auto, "retrained": s.guide},
            s.model,
            s.X,
            s.y,
            forget_mask=[0],
            num_samples=50,
        ),
        "to_inference_data": lambda s: pu.to_inference_data(
            s.auto, s.model, s.X, s.y, forget_mask=[0], num_samples=20, predictive_args=(s.X,)
        ),
        "pbu on a batch-norm, dropout network in train mode": lambda s: unn.pbu(
            s.net, s.xc, s.yc, max_steps=3, on_unreliable="ignore"
        ),
        "neggrad": lambda s: unn.neggrad(s.net, s.xc, s.yc, max_steps=3, on_unreliable="ignore"),
        "jit": lambda s: unn.jit(s.net, s.xc),
        "ssd": lambda s: unn.ssd(s.net, s.xc[:5], s.yc[:5], s.xc, s.yc),
        "instance": lambda s: unn.instance_unlearn(
            s.net,
            s.xc[:4],
            s.yc[:4],
            num_adversarial=2,
            pgd_iterations=2,
            max_steps=2,
            on_unreliable="ignore",
        ),
        "runner_up_labels": lambda s: unn.runner_up_labels(s.net, s.xc, s.yc),
        "laplace under the one policy (nothing it flags), no progress bar": lambda s: pu.unlearn(
            s.model, s.guide, s.Xe, s.ye, method="laplace", on_unreliable="warn", progress_bar=False
        ),
        "salun under the one policy (nothing it flags)": lambda s: pu.unlearn(
            unn.ClassifierModel(s.net),
            s.net,
            *_class_zero(s)[1:3],
            method="salun",
            x_retain=s.xc,
            y_retain=s.yc,
            epochs=1,
            on_unreliable="ignore",
        ),
        # statistics of the caller's network read it in eval mode: batch norm's running
        # statistics stay, dropout draws nothing from the global RNG
        "accuracy": lambda s: unn.accuracy(s.net, s.xc, s.yc),
        "per_sample": lambda s: unn.per_sample(s.net, s.xc, s.yc),
        "membership_attack": lambda s: unn.membership_attack(
            s.net, s.xc[:10], s.yc[:10], s.xc[10:], s.yc[10:]
        ),
        "js_divergence": lambda s: unn.js_divergence(s.net, s.net, s.xc),
        "logit_confidence": lambda s: unn.logit_confidence(s.net, s.xc, s.yc),
        "targeted_pgd": lambda s: unn.targeted_pgd(s.net, s.xc, (s.yc + 1) % 3, iterations=3),
        "diagonal_fisher": lambda s: unn.diagonal_fisher(s.net, s.xc),
        "mas_importance": lambda s: unn.mas_importance(s.net, s.xc),
        "minibatch_importance": lambda s: unn.minibatch_importance(s.net, s.xc, s.yc),
        "weight_saliency": lambda s: unn.weight_saliency(s.net, s.xc, s.yc),
        "salun": lambda s: unn.salun(s.net, *_class_zero(s)[1:], epochs=1),
        "scrub": lambda s: unn.scrub(s.net, *_class_zero(s)[1:], max_epochs=1),
        "class_distillation": lambda s: unn.class_distillation(
            s.net, *_class_zero(s)[1:], max_steps=20, on_unreliable="ignore"
        ),
    }


@pytest.mark.parametrize("name", list(_success_cases()))
def test_a_successful_call_changes_nothing_of_the_callers_and_repeats_exactly(name):
    state = State()
    snapshot = Snapshot(state)
    first = _success_cases()[name](state)
    snapshot.assert_unchanged()
    torch.rand(3)  # another global RNG state: the same seed must give the same result
    second = _success_cases()[name](state)
    assert _fingerprint(first) == _fingerprint(second)


def _fingerprint(result) -> bytes:
    """The result's numbers, bit for bit."""
    if isinstance(result, tuple):  # a classifier method: (network, diagnostics)
        result = result[0]
    if isinstance(result, pu.UnlearnResult):
        result = result.guide if result.network is None else result.network
    if isinstance(result, pu.WeightedSamples):
        tensors = [result.log_weights, result.samples["w"]]
    elif isinstance(result, torch.Tensor):
        tensors = [result]
    elif isinstance(result, float):
        return repr(result).encode()
    elif isinstance(result, dict):  # importances or per-example statistics, by name
        tensors = [result[k] for k in sorted(result)]
    elif hasattr(result, "columns"):  # a DataFrame
        return result.to_numpy(dtype=float).tobytes()  # bool columns too, by value
    elif hasattr(result, "prototype_trace"):  # a guide
        g = pu.flat_gaussian(result)
        tensors = [g.loc, g.precision]
    elif isinstance(result, nn.Module):  # a network
        tensors = list(result.state_dict().values())
    else:  # a container of ArviZ's: every group's values (its attrs carry a timestamp)
        from pyro_unlearn import arviz_compat

        return b"".join(
            name.encode() + var.encode() + group[var].values.tobytes()
            for name in arviz_compat.group_names(result)
            for group in [arviz_compat.group(result, name)]
            for var in sorted(group.data_vars)
        )
    return b"".join(t.detach().contiguous().numpy().tobytes() for t in tensors)


def test_data_found_finite_once_are_scanned_again_after_an_in_place_change():
    """The finiteness scan of the data is remembered per tensor (identity and in-place
    version), so a later request on the same data skips it; a NaN written in place, into the
    tensor or through a view of it, is still refused."""
    s = State()
    X, y = s.X.clone(), s.y.clone()
    pu.unlearn(s.model, s.guide, X, y, mask=s.mask, plate="data", method="laplace")
    pu.unlearn(s.model, s.guide, X, y, mask=s.mask, plate="data", method="laplace")
    X[5, 1] = float("nan")
    with pytest.raises(pu.BadRequestError, match="argument 0 .* 1 non-finite"):
        pu.unlearn(s.model, s.guide, X, y, mask=s.mask, plate="data", method="laplace")
    X[5, 1] = 0.0
    pu.unlearn(s.model, s.guide, X, y, mask=s.mask, plate="data", method="laplace")
    y[2:4][0] = float("inf")  # through a view: the version counter is shared
    with pytest.raises(pu.BadRequestError, match="argument 1 .* 1 non-finite"):
        pu.unlearn(s.model, s.guide, X, y, mask=s.mask, plate="data", method="laplace")
