"""Parses gin files and bindings with one-line errors users can act on."""

import contextlib
import logging
import os

import gin

from avid_tf import errors




def _gin_root():
  """The experiment files: the checkout's gin/, else the installed copy."""
  package_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  checkout = os.path.join(os.path.dirname(package_dir), "gin")
  if os.path.isfile(os.path.join(checkout, "base.gin")):
    return checkout
  return os.path.join(package_dir, "gin")


GIN_ROOT = _gin_root()
_search_paths_added = set()


class GinConfigError(errors.UserError, ValueError):
  """Raised for a missing gin file or an unknown or malformed binding."""


class _DropIncludeProbes(logging.Filter):
  """Drops gin's "Path not found" errors logged while it probes search paths
  for an `include`d file (a file that is really missing still fails)."""

  def filter(self, record):
    return not record.getMessage().startswith("Path not found")


@contextlib.contextmanager
def isolated_config():
  """Leaves the caller's gin configuration as it was after the block.

  Loading a trained run parses that run's config.gin to rebuild its model;
  inside this block that parse cannot clear or change the bindings of the
  program that asked for the model (a quickstart, an evaluation script).
  gin has no public API to save a configuration, so the module state that
  `parse_config` and `clear_config` change is copied and put back.
  """
  # pylint: disable=protected-access
  config = {key: dict(values) for key, values in gin.config._CONFIG.items()}
  imports = set(gin.config._IMPORTS)
  operative = {key: dict(values)
               for key, values in gin.config._OPERATIVE_CONFIG.items()}
  locked = gin.config._CONFIG_IS_LOCKED
  try:
    yield
  finally:
    gin.config._CONFIG.clear()
    gin.config._CONFIG.update(config)
    gin.config._IMPORTS.clear()
    gin.config._IMPORTS.update(imports)
    gin.config._OPERATIVE_CONFIG.clear()
    gin.config._OPERATIVE_CONFIG.update(operative)
    gin.config._CONFIG_IS_LOCKED = locked


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
