r"""Class distillation: the trained network's own predictive, with the forgotten classes taken out.

For a whole class (or several) forgotten, a network that never saw it still puts the class's
images somewhere: in the classes they resemble. The trained network already says where, in
its predictive conditioned on the label not being a forgotten class. With :math:`p^*` the
trained network, :math:`C_f` the forgotten classes (those of :math:`D_f` absent from
:math:`D_r`) and :math:`p_\theta` the network being unlearned, the targets are

.. math::

    q(k \mid x) = \frac{p^*(k \mid x)\,1[k \notin C_f]}{\sum_{j \notin C_f} p^*(j \mid x)}
    \quad (x \in D_f), \qquad q(k \mid x) = p^*(k \mid x) \quad (x \in D_r),

and each step of Adam lowers

.. math::

    \frac{1}{|B_f| + |B_r|}\Big(\sum_{i \in B_f} \mathrm{KL}\big(q(\cdot\mid x_i)\,\|\,p_\theta(\cdot\mid x_i)\big)
    + \sum_{j \in B_r} \mathrm{KL}\big(p^*(\cdot\mid x_j)\,\|\,p_\theta(\cdot\mid x_j)\big)\Big)

on a minibatch :math:`B_f` of the forget set and a replay :math:`B_r` of ``replay`` retained
examples per forgotten one, drawn from a pool of ``replay`` retained examples per forget
example (at least four steps' worth) whose :math:`p^*` is computed once.

Unlike gradient ascent the objective has a minimum, 0 at a network that predicts :math:`q`
on the forget images and :math:`p^*` on the retained ones, so there is nothing to stop
early against. What sets the budget is the shape of the run, measured on digits: the first
steps push the forget set out of :math:`C_f` and knock neighbouring classes about (test
accuracy falls by up to 5 points), and the replay then repairs them. So the learning
rate is kept until the step :math:`t_1` at which no forget image is predicted in
:math:`C_f` (the whole forget set is checked whenever a step's minibatch has none there: a
clean minibatch alone came early on networks that learn slower, and left up to 5% of a
class behind), and the run goes on to ``repair`` :math:`\times\, t_1` steps in all (within
``[min_steps, max_steps]``) with the learning rate falling linearly to 0 after :math:`t_1`.
If the repair brings a forget image back into :math:`C_f` (measured on networks outside the
benchmark's grid: 2 of 120 class runs, one image each), the run forgets again at the full
rate and repairs again, within ``max_steps``.

This is the library's own method. It is the two-teacher distillation of Chundawat et al.
(AAAI 2023, "bad teacher") with the incompetent teacher replaced by the conditioned
competent one, and it reads :math:`D_f` and a replay sample of :math:`D_r`.
"""

from __future__ import annotations

import copy
import time

import torch
from torch import nn

from .. import _checks, _rng
from ..errors import BadRequestError
from ._guards import check_finite, check_reached, evaluating, guarded


def forgotten_class_targets(net: nn.Module, x, classes: torch.Tensor) -> torch.Tensor:
    r"""Log of :math:`q(k\mid x) \propto p^*(k\mid x)\,1[k \notin C_f]`: the trained network's
    predictive conditioned on the label not being one of ``classes``.

    >>> net = nn.Linear(2, 3)
    >>> q = forgotten_class_targets(net, torch.randn(4, 2), torch.tensor([1])).exp()
    >>> bool((q[:, 1] == 0).all()), torch.allclose(q.sum(-1), torch.ones(4))
    (True, True)
    """
    with evaluating(net), torch.no_grad():
        logits = net(x).clone()
    logits[:, classes] = -torch.inf
    return logits.log_softmax(-1)


@guarded("x_forget", "y_forget", "x_retain", "y_retain")
def class_distillation(
    net: nn.Module,
    x_forget,
    y_forget,
    x_retain,
    y_retain,
    *,
    lr: float = 1e-3,
    batch_size: int = 16,
    replay: int = 2,
    repair: float = 3.0,
    min_steps: int = 16,
    max_steps: int = 200,
    seed: int = 0,
    on_unreliable: str = "raise",
):
    r"""Forget whole classes by distilling the trained network conditioned on their absence
    (see the module docstring for the loss and the schedule). Uses the forget set and a
    replay sample of the retained data.

    Parameters
    ----------
    net : nn.Module
        The trained classifier (never modified).
    x_forget, y_forget
        Every training example of the classes to forget.
    x_retain, y_retain
        The retained training data; the forgotten classes :math:`C_f` are the classes of
        ``y_forget`` it does not hold. A forget example whose class it still holds is
        refused: class distillation forgets classes, not examples (for those use
        ``"salun"``, ``"pbu"`` or ``"instance"``).
    lr : float
        Adam's learning rate until :math:`t_1` (the networks' training rate).
    batch_size, replay : int
        Forget examples per step, and retained examples per forget example: in each step
        (drawn with replacement from the pool) and in the pool (drawn once, without
        replacement: ``replay * max(len(x_forget), 4 * batch_size)`` of them, or all).
    repair : float
        Steps in all as a multiple of :math:`t_1`, the first step at which no forget
        example is predicted in :math:`C_f`; within ``[min_steps, max_steps]``.
    seed : int
        Seeds the minibatches (the caller's RNG state is untouched).
    on_unreliable : {"raise", "warn", "ignore"}
        What a run does whose returned network still predicts a forget example in
        :math:`C_f` (:math:`t_1` not reached within ``max_steps``, or an example back in
        :math:`C_f` after the repair): raise a :class:`~pyro_unlearn.TargetNotReachedError`,
        or return the network with its diagnostics flagged ``reliable=False``.

    Returns
    -------
    (nn.Module, dict)
        The unlearned copy and ``{"steps", "forgot_at", "relapses", "reached_target",
        "forget_accuracy", "pool", "seconds"}`` (``pool``: the retained examples replayed);
        ``forgot_at`` is the last :math:`t_1` (``None`` if not reached within
        ``max_steps``); ``relapses``: the repairs that brought a forget image back;
        ``reached_target``: no forget example is predicted in :math:`C_f` by the network
        returned.
    """
    if max_steps < min_steps:  # each a count (checked by the guard)
        raise BadRequestError(
            f"need min_steps <= max_steps, got {min_steps} and {max_steps} "
            "(min_steps is 16 unless given)"
        )
    if _checks.positive("repair", repair) < 1.0:
        raise BadRequestError(
            f"repair must be >= 1 (steps in all per step to forget), got {repair}"
        )
    remaining = torch.isin(y_forget, y_retain)
    if bool(remaining.any()):
        held = y_forget[remaining].unique().tolist()
        raise BadRequestError(
            f"class_distillation forgets whole classes, but {int(remaining.sum())} forget "
            f"examples are of classes {held[:5]} that the retained data still hold; to forget "
            "individual examples use method 'salun', 'pbu' or 'instance'"
        )
    start = time.perf_counter()
    classes = y_forget.unique()
    forget_targets = forgotten_class_targets(net, x_forget, classes).exp()
    new = copy.deepcopy(net)
    optim = torch.optim.Adam(new.parameters(), lr=lr)
    g = _rng.generator(seed)
    size = min(batch_size, len(x_forget))
    pool = _rng.permutation(len(x_retain), g)[: replay * max(len(x_forget), 4 * batch_size)]
    x_pool = x_retain[pool]
    pool_targets = forgotten_class_targets(net, x_pool, classes[:0]).exp()  # p* itself
    total, forgot_at, step, relapses = max_steps, None, 0, 0
    while True:
        if step >= total:
            if (
                forgot_at is None
                or step >= max_steps
                or _whole_set_forgotten(new, x_forget, classes)
            ):
                break
            # a forget image came back into C_f during the repair: forget again at the full
            # rate, then repair again, within max_steps
            forgot_at, total, relapses = None, max_steps, relapses + 1
            for group in optim.param_groups:
                group["lr"] = lr
        batch = torch.randint(len(x_forget), (size,), generator=g)
        kept = torch.randint(len(x_pool), (replay * size,), generator=g)
        student = new(torch.cat([x_forget[batch], x_pool[kept]])).log_softmax(-1)
        # a clean minibatch, then the whole forget set
        if forgot_at is None and _forgotten(student[:size], classes):
            if _whole_set_forgotten(new, x_forget, classes):
                forgot_at = step
                total = int(min(max(repair * max(step, 1), min_steps), max_steps))
                if step >= total:
                    break
        if forgot_at is not None:  # linear decay to 0 over the repair
            for group in optim.param_groups:
                group["lr"] = lr * (total - step) / max(total - forgot_at, 1)
        # sum of KL(target || student) per example; a target class of probability 0 adds 0
        targets = torch.cat([forget_targets[batch], pool_targets[kept]])
        loss = nn.functional.kl_div(student, targets, reduction="sum") / len(student)
        check_finite(loss, "class distillation", step)
        optim.zero_grad()
        loss.backward()
        optim.step()
        step += 1
    new.eval()
    with torch.no_grad():
        predicted = new(x_forget).argmax(-1)
    still = int(torch.isin(predicted, classes).sum())  # several classes: not the accuracy
    info = {
        "steps": step,
        "forgot_at": forgot_at,
        "relapses": relapses,
        "reached_target": still == 0,
        "forget_accuracy": float((predicted == y_forget).double().mean()),
        "pool": len(x_pool),
        "seconds": time.perf_counter() - start,
    }
    target = (
        f"no forget example predicted in the forgotten classes {classes.tolist()}; "
        f"{still} of {len(x_forget)} are"
    )
    remedy = "a larger max_steps or lr"
    return new, check_reached(info, on_unreliable, "class distillation", target, remedy)


def _forgotten(logits: torch.Tensor, classes: torch.Tensor) -> bool:
    """Whether no row of ``logits`` predicts one of ``classes``."""
    return not bool(torch.isin(logits.argmax(-1), classes).any())


def _whole_set_forgotten(net: nn.Module, x, classes: torch.Tensor) -> bool:
    """Whether ``net`` (in eval mode) predicts no example of ``x`` in one of ``classes``."""
    with evaluating(net), torch.no_grad():
        return _forgotten(net(x), classes)
