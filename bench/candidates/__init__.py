"""Benchmark candidates: each a small program run as its own process by `bench.run`."""
