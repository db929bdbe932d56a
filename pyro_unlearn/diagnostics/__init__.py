"""Checking unlearning against retraining: metrics, ArviZ conversion, plots."""

from .compare import compare_posteriors, predictive_kl
from .inference_data import posterior_draws, to_inference_data
from .metrics import energy_distance, gap_closed, moment_matched
from .plots import forget_predictive_means, plot_posteriors

__all__ = [
    "compare_posteriors",
    "energy_distance",
    "forget_predictive_means",
    "gap_closed",
    "moment_matched",
    "plot_posteriors",
    "posterior_draws",
    "predictive_kl",
    "to_inference_data",
]
