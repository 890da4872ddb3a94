"""Benchmarks: the backend side by side with its peers under one load generator (make bench)."""
