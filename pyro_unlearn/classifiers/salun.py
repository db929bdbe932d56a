r"""SalUn: random-label fine-tuning restricted to the weights salient for the forget set.

Weight saliency (Fan et al., ICLR 2024) is the magnitude of the forgetting loss's gradient,

.. math:: s_k = \Big|\partial_{\theta_k} \sum_{b} -\mathrm{CE}_{\text{mean}}(f_\theta(x_b), y_b)\Big|_{\theta=\theta^*}

summed over the forget set's minibatches :math:`b`; the mask :math:`m_k = 1[s_k \ge s_{(q)}]`
keeps the top ``1 - sparsity`` share of all weights (one threshold over the whole network).
Unlearning is then SalUn's random-label variant: cross-entropy on the retained data and on
the forget set relabelled at random, with gradients multiplied by the mask, so the weights
outside it stay at :math:`\theta^*`.
"""

from __future__ import annotations

import copy
import time

import torch
from torch import nn

from .. import _rng
from ..errors import BadRequestError
from ._guards import check_finite, evaluating, guarded
from .instance import random_other_labels


def weight_saliency(
    net: nn.Module, x_forget, y_forget, *, sparsity: float = 0.5, batch_size: int = 64
) -> dict[str, torch.Tensor]:
    r"""SalUn's saliency mask: 1 for the weights whose :math:`|\nabla_\theta(-\mathrm{CE})|` on
    the forget set is at or above its ``sparsity`` quantile over all weights, else 0.

    >>> net = nn.Linear(3, 2)
    >>> masks = weight_saliency(net, torch.randn(8, 3), torch.arange(8) % 2, sparsity=0.5)
    >>> sum(int(m.sum()) for m in masks.values()), sum(m.numel() for m in masks.values())
    (4, 8)
    """
    if not 0.0 <= sparsity < 1.0:
        raise BadRequestError(
            f"sparsity must be in [0, 1) (the share of weights frozen), got {sparsity}"
        )
    params = {k: p for k, p in net.named_parameters() if p.requires_grad}  # frozen: never salient
    saliency = {k: torch.zeros_like(p) for k, p in net.named_parameters()}
    with evaluating(net):
        for batch in torch.arange(len(x_forget)).split(batch_size):
            loss = -nn.functional.cross_entropy(net(x_forget[batch]), y_forget[batch])
            grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
            for k, g in zip(params, grads, strict=True):
                if g is not None:  # a parameter the output does not use has no saliency
                    saliency[k] += g
    flat = torch.cat([s.abs().flatten() for s in saliency.values()])
    keep = max(1, round((1 - sparsity) * flat.numel()))
    threshold = flat.topk(keep).values.min()
    return {k: (s.abs() >= threshold).to(s.dtype) for k, s in saliency.items()}


@guarded("x_forget", "y_forget", "x_retain", "y_retain")
def salun(
    net: nn.Module,
    x_forget,
    y_forget,
    x_retain,
    y_retain,
    *,
    sparsity: float = 0.5,
    epochs: int = 2,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
):
    r"""Saliency unlearning (Fan et al., ICLR 2024), random-label variant. Uses the forget set
    and the retained data.

    Adam on the cross-entropy of :math:`D_r \cup \tilde D_f`, :math:`\tilde D_f` the forget
    set with each label replaced by a random other class (redrawn every epoch), for
    ``epochs`` passes over the shuffled union; only the weights of :func:`weight_saliency`'s
    mask move (their gradients are zeroed, so Adam leaves them exactly where they
    were). The paper fine-tunes with SGD for 10 epochs on CIFAR; here Adam at the
    networks' training learning rate, 2 epochs (1/15 of the digits MLP's training, to leave
    room for a 10x speed-up over retraining).
    """
    with evaluating(net), torch.no_grad():
        classes = net(x_forget[:1]).shape[-1]
    mask = weight_saliency(net, x_forget, y_forget, sparsity=sparsity, batch_size=batch_size)
    new = copy.deepcopy(net)
    optim = torch.optim.Adam(new.parameters(), lr=lr)
    g = _rng.generator(seed)
    x_all = torch.cat([x_forget, x_retain])
    start, steps = time.perf_counter(), 0
    for _ in range(epochs):
        y_all = torch.cat([random_other_labels(y_forget, classes, g), y_retain])
        for batch in _rng.permutation(len(x_all), g).split(batch_size):
            optim.zero_grad()
            loss = nn.functional.cross_entropy(new(x_all[batch]), y_all[batch])
            check_finite(loss, "SalUn", steps)
            loss.backward()
            for k, p in new.named_parameters():
                if p.grad is not None:
                    p.grad *= mask[k]
            optim.step()
            steps += 1
    new.eval()
    frozen = sum(int((m == 0).sum()) for m in mask.values())
    return new, {"steps": steps, "frozen": frozen, "seconds": time.perf_counter() - start}
