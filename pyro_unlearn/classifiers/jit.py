r"""JiT: :math:`\frac1N\sum_n \|f(x)-f(x+\varepsilon_n)\|_2/\|\varepsilon_n\|_2` per forget point, one SGD pass."""

from __future__ import annotations

import copy
import time

import torch
from torch import nn

from .. import _rng
from ._guards import guarded


def lipschitz_loss(net, x, noise: torch.Tensor) -> torch.Tensor:
    r"""JiT's smoothing loss: :math:`\sum_{i=1}^{B}\frac1N\sum_{n}\|f(x_i)-f(x_i+\varepsilon_{in})\|_2/\|\varepsilon_{in}\|_2`.

    ``noise`` has shape ``(N, B, *x.shape[1:])``. Summed over the batch: JiT's Algorithm 1
    takes one step per forget point, and a batch of ``B`` points stands for ``B`` such
    steps (the authors' code sums too).
    """
    clean = net(x)
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
    accumulate_gradients: bool = False,
    train_mode: bool = False,
    clamp_noise: bool = False,
    seed: int = 0,
):
    r"""Zero-shot Lipschitz unlearning (Foster et al. 2024): one SGD pass over the forget set.

    Algorithm 1 by default (gradients zeroed per batch, evaluation mode, Gaussian noise).
    ``accumulate_gradients``, ``train_mode`` and ``clamp_noise`` reproduce the authors'
    code: gradients never zeroed, dropout/batch-norm in training mode, perturbed inputs
    clamped to the batch's min/max.
    """
    net = copy.deepcopy(net)
    net.train(train_mode)
    optim = torch.optim.SGD(net.parameters(), lr=lr)
    g = _rng.generator(seed)
    start = time.perf_counter()
    optim.zero_grad()
    for batch in _rng.permutation(len(x_forget), g).split(batch_size):
        xb = x_forget[batch]
        noise = sigma * _rng.normal((num_perturbations,) + xb.shape, g, like=xb)
        if clamp_noise:
            noise = (xb + noise).clamp(xb.min(), xb.max()) - xb
        if not accumulate_gradients:
            optim.zero_grad()
        lipschitz_loss(net, xb, noise).backward()
        optim.step()
    net.eval()
    return net, {
        "seconds": time.perf_counter() - start,
        "steps": len(range(0, len(x_forget), batch_size)),
    }
