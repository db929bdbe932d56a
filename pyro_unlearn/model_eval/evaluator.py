"""The :class:`ModelEvaluator`: the model at a batch of latent values (see the package docs).

It learns the model's structure from one run and returns log probabilities, log-likelihoods
and log joints per draw; running the model for blocks of draws is its mixin
:class:`~pyro_unlearn.model_eval.running._Running`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from pyro import poutine
from pyro.poutine.subsample_messenger import _Subsample

from .._user_model import user_call
from .messengers import (
    LOG_PROB,
    MissingLatentError,
    ModelEvaluationError,
    PlateIndex,
    SetLatents,
    _is_enumerated,
    _Marginalise,
    _Request,
)
from .running import _Running
from .sites import (
    PATHS,
    LargestTensor,
    SiteInfo,
    _check_observed_shape,
    _Chunk,
    _chunked,
    _device,
    _dtype,
    _num_draws,
    draws_per_run,
)


class ModelEvaluator(_Running):
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
    chunk_size : int, optional
        Draws per vectorized or vmapped run; default
        :func:`~pyro_unlearn.model_eval.sites.draws_per_run` of the largest tensor the model
        makes at one draw (32 to 2048 draws, fewer the larger the model's intermediates).
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
        chunk_size: int | None = None,
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
        self._fixed_chunk_size = chunk_size is not None  # else chosen with the structure
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
            largest = LargestTensor()  # the intermediates' size, for the draws per run
            try:
                with largest:
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
                largest = LargestTensor()
                with largest:
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
        if not self._fixed_chunk_size:
            self.chunk_size = draws_per_run(largest.bytes)
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

    # ------------------------------------------------------------------ running (paths: _Running)
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
        num = len(z)
        total = z.new_zeros(num)
        for lp in self._evaluate(values, _Request(total=True)).values():  # (S,) per site
            total = total + lp
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
