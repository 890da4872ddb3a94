"""Running the real Pulumi CLI with the toolchain this project builds (``python -m
infra.engine``)."""
