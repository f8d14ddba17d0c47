"""Shared start-up of the command-line scripts.

Import this module before anything that imports TensorFlow: it hides
TensorFlow's C++ start-up chatter below FATAL (unless TF_CPP_MIN_LOG_LEVEL
is set) and keeps library INFO logs off the console unless --verbosity asks
for them (XLA's C++ start-up lines included). A user's mistake, an `avid_tf.errors.UserError` (gin
configuration errors and the library's invalid values included) or a
missing, existing or unreadable path, is reported as one line on stderr
with exit status 1; --debug shows the traceback instead. A run stopped by
a signal after saving its state (`avid_tf.errors.Interrupted`) prints its
one line and exits with 128 + the signal's number. Every other
exception, a plain ValueError included, is a bug and keeps its traceback.
`--help` exits 0.
"""

import os

# 3 = FATAL only: hides the "Unable to register cuFFT/cuDNN/cuBLAS factory"
# errors and the INFO/WARNING lines a CPU-only start prints. XLA's "I0000"
# lines come from absl's C++ logging, which this variable does not reach
# (`_start_xla_quietly`).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import sys  # pylint: disable=g-import-not-at-top,wrong-import-order

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags  # pylint: disable=g-import-not-at-top
from absl import logging  # pylint: disable=g-import-not-at-top

from avid_tf import errors  # pylint: disable=g-import-not-at-top

_DEBUG = flags.DEFINE_bool(
    "debug", False,
    "Show the full traceback of an error instead of a one-line message.")

# Raised for paths, settings and inputs the user gave; anything else is a
# bug and keeps its traceback.
USER_ERRORS = (errors.UserError, FileNotFoundError, FileExistsError,
               NotADirectoryError, IsADirectoryError, PermissionError)

# absl's help flags, which print the usage and exit.
_HELP_FLAGS = frozenset(f"{dashes}{name}" for dashes in ("-", "--")
                        for name in ("help", "helpshort", "helpfull",
                                     "helpxml", "?"))


def error_message(error):
  """The one-line form of an error (gin appends the configurable's name)."""
  lines = str(error).strip().splitlines()
  return lines[0] if lines else type(error).__name__


def _parse_flags(argv):
  """absl's flag parsing, except that asking for help exits with status 0."""
  try:
    return app.parse_flags_with_usage(argv)
  except SystemExit as exit_request:
    arguments = argv[1:argv.index("--")] if "--" in argv else argv[1:]
    if exit_request.code == 1 and _HELP_FLAGS.intersection(arguments):
      sys.exit(0)
    raise


_xla_started = False


def _start_xla_quietly():
  """Starts XLA once, with the process's stderr muted meanwhile.

  XLA's start-up lines ("I0000 ... XLA service ... initialized", "Compiled
  cluster using XLA!") come from C++ logging that TF_CPP_MIN_LOG_LEVEL does
  not reach, once per process, at the first XLA compilation (the input
  pipeline's). A trivial compilation here, with file descriptor 2 pointing
  at /dev/null, spends them.
  """
  global _xla_started
  if _xla_started:
    return
  _xla_started = True
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  sys.stderr.flush()
  saved = os.dup(2)
  try:
    with open(os.devnull, "w") as devnull:
      os.dup2(devnull.fileno(), 2)
      tf.function(lambda x: x + 1.0, jit_compile=True)(tf.constant(0.0))
  finally:
    os.dup2(saved, 2)
    os.close(saved)


def run(main):
  """Runs an absl `main(argv)` with quiet logs and one-line user errors."""

  def main_with_quiet_logs(argv):
    if not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)
      _start_xla_quietly()
    try:
      main(argv)
    except errors.Interrupted as interruption:
      print(error_message(interruption), file=sys.stderr)
      sys.exit(128 + interruption.signal_number)
    except USER_ERRORS as error:
      if _DEBUG.value:
        raise
      print(f"Error: {error_message(error)} (--debug shows the traceback)",
            file=sys.stderr)
      sys.exit(1)

  app.run(main_with_quiet_logs, flags_parser=_parse_flags)
