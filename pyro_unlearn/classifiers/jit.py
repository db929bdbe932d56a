r"""JiT: :math:`\frac1N\sum_n \|f(x)-f(x+\varepsilon_n)\|_2/\|\varepsilon_n\|_2` per forget point, one SGD pass."""

from __future__ import annotations

import copy
import time

import torch
from torch import nn

from .. import _rng
from ..options import Variant, choose
from ._guards import guarded


def lipschitz_loss(net, x, noise: torch.Tensor, *, detach_perturbed: bool = False) -> torch.Tensor:
    r"""JiT's smoothing loss: :math:`\sum_{i=1}^{B}\frac1N\sum_{n}\|f(x_i)-f(x_i+\varepsilon_{in})\|_2/\|\varepsilon_{in}\|_2`.

    ``noise`` has shape ``(N, B, *x.shape[1:])``. Summed over the batch: JiT's Algorithm 1
    takes one step per forget point, and a batch of ``B`` points stands for ``B`` such
    steps (the authors' code sums too). ``detach_perturbed``: the perturbed outputs
    :math:`f(x+\varepsilon)` as constants, as the authors' code computes them (under
    ``no_grad``), so only :math:`f(x)` is differentiated.
    """
    clean = net(x)
    with torch.set_grad_enabled(torch.is_grad_enabled() and not detach_perturbed):
        perturbed = net((x.unsqueeze(0) + noise).reshape((-1,) + x.shape[1:])).reshape(
            noise.shape[:2] + clean.shape[1:]
        )
    ratio = (clean.unsqueeze(0) - perturbed).norm(dim=-1) / noise.flatten(2).norm(dim=-1)
    return ratio.mean(0).sum()


@guarded("x_forget")
def jit(
    net: nn.Module,
    x_forget,
    *,
    sigma: float = 0.5,
    lr: float = 3e-4,
    num_perturbations: int = 25,
    batch_size: int = 32,
    variant: str = "library",
    seed: int = 0,
):
    r"""Zero-shot Lipschitz unlearning (Foster et al. 2024): one SGD pass over the forget set.
    Uses the forget inputs only (no labels, no other data).

    ``variant="library"`` (the default) is Algorithm 1 as the paper writes it: both
    :math:`f(x)` and :math:`f(x+\varepsilon)` differentiated, gradients zeroed per
    minibatch, evaluation mode, Gaussian noise. ``variant="authors"`` is the authors' code:
    the perturbed outputs detached (:func:`lipschitz_loss`'s ``detach_perturbed``), gradients
    accumulated over the pass (never zeroed), dropout and batch norm in training mode, and
    the perturbed inputs clamped to the minibatch's range.
    """
    authors = choose(Variant, variant, "variant") is Variant.AUTHORS
    net = copy.deepcopy(net)
    net.train(authors)
    optim = torch.optim.SGD(net.parameters(), lr=lr)
    g = _rng.generator(seed)
    start = time.perf_counter()
    optim.zero_grad()
    for batch in _rng.permutation(len(x_forget), g).split(batch_size):
        xb = x_forget[batch]
        noise = sigma * _rng.normal((num_perturbations,) + xb.shape, g, like=xb)
        if authors:
            noise = (xb + noise).clamp(xb.min(), xb.max()) - xb
        else:
            optim.zero_grad()
        lipschitz_loss(net, xb, noise, detach_perturbed=authors).backward()
        optim.step()
    net.eval()
    return net, {
        "seconds": time.perf_counter() - start,
        "steps": len(range(0, len(x_forget), batch_size)),
    }
