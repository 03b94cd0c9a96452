"""Benchmarks: run by hand (`make bench`) or one at a time with `python -m benchmarks.NAME`."""
