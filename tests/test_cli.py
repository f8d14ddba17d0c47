"""Scripts report a user's mistake in one line; bugs keep their traceback."""

import subprocess
import sys

import pytest

from conftest import script_env

_PROGRAM = """
from avid_tf import cli
from avid_tf.training import callbacks, checkpointing


def main(argv):
  raise {error}


cli.run(main)
"""


def _run(error, *flags):
  return subprocess.run(
      [sys.executable, "-c", _PROGRAM.format(error=error), *flags],
      env=script_env(), capture_output=True, text=True, timeout=120,
      check=False)


@pytest.mark.parametrize("error, message", [
    ("callbacks.NonFiniteLossError('Loss became nan at step 3')",
     "Loss became nan at step 3"),
    ("checkpointing.CheckpointMismatchError('Checkpoint x holds 16 rows')",
     "Checkpoint x holds 16 rows"),
    ("FileNotFoundError('/data/x not found')", "/data/x not found"),
    ("ValueError('bad setting\\n  In call to configurable train')",
     "bad setting"),
])
def test_user_errors_are_one_line_with_exit_status_1(error, message):
  result = _run(error)
  assert result.returncode == 1
  assert "Traceback" not in result.stderr
  # TensorFlow's C++ start-up lines may come first; the error is the last.
  assert result.stderr.strip().splitlines()[-1] == (
      f"Error: {message} (--debug shows the traceback)")


def test_debug_shows_the_traceback_and_bugs_keep_theirs():
  debug = _run("ValueError('bad setting')", "--debug")
  assert debug.returncode != 0 and "Traceback" in debug.stderr
  bug = _run("KeyError('a bug')")
  assert bug.returncode != 0 and "Traceback" in bug.stderr
