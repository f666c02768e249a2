"""Benchmarks: `make bench` (full) and `make bench-quick`."""
