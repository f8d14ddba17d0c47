"""Benchmarks of avid_tf, run from a clone by scripts/benchmark.py.

Like studies/, they import the library as user code does and are not part
of the installed `avid_tf` package.
"""
