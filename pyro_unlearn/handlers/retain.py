"""The retain handler: drop the forget elements from the likelihood (retraining)."""

from __future__ import annotations

from ..masks import MaskLike
from .plate_mask import PlateMaskMessenger


class RetainMessenger(PlateMaskMessenger):
    r"""Keep only the retained elements :math:`D_r = D \setminus D_e` of plate ``plate``.

    The log joint becomes :math:`\log p(\theta) + \sum_{i \notin D_e} \log p(y_i \mid \theta)`,
    the model a retraining reference sees, computed on the full data arrays. The forget
    elements are *masked*, not scaled by zero, so a :math:`-\infty` log-likelihood on a
    forgotten point never turns into NaN.

        >>> import torch, pyro, pyro.distributions as dist
        >>> from pyro_unlearn.handlers import retain
        >>> x = torch.tensor([0.5, 2.0, 0.25])
        >>> def model(x):
        ...     with pyro.plate("data", len(x)):
        ...         uniform = dist.Uniform(0.0, 1.0, validate_args=False)
        ...         pyro.sample("y", uniform, obs=x)  # log p = -inf at 2.0
        >>> drop = torch.tensor([False, True, False])
        >>> tr = pyro.poutine.trace(retain(model, mask=drop, plate="data")).get_trace(x)
        >>> tr.log_prob_sum()
        tensor(0.)

    Parameters
    ----------
    mask : bool tensor or integer index tensor
        The forget elements to drop, over the full size of plate ``plate``. An all-False
        mask keeps everything (retraining on all data reproduces the original fit).
    plate : str or int
        Name of the data plate (observed sites outside it are kept whole), or the batch
        dimension that indexes the data of an observed vector outside any plate (``-1``).
    """

    allow_empty = True

    def __init__(self, mask: MaskLike, plate: str | int) -> None:
        super().__init__(mask, plate)

    def _pyro_sample(self, msg) -> None:
        if not msg["is_observed"]:
            return
        selected = self._selected(msg)
        if selected is None:  # outside the data plate: kept whole
            return
        kept = ~selected
        msg["mask"] = kept if msg["mask"] is None else msg["mask"] & kept
