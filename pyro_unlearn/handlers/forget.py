"""The forget handler: the forget-set log-likelihood with a (negative) weight."""

from __future__ import annotations

import math
from collections.abc import Iterable

from ..masks import MaskLike
from .plate_mask import PlateMaskMessenger, under_enumeration


class ForgetMessenger(PlateMaskMessenger):
    r"""Turn a model's log-likelihood into the weighted forget-set term.

    The model's log joint :math:`\log p(\theta) + \sum_i \log p(y_i \mid \theta)` becomes

    .. math:: \log p(\theta) + w \sum_{i \in D_e} \log p(y_i \mid \theta),

    with weight :math:`w` (default :math:`-1`: the likelihood is *divided out*).

    Two modes give the same term:

    * without ``mask``, the model is run on the forget data :math:`D_e` only and every
      observed site (or those named in ``sites``) is scaled by ``weight``;
    * with ``mask`` over the full size of plate ``plate``, the model is run on all
      data: forget elements get ``weight``, the others are masked out (weight 0,
      as a mask so that :math:`0 \cdot \infty` never gives NaN). Subsampled plates
      map their batch to global indices; observed sites may sit in nested plates.

    Latent sites are untouched: on the full-data posterior the weight :math:`-1` is
    right only where the old posterior stands in for the prior (see :func:`anchor`);
    to *retrain* on the retained data use :func:`retain` (weight 0).

    Example: the masked and unmasked modes give the same forget term.

        >>> import torch, pyro, pyro.distributions as dist
        >>> from pyro_unlearn.handlers import forget
        >>> x = torch.tensor([0.5, -1.0, 2.0, 0.3])
        >>> def model(x):
        ...     with pyro.plate("data", len(x)):
        ...         pyro.sample("y", dist.Normal(0.0, 1.0), obs=x)
        >>> is_forgotten = torch.tensor([False, True, True, False])
        >>> masked = pyro.poutine.trace(forget(model, mask=is_forgotten, plate="data"))
        >>> unmasked = pyro.poutine.trace(forget(model))
        >>> a = masked.get_trace(x).log_prob_sum()
        >>> b = unmasked.get_trace(x[is_forgotten]).log_prob_sum()
        >>> bool(torch.isclose(a, b)), bool(torch.isclose(b, -dist.Normal(0.0, 1.0).log_prob(x[1:3]).sum()))
        (True, True)

    :class:`pyro.poutine.scale` refuses negative weights, hence this handler. It runs
    under ``Trace_ELBO``, ``TraceMeanField_ELBO``, ``TraceGraph_ELBO``, ``RenyiELBO``
    and MCMC; ``TraceEnum_ELBO`` supports only positive scalar scales, and this
    handler raises a ``ValueError`` saying so.

    Parameters
    ----------
    weight : float
        Multiplier :math:`w` of the forget-set log-likelihood; default ``-1``.
    sites : iterable of str, optional
        Names of the observed sites to scale; default all observed sites.
    mask : bool tensor or integer index tensor, optional
        Forget elements over the full size of plate ``plate``.
    plate : str or int, optional
        Name of the data plate the mask refers to; required with ``mask``. Observed sites
        outside that plate (a global value fixed with ``pyro.condition``) are left untouched.
        For an observed vector outside any plate (eight schools as Pyro's examples write
        it), a negative int: the batch dimension of the observed sites that indexes the
        data points (``plate=-1``).
    """

    def __init__(
        self,
        weight: float = -1.0,
        sites: Iterable[str] | None = None,
        mask: MaskLike | None = None,
        plate: str | int | None = None,
    ) -> None:
        weight_value = float(weight)
        if not math.isfinite(weight_value):
            raise ValueError(f"forget weight must be finite, got {weight}")
        if isinstance(sites, str):
            sites = [sites]
        super().__init__(mask, plate)
        self.weight = weight_value
        self.sites = None if sites is None else frozenset(sites)
        self._touched: set[str] = set()

    def __enter__(self):
        self._touched = set()
        return super().__enter__()

    def __exit__(self, exc_type, exc_value, traceback):
        super().__exit__(exc_type, exc_value, traceback)
        if exc_type is not None:
            return
        if self.sites is not None and self.sites - self._touched - set(self._outside):
            missing = sorted(self.sites - self._touched - set(self._outside))
            raise ValueError(f"forget: sites {missing} were not observed sites of the model")
        if not self._touched and not self._outside:
            raise ValueError(
                "forget: the model has no observed site to forget; pass the data with "
                "pyro.sample(..., obs=...)"
            )

    def _pyro_sample(self, msg) -> None:
        if not msg["is_observed"] or (self.sites is not None and msg["name"] not in self.sites):
            return
        if under_enumeration() and (self.weight < 0 or self.plate is not None):
            raise ValueError(
                "forget: TraceEnum_ELBO supports only positive scalar scales, so it cannot "
                "subtract the forget-set likelihood; use Trace_ELBO, TraceMeanField_ELBO, "
                "or TraceGraph_ELBO, with any discrete latent sites marginalised by hand"
            )
        if self.plate is not None:
            selected = self._selected(msg)
            if selected is None:  # outside the data plate: not part of the forget set
                return
            msg["mask"] = selected if msg["mask"] is None else msg["mask"] & selected
        self._touched.add(msg["name"])
        msg["scale"] = self.weight * msg["scale"]
