"""Benchmarks of avid_tf (kept apart from the product modules)."""
