"""pyro-unlearn: machine unlearning for Pyro models.

Remove the influence of a subset of the training data from a fitted posterior, from
the forget data only, and check how close the result comes to retraining.

The namespace is grouped the Pyro way; the top level holds the entry points:

* :mod:`~pyro_unlearn.handlers`: the effect handlers ``forget``, ``retain``, ``anchor``;
* :mod:`~pyro_unlearn.infer`: the objectives as Pyro losses (``EUBO``, ``RKL``);
* :mod:`~pyro_unlearn.methods`: one function per method (``laplace_unlearn``, ...), which
  :func:`unlearn` dispatches to;
* :mod:`~pyro_unlearn.references`: closed-form posteriors and retraining;
* :mod:`~pyro_unlearn.diagnostics`: the check against retraining, in ArviZ;
* :mod:`~pyro_unlearn.classifiers`: unlearning for trained torch classifiers;
* :mod:`~pyro_unlearn.errors`: one exception hierarchy.
"""

from . import classifiers, diagnostics, errors, flows, handlers, infer, methods, references
from .api import UnlearnResult, available_methods, unlearn
from .certificate import Certificate, certify
from .diagnostics import compare_posteriors, moment_matched, plot_posteriors, to_inference_data
from .errors import (
    BadRequestError,
    DegenerateWeightsError,
    ImproperTargetError,
    SMCStalledError,
    TargetNotReachedError,
    UnknownOptionError,
    UnlearningDivergedError,
    UnlearningError,
    UnreliableResultError,
    UnreliableResultWarning,
    UnsupportedPosteriorError,
)
from .fit import fit_flow, fit_laplace, fit_svi
from .flows import flow_posterior
from .gaussian import FlatGaussian
from .guides import GuideNotFittedError, LaplaceGuide, flat_gaussian
from .handlers import anchor, forget, retain
from .infer import EUBO, RKL
from .ledger import ForgetLedger, RepeatedDeletionError
from .methods import laplace_unlearn
from .methods.laplace import NotPositiveDefiniteError
from .model_eval import MissingLatentError, ModelEvaluationError
from .models import BayesianLogisticRegression
from .options import Family, Method, OnUnreliable
from .posteriors import PosteriorView, WeightedSamples, posterior_view
from .references import BayesianLinearRegression, retrain
from .targets import divided_target_check

__version__ = "0.1.0"

__all__ = [
    # groups
    "classifiers",
    "diagnostics",
    "errors",
    "flows",
    "handlers",
    "infer",
    "methods",
    "references",
    # unlearning
    "unlearn",
    "available_methods",
    "UnlearnResult",
    "Method",
    "Family",
    "OnUnreliable",
    "ForgetLedger",
    "laplace_unlearn",
    "divided_target_check",
    "certify",
    "Certificate",
    # handlers and objectives
    "forget",
    "retain",
    "anchor",
    "EUBO",
    "RKL",
    # fitting and posteriors
    "fit_svi",
    "fit_laplace",
    "fit_flow",
    "posterior_view",
    "PosteriorView",
    "FlatGaussian",
    "LaplaceGuide",
    "WeightedSamples",
    "flat_gaussian",
    "flow_posterior",
    # references and checks
    "retrain",
    "BayesianLinearRegression",
    "BayesianLogisticRegression",
    "compare_posteriors",
    "to_inference_data",
    "plot_posteriors",
    "moment_matched",
    # errors
    "UnlearningError",
    "BadRequestError",
    "UnknownOptionError",
    "UnsupportedPosteriorError",
    "UnreliableResultError",
    "UnreliableResultWarning",
    "ImproperTargetError",
    "DegenerateWeightsError",
    "UnlearningDivergedError",
    "SMCStalledError",
    "TargetNotReachedError",
    "NotPositiveDefiniteError",
    "GuideNotFittedError",
    "RepeatedDeletionError",
    "ModelEvaluationError",
    "MissingLatentError",
]
