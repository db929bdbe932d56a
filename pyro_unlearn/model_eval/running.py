"""Running the model for blocks of draws: the three paths and the choice between them.

:class:`_Running` is a mixin of :class:`~pyro_unlearn.model_eval.evaluator.ModelEvaluator`:
its methods use the structure (sites, plate chunks, nesting) that the evaluator learns first.
"""

from __future__ import annotations

import pyro
import torch
from pyro import poutine

from .messengers import LOG_PROB, ModelEvaluationError
from .sites import PARTICLE_PLATE, _disagreement, _expand_to_batch, _num_draws


class _Running:
    """The model run at blocks of draws, per plate chunk, on a path (a mixin)."""

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
            part = self._join_chunks(by_chunk, request)
            if request.total:
                part = {name: lp.reshape(n, -1).sum(-1) for name, lp in part.items()}
            parts.append(part)
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
