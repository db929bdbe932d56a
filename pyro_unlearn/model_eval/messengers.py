"""The handlers the evaluator runs a model under, and the errors it raises.

:class:`SetLatents` gives the latent sites their values, :class:`PlateIndex` runs a plate on
given elements, ``_Marginalise`` enumerates discrete sites for the evaluator to sum out;
``LOG_PROB`` is the request for log probabilities (``_Request`` the general one).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
from pyro.distributions.torch_distribution import TorchDistributionMixin
from pyro.poutine.enum_messenger import EnumMessenger
from pyro.poutine.messenger import Messenger
from pyro.poutine.subsample_messenger import _Subsample

from ..errors import UnlearningError


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
    each observed site's distribution; with ``total``, each site's log probability summed per
    draw, block by block (the per-element tensors of all draws are never held at once)."""

    observed: dict | None = None
    statistic: Callable | None = None
    total: bool = False


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
