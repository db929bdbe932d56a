r"""SCRUB: a student that disobeys the teacher on the forget set and obeys it on the rest.

Kurmanji et al. (NeurIPS 2023). The teacher is the trained network :math:`f^*`; the student
:math:`f` starts as a copy. With the distillation divergence at temperature :math:`T`,

.. math:: d(x) = T^2\,\mathrm{KL}\big(\mathrm{softmax}(f^*(x)/T)\,\big\|\,\mathrm{softmax}(f(x)/T)\big),

each epoch takes, for the first ``max_epochs`` epochs, a *max-step* pass over the forget set
minimising :math:`-\bar d` on :math:`D_f`, then a *min-step* pass over the retained data
minimising :math:`\gamma\,\mathrm{CE}(f(x), y) + \alpha\,\bar d` on :math:`D_r`.
"""

from __future__ import annotations

import copy
import time

import torch
from torch import nn

from .. import _rng
from ..errors import BadRequestError
from ._guards import check_finite, guarded


def distillation_divergence(student_logits, teacher_logits, temperature: float) -> torch.Tensor:
    r""":math:`T^2\,\mathrm{KL}(p_t \| p_s)` per batch (summed over classes, averaged over
    examples), with :math:`p = \mathrm{softmax}(\text{logits}/T)`.

    >>> logits = torch.randn(4, 3)
    >>> float(distillation_divergence(logits, logits, 4.0))
    0.0
    """
    log_s = (student_logits / temperature).log_softmax(-1)
    log_t = (teacher_logits / temperature).log_softmax(-1)
    kl = (log_t.exp() * (log_t - log_s)).sum(-1).mean()
    return kl * temperature**2


@guarded("x_forget", "y_forget", "x_retain", "y_retain")
def scrub(
    net: nn.Module,
    x_forget,
    y_forget,
    x_retain,
    y_retain,
    *,
    epochs: int = 3,
    max_epochs: int = 2,
    temperature: float = 4.0,
    alpha: float = 0.001,
    gamma: float = 0.99,
    lr: float = 5e-4,
    forget_batch_size: int = 32,
    batch_size: int = 128,
    seed: int = 0,
):
    r"""SCRUB (Kurmanji et al., NeurIPS 2023). Uses the forget set (max-steps) and the
    retained data (min-steps); ``y_forget`` only for the input checks.

    The authors' small-scale settings: SGD (``lr`` 5e-4, momentum 0.9, weight decay 5e-4),
    :math:`T = 4`, :math:`\alpha = 0.001`, :math:`\gamma = 0.99`, 3 epochs of which 2 take
    max-steps, minibatches of 32 forget and 128 retained examples. No learning rate held on
    both digits networks (classes 0, 3, 6, 9, one seed): at 5e-4 the student moved too little
    to forget most classes; the MLP needed 5e-3, where the CNN collapsed (retain accuracy
    0.11); 1e-3 forgot 3 of 4 classes on the CNN.
    """
    if not 0 <= max_epochs <= epochs:
        raise BadRequestError(f"max_epochs must be in [0, epochs={epochs}], got {max_epochs}")
    teacher = copy.deepcopy(net).eval()
    student = copy.deepcopy(net)
    optim = torch.optim.SGD(student.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    g = _rng.generator(seed)
    start, steps = time.perf_counter(), 0

    def teach(x):
        with torch.no_grad():
            return teacher(x)

    for epoch in range(epochs):
        passes = [("max", x_forget, None, forget_batch_size)] if epoch < max_epochs else []
        passes.append(("min", x_retain, y_retain, batch_size))
        for kind, x, y, size in passes:
            for batch in _rng.permutation(len(x), g).split(size):
                optim.zero_grad()
                out = student(x[batch])
                divergence = distillation_divergence(out, teach(x[batch]), temperature)
                if kind == "max":
                    loss = -divergence
                else:
                    ce = nn.functional.cross_entropy(out, y[batch])
                    loss = gamma * ce + alpha * divergence
                check_finite(loss, "SCRUB", steps)
                loss.backward()
                optim.step()
                steps += 1
    student.eval()
    return student, {"steps": steps, "seconds": time.perf_counter() - start}
