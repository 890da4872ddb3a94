"""Peer servers measured with the same load generator and workload as the backend."""
