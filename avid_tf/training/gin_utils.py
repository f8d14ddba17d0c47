"""Parses gin files and bindings with one-line errors users can act on."""

import os

import gin

# Imported for its side effect: registers every configurable of a run.
from avid_tf.training import train_lib  # pylint: disable=unused-import


GIN_ROOT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
        __file__)))), "gin")
_search_paths_added = set()


class GinConfigError(ValueError):
  """Raised for a missing gin file or an unknown or malformed binding."""


def parse_gin(gin_files=(), gin_bindings=()):
  """Parses gin files, then bindings, in one call.

  Args:
    gin_files: paths of gin files, applied in order.
    gin_bindings: binding strings applied after the files.

  Raises:
    GinConfigError: naming the offending file or binding.
  """
  for path in gin_files:
    if not os.path.isfile(path):
      raise GinConfigError(f"Gin file not found: {path}")
  gin.clear_config()
  # `include` lines resolve against the repository's gin/ folder and the
  # folder of each given file.
  for path in [GIN_ROOT] + [os.path.dirname(os.path.abspath(p))
                            for p in gin_files]:
    if path not in _search_paths_added:
      gin.add_config_file_search_path(path)
      _search_paths_added.add(path)
  try:
    gin.parse_config_files_and_bindings(list(gin_files), list(gin_bindings))
  except (ValueError, KeyError, SyntaxError, TypeError) as e:
    message = " ".join(str(e).split())
    raise GinConfigError(f"Bad gin configuration: {message}") from e
