"""Benchmark suites (not imported by the library itself)."""

import math


def format_notes(row: dict, keys) -> str:
    """``key=value`` for the diagnostics of a result row named in ``keys``, for a table cell."""
    return ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items() if k in keys
    )


def rounded(value, digits: int = 4):
    """``value`` with every float rounded to ``digits`` significant digits (for the JSON)."""
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(v, digits) for v in value]
    if isinstance(value, float) and math.isfinite(value) and value != 0:
        return float(f"{value:.{digits}g}")
    return value
