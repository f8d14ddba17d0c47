"""Scripts report a user's mistake in one line; bugs keep their traceback."""

import os
import subprocess
import sys

from absl import flags
import pytest

from avid_tf import cli
from avid_tf import errors
from avid_tf.training import callbacks
from avid_tf.training import checkpointing
from avid_tf.training import gin_utils
from conftest import REPO
from conftest import script_env


@pytest.fixture
def run_main(monkeypatch):
  """Runs `cli.run` in this process on a main that raises `error`."""
  def run(error, *arguments):
    def main(argv):
      del argv
      raise error
    monkeypatch.setattr(sys, "argv", ["program", *arguments])
    cli.run(main)
  yield run
  flags.FLAGS.unparse_flags()


@pytest.mark.parametrize("error", [
    callbacks.NonFiniteLossError("Loss became nan at step 3"),
    checkpointing.CheckpointMismatchError("Checkpoint x holds 16 rows"),
    gin_utils.GinConfigError("Bad gin configuration: No configurable "
                             "matching 'trian'."),
    errors.InvalidValueError("num_negatives must be >= 1, got 0\n"
                             "  In call to configurable 'train'"),
    FileNotFoundError("/data/x not found"),
    FileExistsError("/runs/x exists"),
    NotADirectoryError("/data/x.txt is not a folder"),
    IsADirectoryError("/data is a folder"),
    PermissionError("/root/x: permission denied"),
])
def test_user_errors_are_one_line_with_exit_status_1(run_main, capsys, error):
  with pytest.raises(SystemExit) as exit_request:
    run_main(error)
  assert exit_request.value.code == 1
  first_line = str(error).splitlines()[0]
  assert capsys.readouterr().err == (
      f"Error: {first_line} (--debug shows the traceback)\n")


@pytest.mark.parametrize("error", [
    ValueError("Shapes (4, 128) and (4, 64) are incompatible"),
    KeyError("a bug"), TypeError("a bug"), RuntimeError("a bug")])
def test_other_errors_keep_their_traceback(run_main, error):
  """An internal ValueError (a shape bug, say) is not a user's mistake."""
  # Uncaught, Python prints the traceback and exits with status 1.
  with pytest.raises(type(error)):
    run_main(error)


def test_debug_shows_the_traceback_of_a_user_error(run_main):
  with pytest.raises(FileNotFoundError):
    run_main(FileNotFoundError("/data/x not found"), "--debug")


def test_help_exits_with_status_0(run_main, capsys):
  with pytest.raises(SystemExit) as exit_request:
    run_main(AssertionError("main must not run"), "--help")
  assert exit_request.value.code == 0
  assert "--helpfull" in capsys.readouterr().out


@pytest.mark.slow
def test_a_script_prints_one_line_and_no_tensorflow_chatter(tmp_path):
  """A fresh process: TensorFlow's C++ start-up lines are hidden too."""
  env = script_env()
  env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # The test session sets its own.
  missing = os.path.join(tmp_path, "missing.gin")
  result = subprocess.run(
      [sys.executable, os.path.join(REPO, "scripts", "train.py"),
       f"--gin_file={missing}", f"--model_dir={tmp_path}/run"],
      env=env, capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 1
  assert result.stderr == (f"Error: Gin file not found: {missing} "
                           "(--debug shows the traceback)\n")
