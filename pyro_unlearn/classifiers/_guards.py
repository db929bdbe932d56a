"""What every classifier method shares: checks of the forget examples, the work on a copy
in eval mode where statistics are read, local seeds, the overflow guard, and the library's
policy for a target not reached."""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import sys

import torch
from torch import nn

from .. import _checks
from ..errors import BadRequestError, TargetNotReachedError, UnlearningDivergedError, unreliable
from ..options import OnUnreliable, choose


def checked_examples(net: nn.Module, x, y=None, *, name: str = "x_forget"):
    """Examples the network can read: non-empty, finite inputs of a dtype and shape its
    forward pass takes, one integer label per input, each a class of the network (labels out
    of range would otherwise be ignored or read as "forgotten" at once). Returns the labels
    as int64, the dtype torch's losses and indexing need (int32 or uint8 labels are copied;
    ``None`` without labels)."""
    if not isinstance(x, torch.Tensor) or x.dim() < 1 or len(x) == 0:
        raise BadRequestError(f"{name} must be a non-empty tensor of inputs, got {_describe(x)}")
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise BadRequestError(f"{name} holds non-finite values (NaN or inf)")
    try:
        with evaluating(net), torch.no_grad():
            classes = net(x[:1]).shape[-1]
    except (RuntimeError, TypeError, ValueError) as error:
        dtypes = sorted({str(p.dtype) for p in net.parameters()})
        raise BadRequestError(
            f"the network cannot read {name} ({_describe(x)}; its parameters are "
            f"{', '.join(dtypes)}): {error}"
        ) from None
    if y is None:
        return None
    label_name = "y" + name[1:]  # x_forget's labels are y_forget
    if not isinstance(y, torch.Tensor) or y.is_floating_point() or y.dtype == torch.bool:
        raise BadRequestError(
            f"{label_name} must be a tensor of integer class labels, got {_describe(y)}"
        )
    if y.shape != x.shape[:1]:
        raise BadRequestError(
            f"{label_name} has shape {tuple(y.shape)}; expected one label per input, ({len(x)},)"
        )
    if int(y.min()) < 0 or int(y.max()) >= classes:
        bad = y[(y < 0) | (y >= classes)].unique().tolist()
        raise BadRequestError(
            f"{label_name} holds labels {bad[:5]} outside the network's {classes} classes "
            f"[0, {classes})"
        )
    return y.long()


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


#: the classifier methods' hyperparameters and options, checked by name before any work
#: (``None``: the method's own default, e.g. instance-wise unlearning's variant settings)
HYPERPARAMETER_CHECKS = {
    **dict.fromkeys(
        (
            "epochs",
            "max_steps",
            "min_steps",
            "batch_size",
            "forget_batch_size",
            "num_adversarial",
            "num_perturbations",
            "pgd_iterations",
            "replay",
        ),
        _checks.count,
    ),
    **dict.fromkeys(("lr", "temperature", "sigma", "eps", "pgd_step"), _checks.positive),
    **dict.fromkeys(("alpha", "beta", "gamma", "lam"), _checks.non_negative),
    "target_forget_accuracy": _checks.fraction,
    "on_unreliable": lambda name, value: choose(OnUnreliable, value, name),
}


def guarded(*example_args: str):
    """Check the examples, then run the method on a copy of the network with its randomness
    (dropout masks) seeded by the method's ``seed``: the caller's network (parameters,
    buffers such as batch-norm statistics, train/eval mode) and RNG state are untouched,
    the same seed gives the same network, and the network returned is in the caller's
    train/eval mode.

    ``example_args`` name the method's data arguments (``x_forget``, ``y_forget``,
    ``x_retain``, ...), passed by position or by keyword; each ``x_*`` is checked with its
    ``y_*`` labels when the method takes them, and every hyperparameter named in
    :data:`HYPERPARAMETER_CHECKS` by its rule (a count, a positive number, ...).
    """

    def decorate(fn):
        signature = inspect.signature(fn)
        missing = set(example_args) - set(signature.parameters)
        assert not missing, f"{fn.__name__} has no arguments {sorted(missing)}"

        @functools.wraps(fn)
        def method(net, *args, **options):
            from pyro.infer.autoguide import AutoGuide

            if not isinstance(net, nn.Module) or isinstance(net, AutoGuide):
                raise BadRequestError(
                    f"{fn.__name__} takes a trained torch network, got {_describe(net)}"
                )
            if not any(p.requires_grad for p in net.parameters()):
                raise BadRequestError(
                    f"{fn.__name__}: the network has no trainable parameters (every "
                    "requires_grad is False); unfreeze the layers the method may change"
                )
            try:
                bound = signature.bind(net, *args, **options)
            except TypeError as error:
                raise BadRequestError(f"{fn.__name__}: {error}") from None
            seed = _checks.seed(bound.arguments.get("seed", 0))
            bound.apply_defaults()
            for name, value in bound.arguments.items():
                if name in HYPERPARAMETER_CHECKS and value is not None:
                    HYPERPARAMETER_CHECKS[name](name, value)
            work = copy.deepcopy(net)  # even a forward pass in train mode moves BN buffers
            with torch.random.fork_rng():
                for name in example_args:
                    labels = "y_" + name[2:]
                    if name.startswith("x_") and labels in example_args:
                        bound.arguments[labels] = checked_examples(
                            work, bound.arguments[name], bound.arguments[labels], name=name
                        )
                    elif name.startswith("x_"):
                        checked_examples(work, bound.arguments[name], name=name)
                bound.arguments[next(iter(signature.parameters))] = work
                torch.manual_seed(seed)
                result = fn(*bound.args, **bound.kwargs)
            if isinstance(result, tuple) and isinstance(result[0], nn.Module):
                # the new network in the caller's train/eval mode, whatever the method ran in
                for theirs, ours in zip(net.modules(), result[0].modules(), strict=True):
                    ours.training = theirs.training
            return result

        return method

    return decorate


def check_finite(loss: torch.Tensor, method: str, steps: int) -> None:
    if not torch.isfinite(loss):
        raise UnlearningDivergedError(
            f"{method} diverged: the loss is {loss.item()} after {steps} steps (the network's "
            "outputs overflowed). The forget accuracy target may be out of reach for this "
            "request: stop earlier (max_steps, target_forget_accuracy) or lower lr"
        )


_TOP = __name__.split(".")[0]  # the package: frames of its modules are not the caller's


def check_reached(
    info: dict,
    on_unreliable: str,
    method: str,
    target: str,
    remedy: str = "a larger max_steps or lr (for a whole class, method 'class_distillation')",
) -> dict:
    """Apply the library's policy for unreliable results (:mod:`pyro_unlearn.errors`) to a
    run that used its whole step budget short of its own ``target``: raise a
    :class:`~pyro_unlearn.TargetNotReachedError`, or flag ``info`` (``reliable=False``,
    ``unreliable=[why]``) and warn or stay silent. ``info`` holds ``reached_target``,
    ``steps`` and ``forget_accuracy``; ``remedy`` is what the caller can do instead."""
    if not info["reached_target"]:
        message = (
            f"{method} stopped after {info['steps']} steps short of its target ({target}): "
            f"forget accuracy {info['forget_accuracy']:.3f}. Try {remedy}, or retrain; "
            "on_unreliable='warn' returns this network flagged"
        )
        # the warning points at the caller's line: the first frame outside the package
        outside, frame = 1, sys._getframe(1)
        while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] == _TOP:
            outside, frame = outside + 1, frame.f_back
        unreliable(TargetNotReachedError(message), on_unreliable, info, stacklevel=outside + 1)
    return info


def accuracy_target(target_forget_accuracy: float) -> str:
    """The target of the methods that stop at a forget accuracy, as :func:`check_reached`
    names it."""
    return f"forget accuracy <= target_forget_accuracy={target_forget_accuracy}"
