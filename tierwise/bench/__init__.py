"""Benchmarks shipped with the package (`tierwise bench ...`): figures, not pass/fail."""
