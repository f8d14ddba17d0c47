"""Parses gin files and bindings with one-line errors users can act on."""

import logging
import os

import gin


GIN_ROOT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
        __file__)))), "gin")
_search_paths_added = set()


class GinConfigError(ValueError):
  """Raised for a missing gin file or an unknown or malformed binding."""


class _DropIncludeProbes(logging.Filter):
  """Drops gin's "Path not found" errors logged while it probes search paths
  for an `include`d file (a file that is really missing still fails)."""

  def filter(self, record):
    return not record.getMessage().startswith("Path not found")


def _register_configurables():
  """Imports every module that defines gin configurables.

  Imported here rather than at the top because those modules import this
  one.
  """
  # pylint: disable=g-import-not-at-top,unused-import
  from avid_tf import quickstart
  from avid_tf.training import train_lib


def parse_gin(gin_files=(), gin_bindings=(), skip_unknown=False):
  """Parses gin files, then bindings, in one call.

  Args:
    gin_files: paths of gin files, applied in order.
    gin_bindings: binding strings applied after the files.
    skip_unknown: ignore bindings of configurables this program does not
      define (used to read back another program's operative config).

  Raises:
    GinConfigError: naming the offending file or binding.
  """
  _register_configurables()
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
  probe_filter = _DropIncludeProbes()
  logging.getLogger().addFilter(probe_filter)
  try:
    gin.parse_config_files_and_bindings(list(gin_files), list(gin_bindings),
                                        skip_unknown=skip_unknown)
  except (ValueError, KeyError, SyntaxError, TypeError) as e:
    message = " ".join(str(e).split())
    raise GinConfigError(f"Bad gin configuration: {message}") from e
  finally:
    logging.getLogger().removeFilter(probe_filter)
