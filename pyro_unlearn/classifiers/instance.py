"""Instance-wise unlearning: adversarial examples (targeted PGD) and weight importance (MAS)
keep the decision boundary while the forget examples move to other labels."""

from __future__ import annotations

import copy
import itertools
import time

import torch
from torch import nn

from .. import _rng
from ..options import Variant, choose
from ._guards import accuracy_target, check_finite, check_reached, evaluating, guarded
from .fisher import output_sensitivity
from .training import _accuracy


def targeted_pgd(
    net: nn.Module,
    x,
    target,
    *,
    eps: float = 4.0,
    step: float = 0.1,
    iterations: int = 100,
    bounds: tuple[float, float] | None = None,
    random_start: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Targeted :math:`L_2` PGD: :math:`\delta \leftarrow \Pi_{\|\delta\|\le\epsilon}(\delta - s\,\nabla_\delta \mathrm{CE}/\|\nabla_\delta \mathrm{CE}\|)`.

    Returns adversarial inputs ``x + delta`` pushed towards the ``target`` labels. With
    ``bounds`` the inputs stay in that box (``x + delta`` clamped after every step, as
    advertorch's ``L2PGDAttack`` does); with ``random_start`` (a generator) ``delta`` starts at
    a uniform point of the box minus ``x``, projected onto the ball, instead of 0. The
    network is attacked in eval mode (its modes are restored).
    """

    def project(delta):
        if bounds is not None:
            delta = (x + delta).clamp(*bounds) - x
        norm = delta.flatten(1).norm(dim=1).clamp(min=1e-12)
        return delta * (eps / norm).clamp(max=1.0).reshape((-1,) + (1,) * (x.dim() - 1))

    delta = torch.zeros_like(x)
    if random_start is not None:
        low, high = bounds if bounds is not None else (0.0, 1.0)
        delta = project(low + (high - low) * _rng.uniform(x.shape, random_start, like=x) - x)
    delta.requires_grad_(True)
    with evaluating(net):
        for _ in range(iterations):
            loss = nn.functional.cross_entropy(net(x + delta), target)
            (g,) = torch.autograd.grad(loss, delta)
            with torch.no_grad():
                shape = (-1,) + (1,) * (x.dim() - 1)
                norm = g.flatten(1).norm(dim=1).clamp(min=1e-12).reshape(shape)
                delta.copy_(project(delta - step * g / norm))
    adversarial = x + delta.detach()
    return adversarial.clamp(*bounds) if bounds is not None else adversarial


def mas_importance(net: nn.Module, x) -> dict[str, torch.Tensor]:
    r"""MAS importance :math:`\Omega_k = \frac1n\sum_i |\partial_{\theta_k} \|f(x_i)\|_2^2|` (:func:`output_sensitivity`), min-max normalised per tensor."""
    return _min_max(output_sensitivity(net, x))


def batch_output_importance(net: nn.Module, x, *, batch_size: int = 32) -> dict[str, torch.Tensor]:
    r"""Instance-wise unlearning's importance as its authors' code computes it (MAS, Eq. 2):

    .. math:: \Omega_k = \frac{1}{(\lfloor n/b\rfloor + 1)\, b} \sum_{\text{batches } B} |B|\,
        \Big|\partial_{\theta_k} \frac{1}{|B|}\sum_{i\in B} \|f(x_i)\|_2\Big|

    over consecutive minibatches of ``batch_size`` (the absolute value of each *batch's*
    gradient of the mean output norm, not squared; :func:`mas_importance` averages per-example
    gradients of the squared norm). Not normalised; the network's mode is used as it is (the
    authors call it in training mode).
    """
    params = {k: p for k, p in net.named_parameters() if p.requires_grad}  # frozen: 0
    importance = {k: torch.zeros_like(p) for k, p in net.named_parameters()}
    for batch in torch.arange(len(x)).split(batch_size):
        loss = net(x[batch]).norm(dim=1).mean()
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        for k, g in zip(params, grads, strict=True):
            if g is not None:
                importance[k] += g.abs() * len(batch)
    total = (len(x) // batch_size + 1) * batch_size
    return {k: v / total for k, v in importance.items()}


def _min_max(importance: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    normalised = {}
    for k, v in importance.items():
        span = v.max() - v.min()
        normalised[k] = (v - v.min()) / span if span > 0 else torch.zeros_like(v)
    return normalised


def random_other_labels(y, classes: int, generator: torch.Generator) -> torch.Tensor:
    """A label drawn uniformly from the classes other than each example's own (the library's
    adversarial targets here, SalUn's random labels)."""
    return (y + _rng.integers(1, classes, len(y), generator).to(y.device)) % classes


@guarded("x_forget", "y_forget")
def runner_up_labels(net: nn.Module, x_forget, y_forget) -> torch.Tensor:
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
    with evaluating(net), torch.no_grad():
        logits = net(x_forget).clone()
    logits.scatter_(-1, y_forget.unsqueeze(-1), -torch.inf)
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


#: the two variants' settings where they differ (``None`` arguments take these)
SETTINGS = {
    Variant.LIBRARY: {"eps": 4.0, "lam": 1.0, "lr": 1e-3, "batch_size": 128, "max_steps": 200},
    Variant.AUTHORS: {"eps": 2.0, "lam": 10.0, "lr": 1e-2, "batch_size": 256, "max_steps": None},
}
AUTHORS_FORGET_BATCH = 32  #: the authors' minibatch of forget samples
AUTHORS_MAX_EPOCHS = 1000  #: the authors' cap: passes over the adversarial examples


@guarded("x_forget", "y_forget")
def instance_unlearn(
    net: nn.Module,
    x_forget,
    y_forget,
    *,
    num_adversarial: int = 20,
    eps: float | None = None,
    pgd_step: float = 0.1,
    pgd_iterations: int = 100,
    lam: float | None = None,
    lr: float | None = None,
    batch_size: int | None = None,
    max_steps: int | None = None,
    new_labels=None,
    target_forget_accuracy: float = 0.0,
    variant: str = "library",
    seed: int = 0,
    on_unreliable: str = "raise",
):
    r"""Instance-wise unlearning (Cha et al. 2024) from the forget samples only.

    Targeted-PGD adversarial examples of each forget sample (``num_adversarial`` random
    target labels other than its own) keep the decision boundaries of the other classes;
    the MAS-weighted anchor keeps the weights that matter for the forget samples'
    features. SGD (momentum 0.9, weight decay 1e-4) on :func:`instance_loss`, one step per
    minibatch of adversarial examples paired with the next minibatch of forget samples,
    until the forget accuracy reaches ``target_forget_accuracy`` (or ``max_steps``): 0 for a
    whole class (a network that never saw it never predicts it); for random examples, the
    accuracy the network has on held-out data, as for :func:`pbu`.

    ``variant="library"`` (the default): :func:`mas_importance`; PGD from 0 with
    :math:`\epsilon = 4`, unbounded; target labels uniform over the other classes;
    :math:`\lambda = 1`, lr 1e-3, shuffled minibatches of 128 adversarial examples and 128
    forget samples, the network's own mode, at most 200 steps. ``variant="authors"``: the
    authors' code (``csm9493/L2UL``): :func:`batch_output_importance` in training mode;
    PGD with a random start, :math:`\epsilon = 2`, inputs kept in [0, 1]; target labels
    uniform over all classes with draws of the own label moved to class ``C // 2`` (their
    code's rule, which keeps the own label for images of that class); adversarial examples
    made per forget minibatch of 32; :math:`\lambda = 10`, lr 1e-2, adversarial minibatches
    of 256 in order with forget minibatches of 32 in order, training mode, at most 1000
    passes. Arguments left at ``None`` take the variant's value (:data:`SETTINGS`).

    A run that uses its whole budget short of the target follows ``on_unreliable``
    (``"raise"``: a :class:`~pyro_unlearn.TargetNotReachedError`; ``"warn"``, ``"ignore"``:
    the network, its diagnostics flagged ``reliable=False``).
    """
    chosen = choose(Variant, variant, "variant")
    authors = chosen is Variant.AUTHORS
    given = {"eps": eps, "lam": lam, "lr": lr, "batch_size": batch_size, "max_steps": max_steps}
    settings = {k: SETTINGS[chosen][k] if v is None else v for k, v in given.items()}
    g = _rng.generator(seed)
    with evaluating(net), torch.no_grad():
        classes = net(x_forget[:1]).shape[-1]
    if authors:
        x_adv, y_adv, importance = _authors_examples(
            net,
            x_forget,
            y_forget,
            classes,
            num_adversarial,
            settings["eps"],
            pgd_step,
            pgd_iterations,
            g,
        )
    else:
        x_rep = x_forget.repeat_interleave(num_adversarial, 0)
        y_rep = y_forget.repeat_interleave(num_adversarial, 0)
        y_adv = random_other_labels(y_rep, classes, g)
        x_adv = targeted_pgd(  # both in eval mode
            net, x_rep, y_adv, eps=settings["eps"], step=pgd_step, iterations=pgd_iterations
        )
        importance = mas_importance(net, x_forget)
    reference = {k: v.detach().clone() for k, v in net.named_parameters()}
    new = copy.deepcopy(net)
    if authors:
        new.train()
    optim = torch.optim.SGD(new.parameters(), lr=settings["lr"], momentum=0.9, weight_decay=1e-4)
    forget_size = AUTHORS_FORGET_BATCH if authors else settings["batch_size"]
    forget_batches = itertools.cycle(torch.arange(len(x_forget)).split(forget_size))
    limit = settings["max_steps"] if settings["max_steps"] is not None else float("inf")
    passes = 0
    start, steps = time.perf_counter(), 0
    forgotten = _accuracy(new, x_forget, y_forget) <= target_forget_accuracy
    while not forgotten and steps < limit and passes < (AUTHORS_MAX_EPOCHS if authors else limit):
        order = torch.arange(len(x_adv)) if authors else _rng.permutation(len(x_adv), g)
        for adversarial in order.split(settings["batch_size"]):
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
                settings["lam"],
                None if new_labels is None else new_labels[batch],
            )
            check_finite(loss, "instance-wise unlearning", steps)
            loss.backward()
            optim.step()
            steps += 1
            forgotten = _accuracy(new, x_forget, y_forget) <= target_forget_accuracy
            if forgotten or steps >= limit:
                break
        passes += 1
    if authors:  # back to the caller's modes, module by module
        for theirs, ours in zip(net.modules(), new.modules(), strict=True):
            ours.training = theirs.training
    info = {
        "steps": steps,
        "reached_target": forgotten,
        "forget_accuracy": _accuracy(new, x_forget, y_forget),
        "adversarial_success": _accuracy(net, x_adv, y_adv),
        "seconds": time.perf_counter() - start,
    }
    target = accuracy_target(target_forget_accuracy)
    return new, check_reached(info, on_unreliable, "instance-wise unlearning", target)


def _authors_examples(net, x, y, classes, num_adversarial, eps, step, iterations, g):
    """The authors' adversarial examples and importance (see :func:`instance_unlearn`)."""
    xs, ys = [], []
    with evaluating(net):
        for batch in torch.arange(len(x)).split(AUTHORS_FORGET_BATCH):
            xb, yb = x[batch], y[batch]
            for _ in range(num_adversarial):
                labels = (_rng.uniform((len(yb),), g, like=xb) * classes).long().to(yb.device)
                labels = torch.where(labels == yb, classes // 2, labels)
                xs.append(
                    targeted_pgd(
                        net,
                        xb,
                        labels,
                        eps=eps,
                        step=step,
                        iterations=iterations,
                        bounds=(0.0, 1.0),
                        random_start=g,
                    )
                )
                ys.append(labels)
    copy_for_importance = copy.deepcopy(net).train()
    importance = _min_max(batch_output_importance(copy_for_importance, x))
    return torch.cat(xs), torch.cat(ys), importance
