"""Benchmarks: `python -m bench <name>` or `python -m bench all`; results go to bench/results/<name>.json."""
