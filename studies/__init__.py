"""Experiments run on avid_tf from a clone of the repository.

Studies test what the methods claim; they import the library like any user
code and are not part of the installed `avid_tf` package. Their entry points
are the `scripts/*_study.py` files.
"""
