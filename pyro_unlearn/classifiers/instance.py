"""Instance-wise unlearning: adversarial examples (targeted PGD) and weight importance (MAS)
keep the decision boundary while the forget examples move to other labels."""

from __future__ import annotations

import copy
import itertools
import time

import torch
from torch import nn

from .. import _rng
from ._guards import check_finite, evaluating, guarded
from .fisher import output_sensitivity
from .training import accuracy


def targeted_pgd(
    net: nn.Module, x, target, *, eps: float = 4.0, step: float = 0.1, iterations: int = 100
) -> torch.Tensor:
    r"""Targeted :math:`L_2` PGD: :math:`\delta \leftarrow \Pi_{\|\delta\|\le\epsilon}(\delta - s\,\nabla_\delta \mathrm{CE}/\|\nabla_\delta \mathrm{CE}\|)`.

    Returns adversarial inputs ``x + delta`` pushed towards the ``target`` labels.
    """
    delta = torch.zeros_like(x, requires_grad=True)
    for _ in range(iterations):
        loss = nn.functional.cross_entropy(net(x + delta), target)
        (g,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            norm = g.flatten(1).norm(dim=1).clamp(min=1e-12).reshape((-1,) + (1,) * (x.dim() - 1))
            delta -= step * g / norm
            scale = (eps / delta.flatten(1).norm(dim=1).clamp(min=1e-12)).clamp(max=1.0)
            delta *= scale.reshape((-1,) + (1,) * (x.dim() - 1))
    return (x + delta).detach()


def mas_importance(net: nn.Module, x) -> dict[str, torch.Tensor]:
    r"""MAS importance :math:`\Omega_k = \frac1n\sum_i |\partial_{\theta_k} \|f(x_i)\|_2^2|` (:func:`output_sensitivity`), min-max normalised per tensor."""
    normalised = {}
    for k, v in output_sensitivity(net, x).items():
        span = v.max() - v.min()
        normalised[k] = (v - v.min()) / span if span > 0 else torch.zeros_like(v)
    return normalised


@guarded("x_forget", "y_forget")
def runner_up_labels(net: nn.Module, x, y) -> torch.Tensor:
    r"""The class each input is most likely to be, other than its own: :math:`\arg\max_{c\ne y_i} f_\theta(x_i)_c`.

    As ``new_labels`` of :func:`instance_unlearn` when a whole class is forgotten: a network
    that never saw the class puts its images in other classes, often the one the trained
    network ranks second (on digits, class 3: the retrained MLP's own prediction for 56-83%
    of the forgotten images).

    >>> net = torch.nn.Linear(2, 3, bias=False)
    >>> with torch.no_grad():
    ...     _ = net.weight.copy_(torch.tensor([[3.0, 0.0], [2.0, 0.0], [0.0, 1.0]]))
    >>> runner_up_labels(net, torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 2]))
    tensor([1, 0])
    """
    with torch.no_grad():
        logits = net(x).clone()
    logits.scatter_(-1, y.unsqueeze(-1), -torch.inf)
    return logits.argmax(-1)


def instance_loss(
    net, reference, importance, x, y, x_adv, y_adv, lam: float = 1.0, new_labels=None
) -> torch.Tensor:
    r"""One minibatch of instance-wise unlearning: every example counts once.

    .. math:: \frac{\sum_{i\in B_f} -\mathrm{CE}(f(x_i), y_i) + \sum_{j\in B_{adv}} \mathrm{CE}(f(x_j), y_j)}{|B_f| + |B_{adv}|}
        + \frac\lambda2 \sum_k (1-\tilde\Omega_k)(\theta_k-\theta^*_k)^2

    (:math:`+\mathrm{CE}` to ``new_labels`` instead of :math:`-\mathrm{CE}` when given). Each
    forget sample weighs as much as one adversarial example, as in the authors' code: with
    twenty adversarial examples per sample the ascent cannot outrun the examples that hold
    the other classes' boundaries.
    """
    ce = nn.functional.cross_entropy
    forget_sum = (
        ce(net(x), new_labels, reduction="sum")
        if new_labels is not None
        else -ce(net(x), y, reduction="sum")
    )
    adversarial_sum = ce(net(x_adv), y_adv, reduction="sum")
    anchor = sum(
        ((1 - importance[k]) * (p - reference[k]).pow(2)).sum() for k, p in net.named_parameters()
    )
    return (forget_sum + adversarial_sum) / (len(x) + len(x_adv)) + lam * anchor / 2


@guarded("x_forget", "y_forget")
def instance_unlearn(
    net: nn.Module,
    x_forget,
    y_forget,
    *,
    num_adversarial: int = 20,
    eps: float = 4.0,
    pgd_step: float = 0.1,
    pgd_iterations: int = 100,
    lam: float = 1.0,
    lr: float = 1e-3,
    batch_size: int = 128,
    max_steps: int = 200,
    new_labels=None,
    seed: int = 0,
):
    r"""Instance-wise unlearning (Cha et al. 2024) from the forget samples only.

    Targeted-PGD adversarial examples of each forget sample (``num_adversarial`` random
    target labels other than its own) keep the decision boundaries of the other classes;
    the MAS-weighted anchor keeps the weights that matter for the forget samples'
    features. SGD (momentum 0.9, weight decay 1e-4) on :func:`instance_loss`, one step per
    minibatch of ``batch_size`` adversarial examples paired with the next minibatch of
    forget samples, until the forget accuracy reaches 0 (or ``max_steps``).
    """
    g = _rng.generator(seed)
    with evaluating(net), torch.no_grad():
        classes = net(x_forget[:1]).shape[-1]
    x_rep = x_forget.repeat_interleave(num_adversarial, 0)
    y_rep = y_forget.repeat_interleave(num_adversarial, 0)
    offsets = _rng.integers(1, classes, len(y_rep), g).to(y_rep.device)
    y_adv = (y_rep + offsets) % classes
    with evaluating(net):
        x_adv = targeted_pgd(net, x_rep, y_adv, eps=eps, step=pgd_step, iterations=pgd_iterations)
        importance = mas_importance(net, x_forget)
    reference = {k: v.detach().clone() for k, v in net.named_parameters()}
    new = copy.deepcopy(net)
    optim = torch.optim.SGD(new.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    forget_batches = itertools.cycle(torch.arange(len(x_forget)).split(batch_size))
    start, steps = time.perf_counter(), 0
    forgotten = accuracy(new, x_forget, y_forget) == 0.0
    while not forgotten and steps < max_steps:
        for adversarial in _rng.permutation(len(x_adv), g).split(batch_size):
            batch = next(forget_batches)
            optim.zero_grad()
            loss = instance_loss(
                new,
                reference,
                importance,
                x_forget[batch],
                y_forget[batch],
                x_adv[adversarial],
                y_adv[adversarial],
                lam,
                None if new_labels is None else new_labels[batch],
            )
            check_finite(loss, "instance-wise unlearning", steps)
            loss.backward()
            optim.step()
            steps += 1
            forgotten = accuracy(new, x_forget, y_forget) == 0.0
            if forgotten or steps >= max_steps:
                break
    info = {
        "steps": steps,
        "reached_target": forgotten,
        "adversarial_success": accuracy(net, x_adv, y_adv),
        "seconds": time.perf_counter() - start,
    }
    return new, info
