"""Shared start-up of the command-line scripts.

Import this module before anything that imports TensorFlow: it hides
TensorFlow's C++ start-up chatter (unless TF_CPP_MIN_LOG_LEVEL is set) and
keeps library INFO logs off the console unless --verbosity asks for them.
A user's mistake (a bad path, gin binding or checkpoint, a NaN stop) is
reported as one line on stderr with exit status 1; --debug shows the
traceback instead.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

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
               NotADirectoryError, ValueError)


def error_message(error):
  """The one-line form of an error (gin appends the configurable's name)."""
  lines = str(error).strip().splitlines()
  return lines[0] if lines else type(error).__name__


def run(main):
  """Runs an absl `main(argv)` with quiet logs and one-line user errors."""

  def main_with_quiet_logs(argv):
    if not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)
    try:
      main(argv)
    except USER_ERRORS as error:
      if _DEBUG.value:
        raise
      print(f"Error: {error_message(error)} (--debug shows the traceback)",
            file=sys.stderr)
      sys.exit(1)

  app.run(main_with_quiet_logs)
