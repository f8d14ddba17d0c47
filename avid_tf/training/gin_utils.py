"""Parses gin files and bindings with one-line errors users can act on."""

import contextlib
import logging
import os

import gin
from gin import config_parser

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
    with _as_config_error("Bad gin configuration"):
      for path in gin_files:
        gin.parse_config_file(path, skip_unknown=skip_unknown)
    # One binding at a time, so that an error names the binding it is in.
    for binding in gin_bindings:
      with _as_config_error(f"Bad gin binding \"{binding}\""):
        gin.parse_config(binding, skip_unknown=skip_unknown)
    with _as_config_error("Bad gin configuration"):
      gin.finalize()
  finally:
    logging.getLogger().removeFilter(probe_filter)


@contextlib.contextmanager
def _as_config_error(what):
  """Turns gin's parse errors into one-line `GinConfigError`s.

  A value gin cannot parse is most often an unquoted string (a path), so
  that message says how to quote it.
  """
  try:
    yield
  except (ValueError, KeyError, SyntaxError, TypeError) as e:
    message = " ".join(str(e).split())
    if "Unable to parse value" in message:
      message += " (strings, paths included, need quotes: name = '/a/path')"
    raise GinConfigError(f"{what}: {message}") from e


class _ReadOnlyDelegate(config_parser.ParserDelegate):
  """Keeps `@references` and `%macros` as text: nothing is looked up."""

  def configurable_reference(self, scoped_name, evaluate):
    return f"@{scoped_name}{'()' if evaluate else ''}"

  def macro(self, name):
    return f"%{name}"


def bindings(config_text):
  """The bindings of a gin configuration's text, without applying them.

  Args:
    config_text: gin text, e.g. a run's config.gin or
      `gin.operative_config_str()`.

  Returns:
    {"scope/selector.argument": value}; references and macros as text.
  """
  found = {}
  for statement in config_parser.ConfigParser(config_text,
                                              _ReadOnlyDelegate()):
    if isinstance(statement, config_parser.BindingStatement):
      scope = f"{statement.scope}/" if statement.scope else ""
      found[f"{scope}{statement.selector}.{statement.arg_name}"] = (
          statement.value)
  return found


def changed_bindings(recorded_text, current_text, ignore=()):
  """The bindings both texts set to different values.

  Args:
    recorded_text: the recorded configuration (a run's config.gin).
    current_text: the configuration now.
    ignore: binding names allowed to differ.

  Returns:
    Sorted ["name: <recorded> recorded, <current> now", ...].
  """
  recorded, current = bindings(recorded_text), bindings(current_text)
  return [f"{name}: {recorded[name]!r} recorded, {current[name]!r} now"
          for name in sorted(set(recorded) & set(current))
          if name not in ignore and recorded[name] != current[name]]
