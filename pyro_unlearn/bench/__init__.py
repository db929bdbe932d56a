"""Benchmark suites (not imported by the library itself)."""


def format_notes(row: dict, keys) -> str:
    """``key=value`` for the diagnostics of a result row named in ``keys``, for a table cell."""
    return ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items() if k in keys
    )
