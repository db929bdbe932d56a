r"""PBU and NegGrad: gradient ascent on the forget set's cross-entropy, PBU with its anchor.

PBU: :math:`\alpha\,(-\mathrm{CE}) + \beta\sum_k F_{kk}(\theta_k-\theta^*_k)^2 + \gamma\sum_k(\theta_k-\theta^*_k)^2`,
the EUBO of a Delta guide with forget weight :math:`-\alpha/n` and Gaussian anchor
:math:`\mathcal N(\theta^*, (2\beta F + 2\gamma I)^{-1})` (see :func:`pbu_anchor`).
"""

from __future__ import annotations

import copy
import time

import pyro.distributions as dist
import torch
from torch import nn

from .. import _rng
from ._guards import accuracy_target, check_finite, check_reached, guarded
from .fisher import diagonal_fisher
from .training import _accuracy


def _ascent(
    net,
    x_forget,
    y_forget,
    loss_fn,
    *,
    lr,
    max_steps,
    batch_size,
    target_forget_accuracy,
    seed,
    on_unreliable,
    method,
):
    """Shared loop: Adam on ``loss_fn(net, xb, yb)``, stop once forget accuracy <= target;
    ``on_unreliable`` says what a run that stops at ``max_steps`` short of it does."""
    net = copy.deepcopy(net)
    optim = torch.optim.Adam(net.parameters(), lr=lr)
    g = _rng.generator(seed)
    steps, start = 0, time.perf_counter()
    stopped = _accuracy(net, x_forget, y_forget) <= target_forget_accuracy
    while not stopped and steps < max_steps:
        for batch in _rng.permutation(len(x_forget), g).split(batch_size):
            optim.zero_grad()
            loss = loss_fn(net, x_forget[batch], y_forget[batch])
            check_finite(loss, "gradient ascent", steps)
            loss.backward()
            optim.step()
            steps += 1
            if _accuracy(net, x_forget, y_forget) <= target_forget_accuracy:
                stopped = True
                break
            if steps >= max_steps:
                break
    info = {
        "steps": steps,
        "reached_target": stopped,
        "forget_accuracy": _accuracy(net, x_forget, y_forget),
        "seconds": time.perf_counter() - start,
    }
    return net, check_reached(info, on_unreliable, method, accuracy_target(target_forget_accuracy))


def pbu_anchor(net: nn.Module, fisher: dict[str, torch.Tensor], beta: float, gamma: float) -> dict:
    r"""The Gaussian anchor of PBU as site distributions: :math:`\mathcal N(\theta^*, (2\beta F+2\gamma)^{-1})`.

    With a Delta guide at :math:`\theta`, :math:`-\log` of this anchor is
    :math:`\beta\sum F(\theta-\theta^*)^2 + \gamma\sum(\theta-\theta^*)^2` plus a constant.
    """
    return {
        name: dist.Normal(p.detach(), (2 * beta * fisher[name] + 2 * gamma).rsqrt()).to_event(
            p.dim()
        )
        for name, p in net.named_parameters()
    }


def pbu_loss(net, reference, fisher, x, y, alpha: float, beta: float, gamma: float) -> torch.Tensor:
    r""":math:`\alpha(-\mathrm{CE}_{\text{mean}}) + \beta\sum F(\theta-\theta^*)^2 + \gamma\sum(\theta-\theta^*)^2`."""
    penalty = sum(
        (beta * fisher[name] + gamma).mul((p - reference[name]).pow(2)).sum()
        for name, p in net.named_parameters()
    )
    return -alpha * nn.functional.cross_entropy(net(x), y) + penalty


@guarded("x_forget", "y_forget")
def pbu(
    net: nn.Module,
    x_forget,
    y_forget,
    *,
    alpha: float = 700.0,
    beta: float = 100.0,
    gamma: float = 40.0,
    lr: float = 1e-3,
    batch_size: int = 64,
    max_steps: int = 200,
    target_forget_accuracy: float = 0.0,
    seed: int = 0,
    on_unreliable: str = "raise",
):
    r"""Partially-Blinded Unlearning (Panda et al. 2024) from the forget set only.

    Adam on :func:`pbu_loss`, stopping as soon as the forget accuracy reaches
    ``target_forget_accuracy`` (retain accuracy degrades if one keeps going). Defaults:
    the authors' :math:`\alpha:\beta` with :math:`\gamma = 40` instead of their 4000 (measured
    here on digits: with :math:`\gamma = 4000` the :math:`\ell_2` pull cancels the ascent).
    A run that reaches ``max_steps`` first follows ``on_unreliable`` (``"raise"``: a
    :class:`~pyro_unlearn.TargetNotReachedError`; ``"warn"``, ``"ignore"``: the network,
    its diagnostics flagged ``reliable=False``).
    """
    fisher = diagonal_fisher(net, x_forget)  # in eval mode
    reference = {k: v.detach().clone() for k, v in net.named_parameters()}

    def loss(model, xb, yb):
        return pbu_loss(model, reference, fisher, xb, yb, alpha, beta, gamma)

    return _ascent(
        net,
        x_forget,
        y_forget,
        loss,
        lr=lr,
        max_steps=max_steps,
        batch_size=batch_size,
        target_forget_accuracy=target_forget_accuracy,
        seed=seed,
        on_unreliable=on_unreliable,
        method="pbu",
    )


@guarded("x_forget", "y_forget")
def neggrad(
    net,
    x_forget,
    y_forget,
    *,
    lr: float = 3e-3,
    batch_size: int = 64,
    max_steps: int = 200,
    target_forget_accuracy: float = 0.0,
    seed: int = 0,
    on_unreliable: str = "raise",
):
    """Baseline: gradient ascent on the forget-set cross-entropy (Adam), with the same stopping
    rule and the same ``on_unreliable`` policy as :func:`pbu`."""

    def loss(model, xb, yb):
        return -nn.functional.cross_entropy(model(xb), yb)

    return _ascent(
        net,
        x_forget,
        y_forget,
        loss,
        lr=lr,
        max_steps=max_steps,
        batch_size=batch_size,
        target_forget_accuracy=target_forget_accuracy,
        seed=seed,
        on_unreliable=on_unreliable,
        method="neggrad",
    )
