"""Controlled studies of the papers' claims on the synthetic dataset."""
