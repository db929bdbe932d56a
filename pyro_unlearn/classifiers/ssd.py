"""SSD: dampen weights whose importance on the forget set exceeds ``alpha`` times that on all
data (squared minibatch gradients, :func:`minibatch_importance`)."""

from __future__ import annotations

import copy
import time

import torch
from torch import nn

from .. import _rng
from ._guards import evaluating, guarded


def minibatch_importance(net: nn.Module, x, y, *, batch_size: int = 64) -> dict[str, torch.Tensor]:
    r"""SSD's parameter importance: squared minibatch gradients of the cross-entropy, averaged.

    .. math:: []_k = \frac1B \sum_{b=1}^{B} \big(\partial_{\theta_k} \mathrm{CE}_{\text{mean}}(f_\theta(x_b), y_b)\big)^2

    over the ``B`` consecutive minibatches of ``(x, y)``. Unlike the expected Fisher, the
    gradients are averaged *before* squaring: they add up within a minibatch of one class
    and cancel within a minibatch of all classes at a trained optimum, which is what lets
    SSD's ratio test single out forget-specific weights (the authors' implementation).
    """
    importance = {k: torch.zeros_like(v) for k, v in net.named_parameters()}  # frozen: 0
    params = {k: p for k, p in net.named_parameters() if p.requires_grad}
    batches = torch.arange(len(x), device=x.device).split(batch_size)
    with evaluating(net):
        for batch in batches:
            loss = nn.functional.cross_entropy(net(x[batch]), y[batch])
            grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
            for k, g in zip(params, grads, strict=True):
                if g is not None:
                    importance[k] += g.pow(2)
    return {k: v / len(batches) for k, v in importance.items()}


@guarded("x_forget", "y_forget", "x_all", "y_all")
def ssd(
    net: nn.Module,
    x_forget,
    y_forget,
    x_all,
    y_all,
    *,
    alpha: float = 10.0,
    lam: float = 1.0,
    batch_size: int = 64,
    seed: int = 0,
):
    r"""Selective synaptic dampening (Foster et al. 2023), zero-shot from importances.

    With importances :math:`[]_f` on the forget set and :math:`[]_D` on all training data
    (:func:`minibatch_importance`; the training data shuffled by ``seed``), every weight
    with :math:`[]_{f,k} > \alpha []_{D,k}` is multiplied by
    :math:`\min(\lambda []_{D,k}/[]_{f,k}, 1)`.
    """
    start = time.perf_counter()
    order = _rng.permutation(len(x_all), _rng.generator(seed))
    forget_importance = minibatch_importance(net, x_forget, y_forget, batch_size=batch_size)
    all_importance = minibatch_importance(net, x_all[order], y_all[order], batch_size=batch_size)
    net = copy.deepcopy(net)
    dampened = 0
    with torch.no_grad():
        for name, p in net.named_parameters():
            f, d = forget_importance[name], all_importance[name]
            selected = f > alpha * d
            factor = (lam * d / f.clamp(min=1e-30)).clamp(max=1.0)
            p[selected] *= factor[selected]
            dampened += int(selected.sum())
    return net, {"dampened": dampened, "seconds": time.perf_counter() - start}
