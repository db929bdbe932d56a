"""pyro-unlearn: machine unlearning for Pyro models.

Remove the influence of a subset of the training data from a fitted posterior, from
the forget data only, and check how close the result comes to retraining.
"""

from . import errors, nn
from .api import UnlearnResult, available_methods, unlearn
from .diagnostics import (
    compare_posteriors,
    energy_distance,
    gap_closed,
    moment_matched,
    plot_posteriors,
    to_inference_data,
)
from .errors import (
    BadRequestError,
    ImproperTargetError,
    UnlearningError,
    UnreliableResultError,
    UnreliableResultWarning,
    UnsupportedPosteriorError,
)
from .fit import fit_laplace, fit_svi
from .flows import CholeskyAffine, fit_flow, flow_guide, flow_posterior, residual_flow
from .guides import FlatGaussian, GuideNotFittedError, LaplaceGuide, flat_gaussian, trainable_copy
from .handlers import AnchorMessenger, ForgetMessenger, RetainMessenger, anchor, forget, retain
from .infer import (
    EUBO,
    RKL,
    DegenerateWeightsError,
    ImportanceSamples,
    importance_samples,
    unlearning_model,
)
from .ledger import ForgetLedger, RepeatedDeletionError
from .methods.eubo import UnlearningDivergedError, eubo_unlearn
from .methods.laplace import NotPositiveDefiniteError, laplace_unlearn
from .methods.psis import psis_unlearn
from .methods.rkl import rkl_unlearn
from .methods.smc import SMCStalledError, smc_unlearn
from .models import BayesianLogisticRegression
from .posteriors import WeightedSamples
from .references import (
    BayesianLinearRegression,
    BetaBernoulli,
    GaussianPosterior,
    Reference,
    retrain,
)
from .targets import divided_target_check

__version__ = "0.1.0"

__all__ = [
    "BadRequestError",
    "ImproperTargetError",
    "UnlearningError",
    "UnreliableResultError",
    "UnsupportedPosteriorError",
    "UnreliableResultWarning",
    "errors",
    "EUBO",
    "RKL",
    "UnlearningDivergedError",
    "DegenerateWeightsError",
    "ImportanceSamples",
    "importance_samples",
    "unlearning_model",
    "divided_target_check",
    "eubo_unlearn",
    "rkl_unlearn",
    "AnchorMessenger",
    "BayesianLinearRegression",
    "BayesianLogisticRegression",
    "Reference",
    "fit_laplace",
    "fit_svi",
    "retrain",
    "BetaBernoulli",
    "FlatGaussian",
    "ForgetLedger",
    "ForgetMessenger",
    "GaussianPosterior",
    "GuideNotFittedError",
    "LaplaceGuide",
    "NotPositiveDefiniteError",
    "RepeatedDeletionError",
    "RetainMessenger",
    "UnlearnResult",
    "anchor",
    "available_methods",
    "flat_gaussian",
    "forget",
    "laplace_unlearn",
    "retain",
    "trainable_copy",
    "unlearn",
    "compare_posteriors",
    "energy_distance",
    "gap_closed",
    "moment_matched",
    "plot_posteriors",
    "to_inference_data",
    "WeightedSamples",
    "nn",
    "psis_unlearn",
    "smc_unlearn",
    "SMCStalledError",
    "CholeskyAffine",
    "fit_flow",
    "flow_guide",
    "flow_posterior",
    "residual_flow",
]
