r"""The model at a batch of latent values: the one evaluator every method and check uses.

Given draws :math:`\theta_s` of the latent sites (``{site: (S, *shape)}``, or flat
unconstrained rows :math:`z_s` with a :class:`~pyro_unlearn.guides.LatentSite` layout), a
:class:`ModelEvaluator` returns every sample site's scaled and masked log probability per
draw and per element, and from them

* the log-likelihood :math:`\log p(D\mid\theta_s)` (all observed sites, or the forget sites),
  in total or per element;
* the log joint :math:`\log p(\theta(z_s), D) + \log|\det\partial\theta/\partial z|` of the
  unconstrained latents, Jacobians included;
* single-draw traces (for curvature that needs the likelihood's own parameters).

Models are run as their authors wrote them. Three ways to run one for :math:`S` draws are
tried, and the evaluator keeps the first that reproduces a plain run of the model on two of
the draws (so a path is never taken that changes the answer); :attr:`ModelEvaluator.path`
records which:

``"vectorized"``
    One run under a particle plate at dim :math:`-(\text{max\_plate\_nesting}+1)`, as
    :func:`pyro.infer.importance.vectorized_importance_weights` does. Fast; needs a model that
    broadcasts over a leading batch dimension.
``"vmap"``
    :func:`torch.func.vmap` over a function of one draw: takes models written for one draw
    (``nn.Linear`` with sampled weights, ``X @ w``, ``torch.mm``) that have no Python control
    flow on tensor values (distribution argument checks are switched off inside it).
``"loop"``
    One run per draw: takes anything.

Draws are run in blocks of :func:`draws_per_run` (the ``chunk_size`` of the evaluator): as
many as keep the largest tensor the model makes (measured at its first run) within
:data:`~pyro_unlearn.model_eval.sites.BYTES_PER_RUN`, between 32 and 2048, so that a model's
intermediates stay in the CPU's cache.

Plates are evaluated whole. A subsampled plate (``pyro.plate("data", N, subsample_size=B)``)
is run on every element, in chunks of :math:`B` whose unbiasing scale :math:`N/B` is undone, so
each element counts once and nothing depends on a random subsample. Enumerated discrete sites
(``config_enumerate``) local to the data plate are summed out per element.

The forget-set log-likelihood comes from :func:`forget_evaluator`, which also decides, once,
how to evaluate only the forget elements of a masked plate (at the cost of the forget set, not
of the whole data): by giving the plate the forget indices (models that index their data with
the plate, ``with pyro.plate(...) as idx``), by slicing the data arguments along the plate, or,
where neither reproduces the masked run, by running the whole data under the mask.

Example: a model written for one draw (``X @ w``) is run under ``vmap``.

>>> import torch, pyro, pyro.distributions as dist
>>> def model(X, y):
...     w = pyro.sample("w", dist.Normal(torch.zeros(2), 1.0).to_event(1))
...     with pyro.plate("data", len(X)):
...         pyro.sample("y", dist.Normal(X @ w, 1.0), obs=y)
>>> X, y = torch.eye(2), torch.tensor([1.0, -1.0])
>>> evaluator = ModelEvaluator(model, (X, y))
>>> w = torch.tensor([[0.0, 0.0], [1.0, -1.0], [2.0, 0.0]])
>>> log_lik = evaluator.log_likelihood({"w": w})
>>> expected = torch.stack([dist.Normal(X @ w_s, 1.0).log_prob(y).sum() for w_s in w])
>>> evaluator.path, bool(torch.allclose(log_lik, expected))
('vmap', True)
"""

# The package's modules, each importing only those before it: messengers (handlers and
# errors), sites (records and helpers), running (the paths), evaluator, forget_set.
from .evaluator import ModelEvaluator
from .forget_set import ForgetEvaluator, forget_evaluator
from .messengers import (
    LOG_PROB,
    MissingLatentError,
    ModelEvaluationError,
    PlateIndex,
    SetLatents,
)
from .sites import CHUNK_SIZE, PARTICLE_PLATE, PATHS, SiteInfo, as_values, draws_per_run

__all__ = [  # the API docs list the members in this order
    "PATHS",
    "PARTICLE_PLATE",
    "CHUNK_SIZE",
    "draws_per_run",
    "ModelEvaluationError",
    "MissingLatentError",
    "SetLatents",
    "LOG_PROB",
    "PlateIndex",
    "SiteInfo",
    "ModelEvaluator",
    "forget_evaluator",
    "ForgetEvaluator",
    "as_values",
]
