"""Tests for benchmarks.pytorch_pairs and --what=pytorch_pairs."""

import json
import os
import sys

import pytest

from avid_tf import errors
from benchmarks import pytorch_pairs
from conftest import REPO
from conftest import run_script

SCRIPT = os.path.join(REPO, "scripts", "benchmark.py")

# Appends its name to a log and prints the clips/s of its n-th run.
_FAKE_BENCHMARK = """
import json, sys
log, name, speeds = sys.argv[1], sys.argv[2], sys.argv[3:]
with open(log, "a") as f:
  f.write(name + "\\n")
with open(log) as f:
  run = [line.strip() for line in f].count(name) - 1
print("warming up")
print(json.dumps({"clips_per_second": float(speeds[run]), "name": name}))
"""

# Makes `import torch` fail in the interpreter it wraps.
_NO_TORCH_SITECUSTOMIZE = """
import sys
class NoTorch:
  def find_spec(self, name, path=None, target=None):
    if name == "torch" or name.startswith("torch."):
      raise ImportError("No module named 'torch'")
sys.meta_path.insert(0, NoTorch())
"""


def _fake(log, name, *speeds):
  return [sys.executable, "-c", _FAKE_BENCHMARK, str(log), name,
          *map(str, speeds)]


def test_runs_alternate_and_the_ratio_is_of_the_medians(tmp_path):
  log = tmp_path / "log"
  result = pytorch_pairs.alternate_pairs(
      _fake(log, "tf", 12.0, 10.0, 11.0), _fake(log, "pt", 8.0, 10.0, 5.0),
      pairs=3, show_progress=False)
  assert log.read_text().split() == ["tf", "pt"] * 3
  assert result["tensorflow_clips_per_second"] == [12.0, 10.0, 11.0]
  assert result["pytorch_clips_per_second"] == [8.0, 10.0, 5.0]
  assert (result["tensorflow_median"], result["pytorch_median"]) == (11.0,
                                                                    8.0)
  assert result["ratio"] == pytest.approx(11.0 / 8.0, abs=1e-3)
  assert result["pair_ratios"] == pytest.approx([1.5, 1.0, 2.2], abs=1e-3)
  assert result["median_pair_ratio"] == pytest.approx(1.5, abs=1e-3)
  assert len(result["load_average"]) == 6
  assert result["tensorflow_run"]["name"] == "tf"
  json.dumps(result)


def test_a_failing_run_is_an_error_naming_it():
  with pytest.raises(RuntimeError, match="status 3"):
    pytorch_pairs.run_json_command(
        [sys.executable, "-c", "import sys; sys.exit(3)"])
  with pytest.raises(RuntimeError, match="no clips_per_second"):
    pytorch_pairs.run_json_command([sys.executable, "-c", "print('{}')"])


def test_commands_use_the_reference_shapes_on_both_sides():
  tensorflow_command, tensorflow_env, pytorch_command, pytorch_env = (
      pytorch_pairs.reference_commands(
          SCRIPT, "/opt/torch/bin/python", batch_size=4, steps=5,
          mixed_precision="mixed_bfloat16"))
  assert tensorflow_command[1:4] == [SCRIPT, "--what=train_step",
                                     "--batch_size=4"]
  for flag in ("--steps=5", "--frames=8", "--crop=112", "--video_depth=18",
               "--num_data=10000", "--num_negatives=1024",
               "--audio_seconds=2.0", "--mixed_precision=mixed_bfloat16",
               "--nojit_compile"):
    assert flag in tensorflow_command, flag
  assert tensorflow_env["PYTHONPATH"].split(os.pathsep)[0] == REPO
  assert pytorch_command == ["/opt/torch/bin/python",
                             pytorch_pairs.REFERENCE_SCRIPT]
  assert os.path.isfile(pytorch_pairs.REFERENCE_SCRIPT)
  assert (pytorch_env["B"], pytorch_env["STEPS"]) == ("4", "5")
  with pytest.raises(errors.UserError, match="no PyTorch reference"):
    pytorch_pairs.reference_commands(SCRIPT, "python",
                                     reference_script="/nonexistent.py")


def _run_script(*flags):
  return run_script("benchmark.py", "--what=pytorch_pairs", *flags)


def test_missing_torch_is_a_one_line_error(tmp_path):
  (tmp_path / "sitecustomize.py").write_text(_NO_TORCH_SITECUSTOMIZE)
  python = tmp_path / "python_without_torch"
  python.write_text(f"#!/bin/sh\nPYTHONPATH={tmp_path} exec "
                    f"{sys.executable} \"$@\"\n")
  python.chmod(0o755)
  result = _run_script(f"--pytorch_python={python}")
  assert result.returncode == 1
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and "torch is not importable" in lines[0]


def test_shape_flags_are_refused():
  result = _run_script("--frames=4", "--crop=32")
  assert result.returncode == 1
  last_line = result.stderr.strip().splitlines()[-1]
  assert "fixed shapes" in last_line and "--frames, --crop" in last_line
