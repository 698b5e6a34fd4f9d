"""Benchmarks of tinytf: run from the repository root as `python -m bench.<script>`."""
