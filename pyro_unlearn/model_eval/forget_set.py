"""The forget-set log-likelihood: :func:`forget_evaluator` and :class:`ForgetEvaluator`.

At the first draw a :class:`ForgetEvaluator` decides how to evaluate only the forget elements
(plate index, sliced data or mask, see the package docs); the decision is remembered per model
and data arguments (``_Decision``, ``_decision_key``, ``_remember``).
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from .._user_model import user_call
from ..handlers import forget
from ..masks import MaskLike, as_index_tensor
from .evaluator import ModelEvaluator
from .sites import _dtype


def forget_evaluator(
    model: Callable,
    args: tuple,
    kwargs: dict | None = None,
    *,
    mask: MaskLike | None = None,
    plate: str | int | None = None,
    sites: Iterable[str] | None = None,
    path: str | None = None,
) -> ModelEvaluator:
    r"""An evaluator whose :meth:`~ModelEvaluator.log_likelihood` is :math:`\log p(D_e\mid\theta)`.

    Without ``mask`` the arguments hold the forget data :math:`D_e` and every observed site (or
    those in ``sites``) is forgotten. With ``mask`` over plate ``plate`` the arguments hold all
    data and only the masked elements of the observed sites inside the plate count; where the
    model allows, only those elements are evaluated (see the module docs).
    :attr:`ModelEvaluator.strategy` says how (``"plate index"``, ``"sliced data"`` or
    ``"mask"``): decided once, at the first draw, by checking against the masked run.
    """
    return ForgetEvaluator(model, args, kwargs, mask=mask, plate=plate, sites=sites, path=path)


class ForgetEvaluator(ModelEvaluator):
    """The forget-set log-likelihood; picks how to reach the forget elements at the first draw."""

    def __init__(self, model, args, kwargs=None, *, mask=None, plate=None, sites=None, path=None):
        sites = [sites] if isinstance(sites, str) else (None if sites is None else list(sites))
        self._user_model = user_call(model)
        self._sites_option, self._mask, self._plate = sites, mask, plate
        masked = forget(self._user_model, weight=1.0, mask=mask, plate=plate, sites=sites)
        super().__init__(masked, args, kwargs, forget_sites=sites, path=path)
        self._decided = mask is None
        if mask is not None:
            self.strategy = "mask"

    def _evaluate(self, values, request):
        if not self._decided:
            self._decide({k: torch.as_tensor(v)[:1] for k, v in values.items()})
        return super()._evaluate(values, request)

    def pointwise_log_likelihood(self, values, *, observed=None) -> dict[str, torch.Tensor]:
        """The forget elements' log-likelihood only, whichever way they were reached."""
        parts = super().pointwise_log_likelihood(values, observed=observed)
        if self.strategy != "mask":
            return parts
        out = {}
        for name, lp in parts.items():
            info = self._sites[name]
            if isinstance(self._plate, int):
                dim = self._plate
            else:
                dim = info.plate_dims[info.plates.index(self._plate)]
            index = as_index_tensor(self._mask, lp.shape[dim]).to(lp.device)
            out[name] = lp.index_select(lp.dim() + dim, index)
        return out

    def _data_plate_size(self) -> int | None:
        if self._mask is None:
            return super()._data_plate_size()
        return getattr(self, "_full_size", None)

    def traces(self, values):
        if not self._decided:
            self._decide({k: torch.as_tensor(v).unsqueeze(0) for k, v in values.items()})
        return super().traces(values)

    def _decide(self, one: dict[str, torch.Tensor]) -> None:
        """Forget sites are the observed sites inside the plate; then the cheapest faithful
        way to evaluate only their forget elements (remembered for this model and these data
        arguments, so later requests skip the check, which runs the model on all data once)."""
        self._decided = True
        key, objects = _decision_key(
            self._user_model, self.args, self.kwargs, self._plate, self._sites_option
        )
        cached = _DECISIONS.get(key)
        if cached is not None and cached.alive(objects):
            self.forget_sites = cached.forget_sites
            self._full_size = cached.size
            if cached.strategy != "mask":
                index = as_index_tensor(self._mask, cached.size)
                self._configure(**self._candidates(index, cached.size)[cached.strategy])
            self.strategy = cached.strategy
            self.tried["decided"] = "earlier, for this model and these data arguments"
            return
        size = self._decide_by_checking(one)
        self._full_size = size
        _remember(key, objects, self.strategy, self.forget_sites, size)

    def _candidates(self, index, size) -> dict[str, dict]:
        unmasked = forget(self._user_model, weight=1.0, sites=self._sites_option)
        return {
            "plate index": dict(model=unmasked, plate_index=(self._plate, index)),
            "sliced data": dict(
                model=unmasked,
                args=tuple(_slice(a, index, size) for a in self.args),
                kwargs={k: _slice(v, index, size) for k, v in self.kwargs.items()},
                latent_index={self._plate: index},
            ),
        }

    def _decide_by_checking(self, one: dict[str, torch.Tensor]) -> int | None:
        """Check each strategy against the masked run; return the plate's full size."""
        sites = self.structure(one)
        inside = [
            n
            for n, s in sites.items()
            if s.is_observed
            and (self._sites_option is None or n in self._sites_option)
            and (isinstance(self._plate, int) or self._plate in s.plates)
        ]
        self.forget_sites = frozenset(inside)
        if isinstance(self._plate, int) or not inside:
            return None
        size = self.plate_sizes[self._plate]
        index = as_index_tensor(self._mask, size)
        candidates = self._candidates(index, size)
        if self._chunks != [None]:  # a subsampled plate: indexing is the only faithful way
            self._configure(**candidates["plate index"])
            self.strategy = "plate index"
            return size
        # the masked run on all data, made once to learn the structure, is the reference
        reference = {n: self._first_draw_sums[n] for n in self.forget_sites}
        masked = (self.model, self.args, self.kwargs)
        for strategy, config in candidates.items():
            self._configure(**config)
            self.strategy = strategy
            try:
                with torch.no_grad():
                    got = _sums(self.pointwise_log_likelihood(one))
            except Exception as error:  # noqa: BLE001 - any failure means: not this strategy
                self.tried[strategy] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
            else:
                if _sums_agree(got, reference, one):
                    return size
                self.tried[strategy] = "did not reproduce the masked run"
            self._configure(model=masked[0], args=masked[1], kwargs=masked[2])
            self.strategy = "mask"
        return size

    def _configure(self, *, model, args=None, kwargs=None, plate_index=None, latent_index=None):
        self.model = model
        self.args = self.args if args is None else args
        self.kwargs = self.kwargs if kwargs is None else kwargs
        self.plate_index, self.latent_index = plate_index, latent_index
        self._sites = self._chunks = None
        self._first_draw_sums = {}
        self.path = None


@dataclass
class _Decision:
    refs: tuple  # weak references to the model and the data tensors the decision was made on
    strategy: str
    forget_sites: frozenset
    size: int | None

    def alive(self, objects) -> bool:
        return len(objects) == len(self.refs) and all(
            r() is o for r, o in zip(self.refs, objects, strict=True)
        )


_DECISIONS: OrderedDict = OrderedDict()
_MAX_DECISIONS = 64


def _decision_key(model, args, kwargs, plate, sites) -> tuple[tuple, list]:
    """What a forget-set strategy depends on: the model, the data arguments (by identity and
    in-place version, so a modified tensor is decided anew), the plate and the sites."""
    from pyro.poutine.messenger import unwrap

    model = unwrap(model)
    objects = [model.__self__, model.__func__] if hasattr(model, "__func__") else [model]
    parts = []
    for value in _leaves((tuple(args), kwargs)):
        if isinstance(value, torch.Tensor):
            objects.append(value)
            parts.append((id(value), value._version, tuple(value.shape), str(value.dtype)))
        else:
            parts.append(repr(value))
    key = (tuple(id(o) for o in objects[:2]), tuple(parts), repr(plate), repr(sites))
    return key, objects


def _leaves(value):
    if isinstance(value, dict):
        for key in sorted(value, key=str):
            yield from _leaves(value[key])
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def _remember(key, objects, strategy, forget_sites, size) -> None:
    try:
        refs = tuple(weakref.ref(o) for o in objects)
    except TypeError:  # an object that takes no weak reference: do not remember
        return
    _DECISIONS[key] = _Decision(refs, strategy, forget_sites, size)
    _DECISIONS.move_to_end(key)
    while len(_DECISIONS) > _MAX_DECISIONS:
        _DECISIONS.popitem(last=False)


def _sums(parts: dict[str, torch.Tensor]) -> dict[str, float]:
    return {name: float(lp.sum()) for name, lp in parts.items()}


def _slice(value, index: torch.Tensor, size: int):
    """``value`` restricted to the forget elements along its first dim, where that dim is the plate's."""
    if isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == size:
        return value.index_select(0, index.to(value.device))
    if isinstance(value, dict):
        return {k: _slice(v, index, size) for k, v in value.items()}
    if isinstance(value, list | tuple) and not isinstance(value, str):
        return type(value)(_slice(v, index, size) for v in value)
    return value


def _sums_agree(got: dict, reference: dict, values) -> bool:
    if set(got) != set(reference):
        return False
    tol = 1e-4 if _dtype(values) in (torch.float32, torch.float16) else 1e-8
    return all(abs(got[n] - reference[n]) <= tol * (1.0 + abs(reference[n])) for n in reference)
