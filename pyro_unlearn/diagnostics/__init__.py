"""Checking unlearning against retraining: metrics, ArviZ conversion, plots."""

from .metrics import energy_distance, gap_closed, moment_matched

__all__ = ["energy_distance", "gap_closed", "moment_matched"]
