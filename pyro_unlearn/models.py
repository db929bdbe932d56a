"""Small Bayesian models used by the demo, the benchmarks and the tutorials."""

from __future__ import annotations

from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch


@dataclass(frozen=True)
class BayesianLogisticRegression:
    """:math:`w \\sim \\mathcal N(0, s^2 I)`, :math:`y_i \\sim \\mathrm{Bernoulli}(\\sigma(x_i^\\top w))`.

    >>> model = BayesianLogisticRegression(prior_scale=1.0).model
    >>> trace = pyro.poutine.trace(model).get_trace(torch.ones(3, 2), torch.ones(3))
    >>> trace.nodes["w"]["value"].shape
    torch.Size([2])
    """

    prior_scale: float = 1.0

    def model(self, X: torch.Tensor, y: torch.Tensor | None = None):
        """Latent ``w`` (shape ``(D,)``); observed ``y`` in plate ``data``."""
        w = pyro.sample("w", dist.Normal(X.new_zeros(X.shape[1]), self.prior_scale).to_event(1))
        with pyro.plate("data", len(X)):
            # written as users write it: it does not broadcast over draws, and the model
            # evaluator runs it under vmap, one batched matrix product per block of draws
            # (the broadcasting form (X * w).sum(-1) builds a (draws, N, D) intermediate)
            logits = X @ w
            return pyro.sample("y", dist.Bernoulli(logits=logits), obs=y)
