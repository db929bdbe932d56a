"""Classifiers for the digits data, and the bridge from a torch network to a Pyro model."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.func import functional_call


def mlp(
    in_features: int = 64, hidden: tuple[int, ...] = (128, 128), classes: int = 10
) -> nn.Module:
    """A ReLU multilayer perceptron."""
    layers, width = [], in_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    return nn.Sequential(*layers, nn.Linear(width, classes))


def small_cnn(classes: int = 10) -> nn.Module:
    """A small CNN for 8x8 single-channel images (input flattened to 64 features)."""
    return nn.Sequential(
        nn.Unflatten(1, (1, 8, 8)),
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64),
        nn.ReLU(),
        nn.Linear(64, classes),
    )


class ClassifierModel:
    r"""A Pyro model around a torch classifier: weights are latent sites, labels Categorical.

    .. math:: \theta_k \sim \mathcal N(0, s^2),\qquad y_i \mid x_i, \theta \sim \mathrm{Categorical}(\mathrm{softmax}\, f_\theta(x_i))

    Site names are the network's parameter names; observations sit in plate ``"data"``.
    The same :func:`~pyro_unlearn.forget` and :func:`~pyro_unlearn.anchor` handlers apply,
    and point methods use a Delta guide at the trained weights (:meth:`point_guide`).

    >>> model = ClassifierModel(mlp(4, (3,), 2))
    >>> trace = pyro.poutine.trace(model).get_trace(torch.zeros(5, 4), torch.zeros(5).long())
    >>> [name for name, site in trace.nodes.items() if site["type"] == "sample" and name != "data"]
    ['0.weight', '0.bias', '2.weight', '2.bias', 'y']
    """

    def __init__(self, net: nn.Module, prior_scale: float = 1.0) -> None:
        self.net = net
        self.prior_scale = prior_scale

    def __call__(self, x: torch.Tensor, y: torch.Tensor | None = None):
        params = {
            name: pyro.sample(
                name, dist.Normal(torch.zeros_like(p), self.prior_scale).to_event(p.dim())
            )
            for name, p in self.net.named_parameters()
        }
        logits = functional_call(self.net, params, (x,))
        with pyro.plate("data", len(x)):
            return pyro.sample("y", dist.Categorical(logits=logits), obs=y)

    def point_guide(self):
        """A Delta guide at the network's current weights (module-local parameters)."""
        from pyro.infer.autoguide import AutoDelta, init_to_value

        values = {name: p.detach().clone() for name, p in self.net.named_parameters()}
        with pyro.settings.context(module_local_params=True):
            return AutoDelta(self, init_loc_fn=init_to_value(values=values))
