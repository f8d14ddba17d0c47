"""Shared start-up of the command-line scripts.

Import this module before anything that imports TensorFlow: it hides
TensorFlow's C++ start-up chatter (unless TF_CPP_MIN_LOG_LEVEL is set) and
keeps library INFO logs off the console unless --verbosity asks for them.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags  # pylint: disable=g-import-not-at-top
from absl import logging  # pylint: disable=g-import-not-at-top


def run(main):
  """Runs an absl `main(argv)` with warnings-only logging by default."""

  def main_with_quiet_logs(argv):
    if not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)
    main(argv)

  app.run(main_with_quiet_logs)
