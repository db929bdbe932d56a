"""Argument checks shared by the entry points (a base module): a bad value is refused before
any work, with a message naming the argument and the value."""

from __future__ import annotations

import difflib
import inspect
import math
import weakref
from collections import OrderedDict

import torch

from .errors import BadRequestError, UnknownOptionError

MAX_SEED = 2**63 - 1
# tensors already found finite, by identity and in-place version: a later request on the same
# data skips the O(|D|) scan (a tensor modified in place is scanned again)
_FINITE: OrderedDict[int, tuple[weakref.ref, int]] = OrderedDict()
_MAX_FINITE = 256


def count(name: str, value, minimum: int = 1) -> int:
    """``value`` as an int of at least ``minimum`` (``True`` and ``2.0`` are not counts)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise BadRequestError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def positive(name: str, value) -> float:
    """A finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise BadRequestError(f"{name} must be a positive number, got {value!r}")
    if not math.isfinite(value):
        raise BadRequestError(f"{name} must be finite, got {value!r}")
    return float(value)


def non_negative(name: str, value) -> float:
    """A finite number >= 0 (a penalty's weight)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise BadRequestError(f"{name} must be a number >= 0, got {value!r}")
    if not math.isfinite(value):
        raise BadRequestError(f"{name} must be finite, got {value!r}")
    return float(value)


def fraction(name: str, value) -> float:
    """A number in [0, 1] (an accuracy, a share)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise BadRequestError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def seed(value) -> int:
    """A seed torch's generators take: an int in [0, 2**63)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise BadRequestError(f"seed must be an integer in [0, 2**63), got {value!r}")
    return value


def finite_data(args: tuple, kwargs: dict | None = None) -> None:
    """Every floating-point tensor among the model's arguments holds only finite values
    (a NaN or inf in the data would silently corrupt a posterior, or fail deep in a solver)."""
    named = [(f"argument {i}", a) for i, a in enumerate(args)]
    named += [(f"keyword argument {k!r}", v) for k, v in (kwargs or {}).items()]
    for name, value in named:
        for path, tensor in _tensors(value, name):
            if not tensor.is_floating_point() or _known_finite(tensor):
                continue
            if not bool(torch.isfinite(tensor).all()):
                bad = int((~torch.isfinite(tensor)).sum())
                raise BadRequestError(
                    f"{path} (shape {tuple(tensor.shape)}) holds {bad} non-finite value(s) "
                    "(NaN or inf): remove or impute them before unlearning"
                )
            _FINITE[id(tensor)] = (weakref.ref(tensor), tensor._version)
            _FINITE.move_to_end(id(tensor))
            while len(_FINITE) > _MAX_FINITE:
                _FINITE.popitem(last=False)


def _known_finite(tensor: torch.Tensor) -> bool:
    entry = _FINITE.get(id(tensor))
    return entry is not None and entry[0]() is tensor and entry[1] == tensor._version


def _tensors(value, path: str):
    if isinstance(value, torch.Tensor):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _tensors(item, f"{path}[{key!r}]")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _tensors(item, f"{path}[{i}]")


def did_you_mean(name: str, options) -> str:
    """``"did you mean 'x'? "`` for the option closest to a misspelt ``name``, or ``""``."""
    close = difflib.get_close_matches(name, list(options), n=1)
    return f"did you mean {close[0]!r}? " if close else ""


def model_keywords(fitter, model, kwargs: dict) -> None:
    """Refuse a keyword that is neither an option of ``fitter`` nor an argument of ``model``
    (the fitters pass their other keywords to the model): a misspelt option
    (``num_step=``) would otherwise reach the model as data and fail inside it."""
    call = model.forward if isinstance(model, torch.nn.Module) else model
    try:
        parameters = inspect.signature(call).parameters.values()
    except (TypeError, ValueError):  # no signature to read: the model will say
        return
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return
    takes = {p.name for p in parameters if p.kind is not p.VAR_POSITIONAL}
    unknown = sorted(set(kwargs) - takes)
    if unknown:
        options = [
            n
            for n, p in inspect.signature(fitter).parameters.items()
            if p.kind is p.KEYWORD_ONLY or (p.default is not p.empty)
        ]
        raise UnknownOptionError(
            f"{fitter.__name__} has no option {unknown[0]!r} and the model takes no argument "
            f"of that name: {did_you_mean(unknown[0], options)}{fitter.__name__}'s options: {', '.join(options)}; the "
            f"model's arguments: {', '.join(sorted(takes)) or 'none'}"
        )
