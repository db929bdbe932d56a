r"""Unlearning for neural classifiers: PBU, JiT, and the baselines.

All functions return a **new** network (the caller's is never modified) and, where
they iterate, a dict of diagnostics. Losses, each using only the forget set
:math:`D_f` unless stated:

* PBU: :math:`\alpha\,(-\mathrm{CE}) + \beta\sum_k F_{kk}(\theta_k-\theta^*_k)^2 + \gamma\sum_k(\theta_k-\theta^*_k)^2`,
  the EUBO of a Delta guide with forget weight :math:`-\alpha/n` and Gaussian anchor
  :math:`\mathcal N(\theta^*, (2\beta F + 2\gamma I)^{-1})` (see :func:`pbu_anchor`).
* JiT: :math:`\frac1N\sum_n \|f(x)-f(x+\varepsilon_n)\|_2/\|\varepsilon_n\|_2` per forget point, one SGD pass.
* NegGrad: gradient ascent on the cross-entropy of :math:`D_f`.
* SSD: dampen weights whose importance on :math:`D_f` exceeds ``alpha`` times that on all data
  (squared minibatch gradients, :func:`minibatch_importance`).
* Fine-tuning and retraining use the retained data :math:`D_r` (baselines).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import itertools
import time

import pyro.distributions as dist
import torch
from torch import nn

from .. import _checks, _rng
from ..errors import BadRequestError, UnlearningDivergedError
from .fisher import diagonal_fisher, output_sensitivity


def _check_examples(net: nn.Module, x, y=None, *, name: str = "x_forget") -> None:
    """A forget set the method can use: non-empty, finite inputs, one integer label per
    input, each a class of the network (labels out of range would otherwise be ignored or
    read as "forgotten" at once)."""
    if not isinstance(x, torch.Tensor) or x.dim() < 1 or len(x) == 0:
        raise BadRequestError(f"{name} must be a non-empty tensor of inputs, got {_describe(x)}")
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise BadRequestError(f"{name} holds non-finite values (NaN or inf)")
    if y is None:
        return
    label_name = name.replace("x_", "y_")
    if not isinstance(y, torch.Tensor) or y.is_floating_point() or y.dtype == torch.bool:
        raise BadRequestError(
            f"{label_name} must be a tensor of integer class labels, got {_describe(y)}"
        )
    if y.shape != x.shape[:1]:
        raise BadRequestError(
            f"{label_name} has shape {tuple(y.shape)}; expected one label per input, ({len(x)},)"
        )
    with torch.no_grad():
        classes = net(x[:1]).shape[-1]
    if int(y.min()) < 0 or int(y.max()) >= classes:
        bad = y[(y < 0) | (y >= classes)].unique().tolist()
        raise BadRequestError(
            f"{label_name} holds labels {bad[:5]} outside the network's {classes} classes "
            f"[0, {classes})"
        )


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return type(value).__name__


@contextlib.contextmanager
def evaluating(net: nn.Module):
    """``net`` in eval mode for a statistic of it (importances, adversarial examples, class
    count): batch norm uses its running statistics and leaves them alone, dropout is off, any
    batch size works. The modules' modes are restored afterwards."""
    modes = [m.training for m in net.modules()]
    net.eval()
    try:
        yield net
    finally:
        for module, mode in zip(net.modules(), modes, strict=True):
            module.training = mode


def guarded(*example_args: str):
    """Check the examples, then run the method on a copy of the network with its randomness
    (dropout masks) seeded by the method's ``seed``: the caller's network (parameters,
    buffers such as batch-norm statistics, train/eval mode) and RNG state are untouched,
    and the same seed gives the same network."""

    def decorate(fn):
        @functools.wraps(fn)
        def method(net, *args, **options):
            from pyro.infer.autoguide import AutoGuide

            if not isinstance(net, nn.Module) or isinstance(net, AutoGuide):
                raise BadRequestError(
                    f"{fn.__name__} takes a trained torch network, got {_describe(net)}"
                )
            seed = _checks.seed(options.get("seed", 0))
            work = copy.deepcopy(net)  # even a forward pass in train mode moves BN buffers
            named = dict(zip(example_args, args, strict=False))
            with torch.random.fork_rng():
                work.eval()  # the checks' forward pass: any batch size, no dropout
                _check_examples(work, named.get("x_forget"), named.get("y_forget"))
                if "x_all" in named:
                    _check_examples(work, named["x_all"], named.get("y_all"), name="x_all")
                for theirs, ours in zip(net.modules(), work.modules(), strict=True):
                    ours.training = theirs.training
                torch.manual_seed(seed)
                return fn(work, *args, **options)

        return method

    return decorate


def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of correct predictions (``nan`` on empty data)."""
    if len(x) == 0:
        return float("nan")
    with torch.no_grad():
        return float((net(x).argmax(-1) == y).double().mean())


def train(
    net: nn.Module, x, y, *, epochs: int = 30, lr: float = 1e-3, batch_size: int = 64, seed: int = 0
) -> nn.Module:
    """Train ``net`` in place with Adam and cross-entropy; returns it (seeded locally: the
    caller's RNG state is untouched)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)  # dropout masks
        optim = torch.optim.Adam(net.parameters(), lr=lr)
        g = _rng.generator(seed)
        net.train()
        for _ in range(epochs):
            for batch in _rng.permutation(len(x), g).split(batch_size):
                optim.zero_grad()
                nn.functional.cross_entropy(net(x[batch]), y[batch]).backward()
                optim.step()
        net.eval()
    return net


def retrain(make_net, x_retain, y_retain, *, seed: int = 0, **train_options) -> nn.Module:
    """The gold standard: a fresh ``make_net()`` trained on the retained data only.

    ``seed`` fixes the initialisation as well as the training order, so the result does not
    depend on what ran before in the process.
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)  # the initialisation
        net = make_net()
    return train(net, x_retain, y_retain, seed=seed, **train_options)


def finetune(
    net: nn.Module, x_retain, y_retain, *, epochs: int = 2, lr: float = 1e-3, seed: int = 0
) -> nn.Module:
    """Baseline: a copy of ``net`` fine-tuned on the retained data (catastrophic forgetting)."""
    return train(copy.deepcopy(net), x_retain, y_retain, epochs=epochs, lr=lr, seed=seed)


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
):
    """Shared loop: Adam on ``loss_fn(net, xb, yb)``, stop once forget accuracy <= target."""
    net = copy.deepcopy(net)
    optim = torch.optim.Adam(net.parameters(), lr=lr)
    g = _rng.generator(seed)
    steps, start = 0, time.perf_counter()
    stopped = accuracy(net, x_forget, y_forget) <= target_forget_accuracy
    while not stopped and steps < max_steps:
        for batch in _rng.permutation(len(x_forget), g).split(batch_size):
            optim.zero_grad()
            loss = loss_fn(net, x_forget[batch], y_forget[batch])
            _check_finite(loss, "gradient ascent", steps)
            loss.backward()
            optim.step()
            steps += 1
            if accuracy(net, x_forget, y_forget) <= target_forget_accuracy:
                stopped = True
                break
            if steps >= max_steps:
                break
    return net, {"steps": steps, "reached_target": stopped, "seconds": time.perf_counter() - start}


def _check_finite(loss: torch.Tensor, method: str, steps: int) -> None:
    if not torch.isfinite(loss):
        raise UnlearningDivergedError(
            f"{method} diverged: the loss is {loss.item()} after {steps} steps (the network's "
            "outputs overflowed). The forget accuracy target may be out of reach for this "
            "request: stop earlier (max_steps, target_forget_accuracy) or lower lr"
        )


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
):
    r"""Partially-Blinded Unlearning (Panda et al. 2024) from the forget set only.

    Adam on :func:`pbu_loss`, stopping as soon as the forget accuracy reaches
    ``target_forget_accuracy`` (retain accuracy degrades if one keeps going). Defaults:
    the authors' :math:`\alpha:\beta` with :math:`\gamma = 40` instead of their 4000 (measured
    here on digits: with :math:`\gamma = 4000` the :math:`\ell_2` pull cancels the ascent).
    """
    with evaluating(net):
        fisher = diagonal_fisher(net, x_forget)
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
):
    """Baseline: gradient ascent on the forget-set cross-entropy (Adam), with the same stopping rule."""

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
    )


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


def minibatch_importance(net: nn.Module, x, y, *, batch_size: int = 64) -> dict[str, torch.Tensor]:
    r"""SSD's parameter importance: squared minibatch gradients of the cross-entropy, averaged.

    .. math:: []_k = \frac1B \sum_{b=1}^{B} \big(\partial_{\theta_k} \mathrm{CE}_{\text{mean}}(f_\theta(x_b), y_b)\big)^2

    over the ``B`` consecutive minibatches of ``(x, y)``. Unlike the expected Fisher, the
    gradients are averaged *before* squaring: they add up within a minibatch of one class
    and cancel within a minibatch of all classes at a trained optimum, which is what lets
    SSD's ratio test single out forget-specific weights (the authors' implementation).
    """
    importance = {k: torch.zeros_like(v) for k, v in net.named_parameters()}
    batches = torch.arange(len(x), device=x.device).split(batch_size)
    for batch in batches:
        grads = torch.autograd.grad(
            nn.functional.cross_entropy(net(x[batch]), y[batch]), list(net.parameters())
        )
        for (k, _), g in zip(net.named_parameters(), grads, strict=True):
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
    with evaluating(net):
        forget_importance = minibatch_importance(net, x_forget, y_forget, batch_size=batch_size)
        all_importance = minibatch_importance(
            net, x_all[order], y_all[order], batch_size=batch_size
        )
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


def _register() -> None:
    """``unlearn(ClassifierModel(net), net, x_forget, y_forget, method=...)`` for the point methods."""
    from ..api import register_method

    def wrap(name, fn, needs_labels=True):
        @register_method(name)
        def method(
            model,
            net,
            x_forget,
            y_forget=None,
            *,
            mask=None,
            plate=None,
            sites=None,
            model_kwargs=None,
            **options,
        ):
            if mask is not None or plate is not None or sites is not None or model_kwargs:
                raise ValueError(
                    f"method={name!r} takes the forget examples themselves, not a mask"
                )
            if not isinstance(net, nn.Module):
                raise TypeError(
                    f"method={name!r} unlearns a trained torch network: pass it as the posterior"
                )
            return (
                fn(net, x_forget, y_forget, **options)
                if needs_labels
                else fn(net, x_forget, **options)
            )

    wrap("pbu", pbu)
    wrap("neggrad", neggrad)
    wrap("jit", jit, needs_labels=False)
    wrap("ssd", ssd)
    wrap("instance", instance_unlearn)


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
            _check_finite(loss, "instance-wise unlearning", steps)
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


def continual(method, net: nn.Module, x, y, requests, ledger, x_test=None, y_test=None, **options):
    """Honour forget requests one after another, each from the previous step's network.

    ``requests`` is a sequence of id tensors into ``(x, y)``; the ledger refuses repeats.
    Returns the final network, the final ledger and one metrics dict per step (accuracy on
    everything forgotten so far, on the retained data and on the test set).
    """
    steps = []
    for ids in requests:
        ledger = ledger.after(ids)  # refuses repeated deletions before any work
        net, info = method(net, x[ids], y[ids], **options)
        forgotten = ledger.mask()
        steps.append(
            {
                "forgotten": len(ledger.forgotten),
                "forget_acc": accuracy(net, x[forgotten], y[forgotten]),
                "retain_acc": accuracy(net, x[~forgotten], y[~forgotten]),
                **({"test_acc": accuracy(net, x_test, y_test)} if x_test is not None else {}),
                **{k: v for k, v in info.items() if k in ("steps", "reached_target")},
            }
        )
    return net, ledger, steps


_register()
