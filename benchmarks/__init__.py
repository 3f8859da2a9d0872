"""Benchmarks run by `make bench`: targets measured side by side, never timed assertions."""
