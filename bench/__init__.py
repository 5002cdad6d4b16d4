"""Benchmarks of defstate: a project generator and a runner (`python -m bench.run`)."""
