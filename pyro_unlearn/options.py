"""The options of the methods, as documented str Enums (a base module: it imports only errors).

Each option accepts its Enum member or the plain string (``Family.DIAGONAL == "diagonal"``);
:func:`choose` checks a value against its Enum before any work and names the choices.

>>> Family("diagonal") is Family.DIAGONAL, Family.DIAGONAL == "diagonal"
(True, True)
>>> choose(OnUnreliable, "loud", "on_unreliable")
Traceback (most recent call last):
...
pyro_unlearn.errors.BadRequestError: on_unreliable must be one of ('raise', 'warn', 'ignore'), got 'loud'
"""

from __future__ import annotations

from enum import StrEnum

from .errors import BadRequestError


class _Option(StrEnum):
    @classmethod
    def values(cls) -> tuple[str, ...]:
        return tuple(member.value for member in cls)


class Method(_Option):
    """``unlearn(..., method=...)``: the unlearning method."""

    LAPLACE = "laplace"  #: Laplace downdate of the precision (exact on conjugate models)
    EUBO = "eubo"  #: minimise the EUBO (VBU) from the old posterior
    RKL = "rkl"  #: reverse KL to the divided-out target, by importance sampling
    SMC = "smc"  #: tempered sequential Monte Carlo from the old posterior
    PSIS = "psis"  #: Pareto-smoothed reweighting of MCMC draws
    PBU = "pbu"  #: point-estimate Bayesian unlearning of a classifier
    JIT = "jit"  #: Lipschitz (JiT) unlearning of a classifier
    NEGGRAD = "neggrad"  #: gradient ascent on the forget set
    SSD = "ssd"  #: selective synaptic dampening
    INSTANCE = "instance"  #: instance-wise unlearning with adversarial examples
    SALUN = "salun"  #: saliency-masked random-label fine-tuning
    CLASS_DISTILLATION = "class_distillation"  #: distillation without the forgotten classes
    SCRUB = "scrub"  #: teacher-student distillation, away on the forget set
    L1_SPARSE = "l1_sparse"  #: fine-tuning on the retained data with an l1 penalty


class OnUnreliable(_Option):
    """What a method does with a result it judges unreliable."""

    RAISE = "raise"  #: raise the UnreliableResultError (the default)
    WARN = "warn"  #: return it flagged (``result.reliable is False``) with a warning
    IGNORE = "ignore"  #: return it flagged, silently


class Family(_Option):
    """The family of the unlearned guide (``family=``)."""

    DELTA = "delta"  #: a point (AutoDelta)
    DIAGONAL = "diagonal"  #: mean-field Gaussian (AutoNormal)
    MULTIVARIATE = "multivariate"  #: full-covariance Gaussian (AutoMultivariateNormal)
    LOWRANK = "lowrank"  #: low-rank plus diagonal Gaussian (AutoLowRankMultivariateNormal)
    FLOW = "flow"  #: a residual normalizing flow on top of the old posterior


class Hessian(_Option):
    """How Laplace unlearning computes the forget-set curvature (``hessian=``)."""

    FULL = "full"  #: the exact Hessian of the forget-set negative log-likelihood
    DIAG = "diag"  #: its diagonal
    GGN = "ggn"  #: the generalised Gauss-Newton matrix (positive semi-definite)


class PSDRepair(_Option):
    """What Laplace unlearning does when the downdated precision is not positive definite."""

    RAISE = "raise"  #: raise NotPositiveDefiniteError, naming the repairs
    CLIP = "clip"  #: clip its eigenvalues at a floor and report how many


class Optimizer(_Option):
    """How EUBO minimises its objective (``optimizer=``)."""

    NATURAL = "natural"  #: closed-form natural-gradient steps (Gaussian families)
    ADAM = "adam"  #: Adam on reparameterised draws (any family)


class Start(_Option):
    """Where EUBO and rKL start (``init=`` / ``proposal=``)."""

    FULL = "full"  #: the old posterior
    LAPLACE = "laplace"  #: the one-step Laplace unlearning solution


class Variant(_Option):
    """A classifier method as the library runs it, or as its authors' code does."""

    LIBRARY = "library"  #: the library's defaults (documented per method, with the difference)
    AUTHORS = "authors"  #: the authors' published code, step for step


def choose(option: type[_Option], value, name: str) -> _Option:
    """``option(value)``, or a :class:`BadRequestError` naming ``name`` and the choices."""
    try:
        return option(value)
    except ValueError:
        raise BadRequestError(f"{name} must be one of {option.values()}, got {value!r}") from None
