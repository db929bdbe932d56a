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
* SalUn: random-label fine-tuning on :math:`D_r \cup D_f` of the weights whose forget-loss
  gradient is largest (:func:`weight_saliency`).
* Class distillation: distillation from the trained network conditioned on the forgotten
  classes' absence on :math:`D_f`, and from the trained network on a replay of :math:`D_r`
  (whole classes only; :mod:`~pyro_unlearn.classifiers.class_distillation`).
* SCRUB: distillation from the trained network, away from it on :math:`D_f`, towards it
  (and the labels) on :math:`D_r`.
* :math:`\ell_1`-sparse: fine-tuning on :math:`D_r` with a decaying :math:`\ell_1` penalty
  (never reads :math:`D_f`).
* Fine-tuning and retraining use the retained data :math:`D_r` (baselines).

SalUn, class distillation, SCRUB and :math:`\ell_1`-sparse take the retained data as
``x_retain=``, ``y_retain=`` options of :func:`~pyro_unlearn.unlearn`.

:data:`UNLEARN_METHODS` holds their ``unlearn(..., method=name)`` forms for the API's table.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ..errors import BadRequestError
from .class_distillation import class_distillation
from .instance import instance_unlearn
from .jit import jit
from .pbu import neggrad, pbu
from .salun import salun
from .scrub import scrub
from .sparse import l1_sparse
from .ssd import ssd


def _unlearn_form(name: str, fn: Callable, reads: str = "inputs and labels") -> Callable:
    """``unlearn(ClassifierModel(net), net, x_forget, y_forget, method=name)`` for ``fn``,
    which ``reads`` the forget set's inputs and labels, its inputs only, or neither."""

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
            raise BadRequestError(
                f"method={name!r} takes the forget examples themselves, not a mask"
            )
        if not isinstance(net, nn.Module):
            raise TypeError(
                f"method={name!r} unlearns a trained torch network: pass it as the posterior"
            )
        forget = {"inputs and labels": (x_forget, y_forget), "inputs": (x_forget,), "none": ()}
        return fn(net, *forget[reads], **options)

    method.__name__ = f"{name}_method"
    method.__wrapped__ = fn  # its options, for inspect.signature
    return method


UNLEARN_METHODS: dict[str, Callable] = {
    "pbu": _unlearn_form("pbu", pbu),
    "neggrad": _unlearn_form("neggrad", neggrad),
    "jit": _unlearn_form("jit", jit, reads="inputs"),
    "ssd": _unlearn_form("ssd", ssd),
    "instance": _unlearn_form("instance", instance_unlearn),
    "salun": _unlearn_form("salun", salun),
    "class_distillation": _unlearn_form("class_distillation", class_distillation),
    "scrub": _unlearn_form("scrub", scrub),
    "l1_sparse": _unlearn_form("l1_sparse", l1_sparse, reads="none"),
}
