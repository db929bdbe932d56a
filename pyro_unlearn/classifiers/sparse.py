r""":math:`\ell_1`-sparse unlearning: fine-tune on the retained data with a decaying
:math:`\ell_1` penalty.

Jia et al. (NeurIPS 2023) show that a sparse network forgets more easily; their
:math:`\ell_1`-sparse unlearning fine-tunes on :math:`D_r` with

.. math:: \mathrm{CE}(f_\theta(x), y) + \alpha_t \|\theta\|_1, \qquad \alpha_t = \alpha\,(1 - t/E)

at epoch :math:`t` of :math:`E`, so the penalty prunes early and fades out.
"""

from __future__ import annotations

import copy
import time

import torch
from torch import nn

from .. import _rng
from ._guards import check_finite, guarded


@guarded("x_retain", "y_retain")
def l1_sparse(
    net: nn.Module,
    x_retain,
    y_retain,
    *,
    alpha: float = 5e-4,
    epochs: int = 3,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
):
    r""":math:`\ell_1`-sparse unlearning (Jia et al., NeurIPS 2023). Uses the retained data
    only: the forget set is never read.

    Adam at ``lr`` on :math:`\mathrm{CE} + \alpha_t \|\theta\|_1` over ``epochs`` passes
    (the authors: SGD, 10 epochs, :math:`\alpha` tuned per task).
    """
    new = copy.deepcopy(net)
    optim = torch.optim.Adam(new.parameters(), lr=lr)
    g = _rng.generator(seed)
    start, steps = time.perf_counter(), 0
    for epoch in range(epochs):
        penalty = alpha * (1 - epoch / epochs)
        for batch in _rng.permutation(len(x_retain), g).split(batch_size):
            optim.zero_grad()
            l1 = sum(p.abs().sum() for p in new.parameters())
            loss = nn.functional.cross_entropy(new(x_retain[batch]), y_retain[batch]) + penalty * l1
            check_finite(loss, "l1-sparse unlearning", steps)
            loss.backward()
            optim.step()
            steps += 1
    new.eval()
    return new, {"steps": steps, "seconds": time.perf_counter() - start}
