"""Benchmark suites (not imported by the library itself)."""
