"""Benchmarks: each prints the project's figure beside a baseline measured in the same run, as a ratio."""
