r"""The model at a batch of latent values: the one evaluator every method and check uses.

Given draws :math:`\theta_s` of the latent sites (``{site: (S, *shape)}``, or flat
unconstrained rows :math:`z_s` with a :class:`~pyro_unlearn.guides.LatentSite` layout), a
:class:`ModelEvaluator` returns every sample site's scaled and masked log probability per
draw and per element, and from them

* the log-likelihood :math:`\log p(D\mid\theta_s)` (all observed sites, or the forget sites),
  in total or per element;
* the log joint :math:`\log p(\theta(z_s), D) + \log|\det\partial\theta/\partial z|` of the
  unconstrained latents, Jacobians included;
* single-draw traces (for curvature that needs the likelihood's own parameters).

Models are run as their authors wrote them. Three ways to run one for :math:`S` draws are
tried, and the evaluator keeps the first that reproduces a plain run of the model on two of
the draws (so a path is never taken that changes the answer); :attr:`ModelEvaluator.path`
records which:

``"vectorized"``
    One run under a particle plate at dim :math:`-(\text{max\_plate\_nesting}+1)`, as
    :func:`pyro.infer.importance.vectorized_importance_weights` does. Fast; needs a model that
    broadcasts over a leading batch dimension.
``"vmap"``
    :func:`torch.func.vmap` over a function of one draw: takes models written for one draw
    (``nn.Linear`` with sampled weights, ``X @ w``, ``torch.mm``) that have no Python control
    flow on tensor values (distribution argument checks are switched off inside it).
``"loop"``
    One run per draw: takes anything.

Plates are evaluated whole. A subsampled plate (``pyro.plate("data", N, subsample_size=B)``)
is run on every element, in chunks of :math:`B` whose unbiasing scale :math:`N/B` is undone, so
each element counts once and nothing depends on a random subsample. Enumerated discrete sites
(``config_enumerate``) local to the data plate are summed out per element.

The forget-set log-likelihood comes from :func:`forget_evaluator`, which also decides, once,
how to evaluate only the forget elements of a masked plate (at the cost of the forget set, not
of the whole data): by giving the plate the forget indices (models that index their data with
the plate, ``with pyro.plate(...) as idx``), by slicing the data arguments along the plate, or,
where neither reproduces the masked run, by running the whole data under the mask.

Example: a model written for one draw (``X @ w``) is run under ``vmap``.

>>> import torch, pyro, pyro.distributions as dist
>>> def model(X, y):
...     w = pyro.sample("w", dist.Normal(torch.zeros(2), 1.0).to_event(1))
...     with pyro.plate("data", len(X)):
...         pyro.sample("y", dist.Normal(X @ w, 1.0), obs=y)
>>> X, y = torch.eye(2), torch.tensor([1.0, -1.0])
>>> evaluator = ModelEvaluator(model, (X, y))
>>> w = torch.tensor([[0.0, 0.0], [1.0, -1.0], [2.0, 0.0]])
>>> log_lik = evaluator.log_likelihood({"w": w})
>>> expected = torch.stack([dist.Normal(X @ w_s, 1.0).log_prob(y).sum() for w_s in w])
>>> evaluator.path, bool(torch.allclose(log_lik, expected))
('vmap', True)
"""

from __future__ import annotations

import re
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import pyro
import torch
from pyro import poutine
from pyro.distributions.torch_distribution import TorchDistributionMixin
from pyro.poutine.enum_messenger import EnumMessenger
from pyro.poutine.messenger import Messenger
from pyro.poutine.subsample_messenger import _Subsample

from ._user_model import user_call
from .errors import UnlearningError
from .handlers.forget import forget
from .masks import MaskLike, as_index_tensor

PATHS = ("vectorized", "vmap", "loop")
PARTICLE_PLATE = "_unlearn_particles"
CHUNK_SIZE = 2048  # draws per vectorized or vmapped run: bounds memory at S x |D| values


class ModelEvaluationError(UnlearningError, ValueError):
    """The model could not be run at the posterior's latent values."""


class MissingLatentError(ModelEvaluationError, KeyError):
    """The model samples a latent site that the posterior does not hold (``site``)."""

    def __init__(self, message: str, site: str | None = None) -> None:
        super().__init__(message)
        # Pyro re-raises a model's exception as type(e)(message + shapes): recover the name
        found = re.search(r"latent site '([^']+)'", message)
        self.site = site or (found.group(1) if found else None)

    def __str__(self) -> str:
        return str(self.args[0])


class SetLatents(Messenger):
    """Give latent sites fixed values without marking them observed (unlike ``condition``).

    ``index`` maps a plate name to the indices the current run evaluates: a local latent of
    that plate, given over the whole plate, is indexed along the plate's dim. With ``strict``,
    a latent site the values lack is an error (it would otherwise be drawn from its prior,
    and two runs would differ); enumerated and auxiliary sites are left to their handlers.
    """

    def __init__(
        self,
        values: dict[str, torch.Tensor],
        *,
        strict: bool = True,
        index: dict[str, torch.Tensor] | None = None,
        observed: dict[str, torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.values = values
        self.strict = strict
        self.index = index or {}
        self.observed = observed or {}

    def _pyro_sample(self, msg) -> None:
        if isinstance(msg["fn"], _Subsample):
            return
        if msg["is_observed"]:
            if msg["name"] in self.observed:  # other data for this observed site
                msg["value"] = self._indexed(msg, self.observed[msg["name"]])
            return
        name = msg["name"]
        if name not in self.values:
            if _is_enumerated(msg) or msg["infer"].get("is_auxiliary") or not self.strict:
                return
            raise MissingLatentError(
                f"the model samples latent site {name!r}, which the posterior does not hold "
                f"(its sites: {sorted(self.values)}); it would be drawn from its prior, so two "
                "runs would differ. Fit the guide to this model (an autoguide of the whole "
                "model), or fix the site with pyro.condition",
                name,
            )
        value = self._indexed(msg, self.values[name])
        fn = msg["fn"]
        model_shape = fn.batch_shape + fn.event_shape
        if value.shape[value.dim() - len(model_shape) :] != model_shape:
            raise ModelEvaluationError(
                f"the data do not match the fitted model: latent site {name!r} has shape "
                f"{tuple(model_shape)} under these arguments but {tuple(value.shape)} in the "
                "posterior"
            )
        msg["value"] = value

    def _indexed(self, msg, value: torch.Tensor) -> torch.Tensor:
        """``value`` given over whole plates, indexed to the elements this run evaluates."""
        for frame in msg["cond_indep_stack"]:
            indices = self.index.get(frame.name)
            dim = frame.dim - msg["fn"].event_dim if frame.dim is not None else None
            if indices is not None and dim is not None and -dim <= value.dim():
                if value.shape[dim] != frame.size:
                    value = value.index_select(value.dim() + dim, indices.to(value.device))
        return value


@dataclass(frozen=True)
class _Request:
    """What a run returns: log probabilities (with other observed values), or a statistic of
    each observed site's distribution."""

    observed: dict | None = None
    statistic: Callable | None = None


LOG_PROB = _Request()


class PlateIndex(Messenger):
    r"""Run plate ``name`` on the elements ``indices`` of its full size, each counted once.

    The plate's subsample site gets ``indices`` (so a model that indexes its data with the
    plate, ``with pyro.plate("data", N) as idx``, sees exactly those elements); the plate's
    unbiasing scale :math:`N/B` is undone; positions from ``num_valid`` on are padding (a
    plate with a fixed ``subsample_size`` needs exactly that many indices) and are masked out.
    """

    def __init__(self, name: str, indices: torch.Tensor, num_valid: int | None = None) -> None:
        super().__init__()
        self.name = name
        self.indices = indices
        self.num_valid = len(indices) if num_valid is None else num_valid

    def _pyro_sample(self, msg) -> None:
        if isinstance(msg["fn"], _Subsample):
            if msg["name"] == self.name:
                msg["value"] = self.indices.to(getattr(msg["fn"], "device", None))
            return
        frame = next((f for f in msg["cond_indep_stack"] if f.name == self.name), None)
        if frame is None:
            return
        if frame.full_size and frame.full_size != frame.size:
            msg["scale"] = msg["scale"] * frame.size / frame.full_size
        if self.num_valid < len(self.indices):
            valid = torch.arange(len(self.indices)) < self.num_valid
            valid = valid.reshape((-1,) + (1,) * (-1 - frame.dim))
            msg["mask"] = valid if msg["mask"] is None else msg["mask"] & valid


class _Marginalise(EnumMessenger):
    """Parallel enumeration that the evaluator contracts itself (not TraceEnum_ELBO)."""

    sums_out_itself = True

    def _pyro_post_sample(self, msg) -> None:
        # EnumMessenger reads value.data.shape, which vmap forbids; value.shape is the same
        value = msg["value"]
        if value is None or not isinstance(msg["fn"], TorchDistributionMixin):
            return
        shape = value.shape[: value.dim() - msg["fn"].event_dim]
        dim_to_id = msg["infer"].setdefault("_dim_to_id", {})
        dim_to_id.update(self._param_dims.get(msg["name"], {}))
        self._value_dims[msg["name"]] = {
            dim: id_ for dim, id_ in dim_to_id.items() if len(shape) >= -dim and shape[dim] > 1
        }


def _is_enumerated(msg) -> bool:
    return msg["infer"].get("enumerate") == "parallel" and not msg["is_observed"]


@dataclass(frozen=True)
class SiteInfo:
    """One sample site as a single run of the model shows it."""

    name: str
    is_observed: bool
    batch_shape: torch.Size  # shape of its log probability in one run
    plates: tuple[str, ...]
    plate_dims: tuple[int, ...]
    enumerated: bool = False
    event_shape: torch.Size = torch.Size()
    support: object = None


@dataclass(frozen=True)
class _Chunk:
    """One run's plate indexing: ``indices`` of plate ``plate`` (``num_valid`` real ones)."""

    plate: str
    indices: torch.Tensor
    num_valid: int


class ModelEvaluator:
    r"""``model(*args, **kwargs)`` evaluated at batches of latent values; see the module docs.

    Parameters
    ----------
    model : callable
        A Pyro model, as its author wrote it (it need not broadcast over draws).
    args, kwargs
        Its arguments.
    forget_sites : iterable of str, optional
        The observed sites whose log-likelihood :meth:`log_likelihood` returns; default all.
    plate_index : (str, tensor), optional
        Evaluate only these elements of this plate (indices over its full size).
    path : {"vectorized", "vmap", "loop"}, optional
        Force a path instead of probing for the fastest faithful one.
    chunk_size : int
        Draws per vectorized or vmapped run.
    """

    def __init__(
        self,
        model: Callable,
        args: tuple = (),
        kwargs: dict | None = None,
        *,
        forget_sites: Iterable[str] | None = None,
        plate_index: tuple[str, torch.Tensor] | None = None,
        latent_index: dict[str, torch.Tensor] | None = None,
        path: str | None = None,
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        if path is not None and path not in PATHS:
            raise ValueError(f"path must be one of {PATHS}, got {path!r}")
        self.model = user_call(model)
        self.args = tuple(args)
        self.kwargs = dict(kwargs or {})
        self.forget_sites = None if forget_sites is None else frozenset(forget_sites)
        self.plate_index = plate_index
        self.latent_index = latent_index  # local latents indexed to data sliced by the caller
        self.path = path
        self.chunk_size = chunk_size
        self.tried: dict[str, str] = {}  # path or strategy -> why it was not taken
        self.strategy = "as given"  # how the forget elements are reached (forget_evaluator)
        self._sites: dict[str, SiteInfo] | None = None
        self._chunks: list[_Chunk | None] | None = None
        self.plate_sizes: dict[str, int] = {}
        self._first_draw_sums: dict[str, float] = {}
        self._nesting = 0
        self._enumerated = False

    # ------------------------------------------------------------------ structure
    def _handled(
        self, values, chunk: _Chunk | None, *, particle: bool, strict=True, request=LOG_PROB
    ):
        """The model with its latents set, its plate indexed and its discrete sites enumerated."""
        fn = self.model
        index = dict(self.latent_index or {})
        if chunk is not None:
            fn = PlateIndex(chunk.plate, chunk.indices, chunk.num_valid)(fn)
            index[chunk.plate] = chunk.indices
        fn = SetLatents(values, strict=strict, index=index, observed=request.observed)(fn)
        if self._enumerated:
            fn = _Marginalise(first_available_dim=-(self._nesting + (2 if particle else 1)))(fn)
        return fn

    def _plain_trace(self, values, chunk: _Chunk | None, *, strict=True, request=LOG_PROB):
        """One run at one draw (values without a leading draw dim), log probs computed."""
        fn = self._handled(values, chunk, particle=False, strict=strict, request=request)
        trace = poutine.trace(fn).get_trace(*self.args, **self.kwargs)
        trace.compute_log_prob()
        return trace

    def structure(self, values: dict[str, torch.Tensor]) -> dict[str, SiteInfo]:
        """The model's sample sites, from one run at the first draw (computed once)."""
        if self._sites is None:
            self._learn_structure({k: v[0] for k, v in values.items()})
        return self._sites

    def _learn_structure(self, one: dict[str, torch.Tensor]) -> None:
        with torch.random.fork_rng(), torch.no_grad():  # enumerated sites are drawn here
            torch.manual_seed(0)
            try:
                trace = self._plain_trace(one, None, strict=True)
            except MissingLatentError:
                raise
            except Exception as error:
                raise ModelEvaluationError(
                    f"running the model on the given data failed ({type(error).__name__}: "
                    f"{error}), at the posterior's latent values; check that the data have the "
                    "shapes and types of those the posterior was fitted on"
                ) from error
            self._chunks = self._make_chunks(trace)
            nesting, enumerated = 0, False
            for site in trace.nodes.values():
                if site["type"] != "sample" or isinstance(site["fn"], _Subsample):
                    continue
                dims = [f.dim for f in site["cond_indep_stack"] if f.vectorized]
                nesting = max([nesting] + [-d for d in dims])
                enumerated = enumerated or _is_enumerated(site)
            self._nesting, self._enumerated = nesting, enumerated
            if enumerated or self._chunks[0] is not None:  # the run the evaluator will make
                trace = self._plain_trace(one, self._chunks[0], strict=True)
        sites = {}
        for name, site in trace.nodes.items():
            if site["type"] != "sample" or isinstance(site["fn"], _Subsample):
                continue
            if site["is_observed"]:
                _check_observed_shape(site)
            frames = [f for f in site["cond_indep_stack"] if f.vectorized]
            batch = site["log_prob"].shape
            if self._enumerated:  # enumeration dims, left of the plates, are summed out
                batch = batch[len(batch) - self._nesting :] if self._nesting else torch.Size()
            sites[name] = SiteInfo(
                name,
                bool(site["is_observed"]),
                batch,
                tuple(f.name for f in frames),
                tuple(f.dim for f in frames),
                _is_enumerated(site),
                site["fn"].event_shape,
                site["fn"].support,
            )
        if self.forget_sites is not None:
            unknown = sorted(self.forget_sites - {n for n, s in sites.items() if s.is_observed})
            if unknown:
                raise ValueError(f"sites {unknown} are not observed sites of the model")
        if self._enumerated:
            observed = [s for s in sites.values() if s.is_observed]
            if len(observed) != 1:
                raise NotImplementedError(
                    "a model with enumerated discrete sites is marginalised per data point only "
                    f"when it has one observed site (it has {[s.name for s in observed]})"
                )
            for s in sites.values():
                if s.enumerated and set(s.plates) != set(observed[0].plates):
                    raise NotImplementedError(
                        f"enumerated site {s.name!r} (plates {s.plates}) is not local to the "
                        f"plates of the observed site {observed[0].name!r} "
                        f"({observed[0].plates}); only discrete latents local to the data "
                        "points (mixture assignments) are summed out"
                    )
        self._sites = sites
        if self._chunks == [None]:  # the whole run at the first draw: its log-likelihood sums
            with torch.no_grad():
                outputs = self._outputs(trace, particle=False, request=LOG_PROB)
            self._first_draw_sums = {
                n: float(outputs[n].sum()) for n, s in sites.items() if s.is_observed
            }

    def _make_chunks(self, trace) -> list[_Chunk | None]:
        """How each run indexes plates: the requested elements, or every element of a
        subsampled plate, in chunks of its ``subsample_size``."""
        subsampled = {
            name: site["fn"]
            for name, site in trace.nodes.items()
            if site["type"] == "sample" and isinstance(site["fn"], _Subsample)
        }
        self.plate_sizes = {name: fn.size for name, fn in subsampled.items()}

        def fixed_size(fn):
            return fn.subsample_size if fn.subsample_size and fn.subsample_size < fn.size else None

        if self.plate_index is not None:
            plate, indices = self.plate_index
            if plate not in subsampled:
                raise ModelEvaluationError(f"the model has no plate named {plate!r}")
            return _chunked(plate, indices, fixed_size(subsampled[plate]))
        random = [n for n, fn in subsampled.items() if fixed_size(fn)]
        if not random:
            return [None]
        if len(random) > 1:
            raise NotImplementedError(
                f"the model subsamples several plates ({random}); the evaluator covers one "
                "subsampled plate: run it without subsampling for unlearning"
            )
        fn = subsampled[random[0]]
        return _chunked(random[0], torch.arange(fn.size), fn.subsample_size)

    # ------------------------------------------------------------------ running
    def _single(self, values, chunk, request) -> dict[str, torch.Tensor]:
        trace = self._plain_trace(values, chunk, request=request)
        return self._outputs(trace, particle=False, request=request)

    def _outputs(self, trace, particle: bool, request) -> dict[str, torch.Tensor]:
        """Per-site results of one run: log probabilities (enumerated sites summed out into
        the observed site's elements), or the requested statistic of each observed site."""
        if request.statistic is not None:
            if self._enumerated:
                raise NotImplementedError(
                    "statistics of the observed sites' distributions are not defined for a "
                    f"model with enumerated sites {self.enumerated_sites}"
                )
            return {
                name: _expand_to_batch(
                    request.statistic(trace.nodes[name]["fn"]), trace.nodes[name]["fn"]
                )
                for name, info in self._sites.items()
                if info.is_observed
            }
        out = {}
        enumerated = []
        for name, info in self._sites.items():
            node = trace.nodes[name]
            if info.enumerated:
                enumerated.append(node["log_prob"])
                continue
            out[name] = node["log_prob"]
        if enumerated:
            (obs,) = [n for n, s in self._sites.items() if s.is_observed]
            joint = out[obs]
            for lp in enumerated:
                joint = joint + lp
            keep = self._nesting + (1 if particle else 0)
            enum_dims = list(range(joint.dim() - keep))
            out[obs] = joint.logsumexp(enum_dims) if enum_dims else joint
        return out

    def _run_loop(self, values, chunk, num, request):
        per_draw = [
            self._single({k: v[s] for k, v in values.items()}, chunk, request) for s in range(num)
        ]
        return {name: torch.stack([d[name] for d in per_draw]) for name in per_draw[0]}

    def _run_vmap(self, values, chunk, num, request):
        names = list(values)
        order = [
            n
            for n, s in self._sites.items()
            if not s.enumerated and (request.statistic is None or s.is_observed)
        ]

        def one(*vals):
            out = self._single(dict(zip(names, vals, strict=True)), chunk, request)
            return tuple(out[n].expand(self._site_shape(n, chunk, request)) for n in order)

        with pyro.validation_enabled(False):
            out = torch.func.vmap(one, randomness="error")(*[values[n] for n in names])
        return dict(zip(order, out, strict=True))

    def _run_vectorized(self, values, chunk, num, request):
        padded = {}
        for name, value in values.items():
            info = self._sites.get(name)
            if info is None:  # not a site of this model (e.g. deterministic): unused
                continue
            pad = self._nesting - len(info.plates)
            padded[name] = value.reshape((num,) + (1,) * pad + value.shape[1:])
        fn = self._handled(padded, chunk, particle=True, request=request)
        with pyro.plate(PARTICLE_PLATE, num, dim=-(self._nesting + 1)):
            trace = poutine.trace(fn).get_trace(*self.args, **self.kwargs)
        trace.compute_log_prob()
        out = {}
        for name, lp in self._outputs(trace, particle=True, request=request).items():
            shape = self._site_shape(name, chunk, request)
            lp = lp.expand((num,) + lp.shape[1:]) if lp.dim() else lp.expand(num)
            lp = lp.reshape((num,) + lp.shape[1:][len(lp.shape[1:]) - len(shape) :])
            if lp.shape[1:] != shape:  # a site that did not broadcast as the model's plates say
                raise ModelEvaluationError(f"site {name!r} did not broadcast over draws")
            out[name] = lp
        return out

    def _site_shape(self, name, chunk, request=LOG_PROB) -> torch.Size:
        info = self._sites[name]
        event = info.event_shape if request.statistic is not None else torch.Size()
        if chunk is None or chunk.plate not in info.plates:
            return info.batch_shape + event
        shape = list(info.batch_shape)
        dim = info.plate_dims[info.plates.index(chunk.plate)]
        if -dim <= len(shape):
            shape[dim] = len(chunk.indices)
        return torch.Size(shape) + event

    def _run(self, values, path: str, request=LOG_PROB) -> dict[str, torch.Tensor]:
        """Every site's results for all draws, over every plate chunk, in blocks of draws."""
        num = _num_draws(values)
        runner = {
            "loop": self._run_loop,
            "vmap": self._run_vmap,
            "vectorized": self._run_vectorized,
        }[path]
        parts = []
        for start in range(0, num, self.chunk_size):
            block = {k: v[start : start + self.chunk_size] for k, v in values.items()}
            n = _num_draws(block)
            by_chunk = [runner(block, chunk, n, request) for chunk in self._chunks]
            parts.append(self._join_chunks(by_chunk, request))
        return {name: torch.cat([p[name] for p in parts]) for name in parts[0]}

    def _join_chunks(
        self, by_chunk: list[dict[str, torch.Tensor]], request
    ) -> dict[str, torch.Tensor]:
        first = self._chunks[0]
        if len(by_chunk) == 1 and (first is None or first.num_valid == len(first.indices)):
            return by_chunk[0]
        out = {}
        for name in by_chunk[0]:
            info = self._sites[name]
            plate = first.plate
            if plate not in info.plates:  # a site outside the plate: counted once
                out[name] = by_chunk[0][name]
                continue
            dim = info.plate_dims[info.plates.index(plate)]
            if request.statistic is not None:
                dim = dim - len(info.event_shape)
            pieces = []
            for chunk, lps in zip(self._chunks, by_chunk, strict=True):
                lp = lps[name]
                if -dim > lp.dim() - 1:  # the site's log prob has no plate dim: a scalar sum
                    pieces.append(lp)
                    continue
                pieces.append(lp.narrow(lp.dim() + dim, 0, chunk.num_valid))
            if pieces[0].dim() - 1 < -dim:
                out[name] = sum(pieces)
            else:
                out[name] = torch.cat(pieces, dim=pieces[0].dim() + dim)
        return out

    def _choose_path(self, values) -> None:
        num = _num_draws(values)
        picks = torch.tensor([0, num - 1])
        probe = {k: v.index_select(0, picks.to(v.device)) for k, v in values.items()}
        with torch.no_grad():
            reference = self._run(probe, "loop")
            for path in ("vectorized", "vmap"):
                try:
                    candidate = self._run(probe, path)
                except Exception as error:  # noqa: BLE001 - any failure means: not this path
                    self.tried[path] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
                    continue
                disagreement = _disagreement(candidate, reference)
                if disagreement is None:
                    self.path = path
                    return
                self.tried[path] = disagreement
        self.path = "loop"

    def site_log_probs(
        self, values: dict[str, torch.Tensor], *, observed: dict | None = None
    ) -> dict[str, torch.Tensor]:
        """Every sample site's scaled, masked log probability: ``{site: (S, *batch)}``.

        ``values`` maps latent site names to draws ``(S, *site_shape)`` in the constrained
        space. Enumerated sites are summed out into the observed site's elements.
        ``observed`` gives other values to observed sites (over their whole plates).
        """
        return self._evaluate(values, _Request(observed=observed))

    def observed_statistic(self, values, statistic: Callable) -> dict[str, torch.Tensor]:
        """``statistic(fn)`` of each observed site's distribution per draw: ``{site: (S, ...)}``.

        E.g. ``lambda fn: fn.mean`` for the predictive mean given each draw (batch and event
        dims of the site).
        """
        return self._evaluate(values, _Request(statistic=statistic))

    def _evaluate(self, values, request) -> dict[str, torch.Tensor]:
        values = {k: torch.as_tensor(v) for k, v in values.items()}
        num = _num_draws(values)
        self.structure(values)
        values = {k: v for k, v in values.items() if k in self._sites}
        if num == 1:
            return self._run(values, "loop", request)
        if self.path is None:
            self._choose_path(values)
        return self._run(values, self.path, request)

    def observed_values(
        self, values: dict[str, torch.Tensor], *, seed: int | None = None
    ) -> dict[str, torch.Tensor]:
        """Every observed site's values over its whole plates, given one latent draw (values
        without a draw dim): the data, or with ``seed`` one posterior-predictive draw
        (enumerated sites drawn too, seeded locally)."""
        self.structure({k: v.unsqueeze(0) for k, v in values.items()})
        enumerated, self._enumerated = self._enumerated, False  # draw them, do not sum out
        pieces = []
        try:
            with torch.random.fork_rng(), torch.no_grad():
                torch.manual_seed(0 if seed is None else seed)
                for chunk in self._chunks:
                    fn = self._handled(values, chunk, particle=False)
                    if seed is not None:
                        fn = poutine.uncondition(fn)
                    trace = poutine.trace(fn).get_trace(*self.args, **self.kwargs)
                    pieces.append(
                        {
                            n: trace.nodes[n]["value"]
                            for n, s in self._sites.items()
                            if s.is_observed
                        }
                    )
        finally:
            self._enumerated = enumerated
        first = self._chunks[0]
        if len(pieces) == 1 and (first is None or first.num_valid == len(first.indices)):
            return pieces[0]
        out = {}
        for name, value in pieces[0].items():
            info = self._sites[name]
            if first.plate not in info.plates:
                out[name] = value
                continue
            dim = info.plate_dims[info.plates.index(first.plate)] - len(info.event_shape)
            parts = [
                p[name].narrow(p[name].dim() + dim, 0, c.num_valid)
                for p, c in zip(pieces, self._chunks, strict=True)
            ]
            out[name] = torch.cat(parts, dim=parts[0].dim() + dim)
        return out

    # ------------------------------------------------------------------ results
    def _likelihood_sites(self) -> list[str]:
        observed = [n for n, s in self._sites.items() if s.is_observed]
        if self.forget_sites is None:
            return observed
        return [n for n in observed if n in self.forget_sites]

    def pointwise_log_likelihood(self, values, *, observed=None) -> dict[str, torch.Tensor]:
        """Per-element log-likelihood of the (forget) observed sites: ``{site: (S, *batch)}``."""
        lps = self.site_log_probs(values, observed=observed)
        return {name: lps[name] for name in self._likelihood_sites()}

    def log_likelihood(self, values) -> torch.Tensor:
        r""":math:`\log p(D\mid\theta_s)` summed over the (forget) observed sites: ``(S,)``."""
        parts = self.pointwise_log_likelihood(values)
        num = _num_draws(values)
        total = torch.zeros(num, dtype=_dtype(values), device=_device(values))
        for lp in parts.values():
            total = total + lp.reshape(num, -1).sum(-1)
        return total

    def factors(self, values) -> torch.Tensor:
        """The log-likelihood's elements as columns, every (forget) site flattened: ``(S, M)``."""
        num = _num_draws(values)
        parts = self.pointwise_log_likelihood(values).values()
        return torch.cat([lp.reshape(num, -1) for lp in parts], dim=-1)

    def log_joint(self, layout, z: torch.Tensor) -> torch.Tensor:
        r""":math:`\log p(\theta(z_s), D) + \log|\det\partial\theta/\partial z|` for rows of ``z``."""
        values = {site.name: site.constrain(z[:, site.slice]) for site in layout}
        lps = self.site_log_probs(values)
        num = len(z)
        total = z.new_zeros(num)
        for lp in lps.values():
            total = total + lp.reshape(num, -1).sum(-1)
        for site in layout:
            z_site = z[:, site.slice].reshape((num,) + site.unconstrained_shape)
            jacobian = site.transform.log_abs_det_jacobian(z_site, values[site.name])
            total = total + jacobian.reshape(num, -1).sum(-1)
        return total

    def traces(self, values: dict[str, torch.Tensor]) -> list:
        """Plain traces at one draw (values without a draw dim), one per plate chunk."""
        self.structure({k: v.unsqueeze(0) for k, v in values.items()})
        return [self._plain_trace(values, chunk) for chunk in self._chunks]

    def structure_of(self, name: str) -> SiteInfo:
        """One site's :class:`SiteInfo` (once the structure is known, after a first run)."""
        if self._sites is None:
            raise RuntimeError("the model's structure is known after its first evaluation")
        if name not in self._sites:
            raise KeyError(f"the model has no sample site {name!r} (sites: {list(self._sites)})")
        return self._sites[name]

    def _data_plate_size(self) -> int | None:
        """The size of the one plate every (forget) observed site sits in, if there is one."""
        if not self._sites:
            return None
        plates = {s.plates for n, s in self._sites.items() if n in self._likelihood_sites()}
        if len(plates) != 1 or len(next(iter(plates))) != 1:
            return None
        return self.plate_sizes.get(next(iter(plates))[0])

    @property
    def max_plate_nesting(self) -> int:
        """The model's plate nesting (known once the structure is)."""
        return self._nesting

    @property
    def enumerated_sites(self) -> list[str]:
        return [n for n, s in (self._sites or {}).items() if s.enumerated]

    def latent_sites(self) -> list[str]:
        """The model's latent sites (enumerated ones excluded), once the structure is known."""
        return [n for n, s in (self._sites or {}).items() if not s.is_observed and not s.enumerated]

    def describe(self) -> dict:
        """Which path ran and why faster ones were not taken: for a result's diagnostics."""
        out = {"path": self.path or "single draw", "forget_set": self.strategy}
        size = self._data_plate_size()
        if size is not None:
            out["plate_size"] = size
        if self.tried:
            out["not_taken"] = dict(self.tried)
        if self.enumerated_sites:
            out["marginalised"] = self.enumerated_sites
        return out


def _check_observed_shape(site) -> None:
    """Observed data must not broadcast its distribution to a larger shape (``y`` of shape
    ``(N, 1)`` against a distribution of shape ``(N,)`` gives an ``(N, N)`` log-likelihood)."""
    value, fn = site["value"], site["fn"]
    shape = fn.batch_shape + fn.event_shape
    try:
        joint = torch.broadcast_shapes(torch.as_tensor(value).shape, shape)
    except RuntimeError:
        joint = None
    if joint != shape:
        raise ModelEvaluationError(
            f"observed site {site['name']!r} has data of shape {tuple(torch.as_tensor(value).shape)} "
            f"but its distribution has shape {tuple(shape)}"
            + (f": they broadcast to {tuple(joint)}" if joint is not None else "")
            + f"; pass the observations with the distribution's shape {tuple(shape)} "
            "(e.g. y.squeeze(-1))"
        )


def _expand_to_batch(value: torch.Tensor, fn) -> torch.Tensor:
    """A statistic of ``fn`` (batch + event dims) expanded to ``fn``'s full shape."""
    return torch.as_tensor(value).expand(fn.batch_shape + fn.event_shape)


def _chunked(plate: str, indices: torch.Tensor, size: int | None) -> list[_Chunk]:
    indices = torch.as_tensor(indices).long()
    if size is None:
        return [_Chunk(plate, indices, len(indices))]
    chunks = []
    for start in range(0, len(indices), size):
        part = indices[start : start + size]
        valid = len(part)
        if valid < size:  # pad with the last index, masked out
            part = torch.cat([part, part[-1:].expand(size - valid)])
        chunks.append(_Chunk(plate, part, valid))
    return chunks


def _num_draws(values) -> int:
    return len(next(iter(values.values())))


def _dtype(values):
    return next(iter(values.values())).dtype


def _device(values):
    return next(iter(values.values())).device


def _disagreement(candidate, reference) -> str | None:
    for name, ref in reference.items():
        got = candidate.get(name)
        if got is None or got.shape != ref.shape:
            return f"site {name!r}: shape {None if got is None else tuple(got.shape)} vs {tuple(ref.shape)}"
        tol = 1e-4 if ref.dtype in (torch.float32, torch.float16, torch.bfloat16) else 1e-7
        scale = 1.0 + float(ref.abs().max()) if ref.numel() else 1.0
        if not torch.allclose(got, ref, rtol=tol, atol=tol * scale, equal_nan=True):
            return f"site {name!r}: values differ from a plain run by {float((got - ref).abs().max()):.3g}"
    return None


# ---------------------------------------------------------------------- forget set
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


def as_values(layout: Sequence, z: torch.Tensor) -> dict[str, torch.Tensor]:
    """Flat unconstrained rows ``z`` (``(S, d)``) -> constrained site values ``{site: (S, *shape)}``."""
    return {site.name: site.constrain(z[..., site.slice]) for site in layout}
