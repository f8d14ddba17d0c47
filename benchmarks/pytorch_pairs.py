"""avid_tf's training step against the PyTorch reference step, alternated.

`alternate_pairs` runs two benchmark commands in turn, each in a fresh
process (TensorFlow, PyTorch, TensorFlow, PyTorch, ...), reads the JSON
line each one prints last and reports every run's clips/s, the medians and
their ratio. Alternating in one session spreads a shared machine's load
over both sides; a fresh process per run keeps one side's thread pools,
caches and allocator out of the other's timings. Both commands exclude
their own warm-up steps (3 untimed steps each).

scripts/benchmark.py --what=pytorch_pairs builds the two commands:
`--what=train_step` of that script at the reference's fixed shapes and
benchmarks/pytorch_reference_step.py run by an interpreter that has torch.
"""

import json
import os
import statistics
import subprocess
import sys

import tqdm

import avid_tf
from avid_tf import errors

# The fixed sizes of benchmarks/pytorch_reference_step.py (it only takes
# the batch size and the number of steps from its environment).
REFERENCE_SIZES = {"num_frames": 8, "crop_size": 112, "audio_seconds": 2.0,
                   "video_depth": 18, "num_data": 10000,
                   "num_negatives": 1024}
REFERENCE_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "pytorch_reference_step.py")


def check_importable(python, module="torch"):
  """Raises UserError unless `python -c "import <module>"` succeeds."""
  try:
    completed = subprocess.run([python, "-c", f"import {module}"],
                               capture_output=True, text=True, check=False)
  except OSError as error:
    raise errors.UserError(f"cannot run {python!r}: {error}") from error
  if completed.returncode:
    raise errors.UserError(
        f"{module} is not importable by {python} (the PyTorch comparison "
        f"needs it: pip install torch, a CPU build is enough, or pass "
        f"--pytorch_python=<an interpreter that has it>)")


def run_json_command(command, env=None):
  """Runs `command` and returns the JSON object of its last stdout line.

  Raises:
    RuntimeError: when it fails or its last line is not a JSON object.
  """
  completed = subprocess.run(command, capture_output=True, text=True,
                             env=env, check=False)
  lines = completed.stdout.strip().splitlines()
  if completed.returncode or not lines:
    raise RuntimeError(
        f"{' '.join(command)} failed (status {completed.returncode}): "
        f"{completed.stderr.strip()[-2000:]}")
  try:
    result = json.loads(lines[-1])
  except json.JSONDecodeError as error:
    raise RuntimeError(f"{' '.join(command)} printed no JSON last line: "
                       f"{lines[-1][:200]!r}") from error
  if not isinstance(result, dict) or "clips_per_second" not in result:
    raise RuntimeError(f"{' '.join(command)} reported no clips_per_second: "
                       f"{lines[-1][:200]!r}")
  return result


def alternate_pairs(tensorflow_command, pytorch_command, pairs=3,
                    tensorflow_env=None, pytorch_env=None,
                    show_progress=True):
  """Runs the two commands alternately and compares their clips/s.

  Args:
    tensorflow_command: argv of the avid_tf benchmark (prints JSON with
      clips_per_second last).
    pytorch_command: argv of the PyTorch benchmark (same contract).
    pairs: TensorFlow-then-PyTorch pairs (>= 1; >= 3 for a median worth
      quoting).
    tensorflow_env: environment of the avid_tf runs (None: this
      process's).
    pytorch_env: environment of the PyTorch runs (None: this process's).
    show_progress: draw a progress bar over the runs.

  Returns:
    dict: tensorflow_clips_per_second and pytorch_clips_per_second (one
    entry per run, in order), tensorflow_median and pytorch_median,
    ratio (tensorflow_median / pytorch_median), pair_ratios and
    median_pair_ratio (run by run), load_average (1-minute load before
    each run, in run order), pairs, and tensorflow_run (the last avid_tf
    result, for its settings).

  Raises:
    ValueError: for pairs < 1.
    RuntimeError: when a run fails.
  """
  if pairs < 1:
    raise errors.InvalidValueError(f"pairs must be >= 1, got {pairs}")
  tensorflow_runs, pytorch_runs, loads = [], [], []
  with tqdm.tqdm(total=2 * pairs, desc="alternated runs", unit="run",
                 disable=not show_progress) as bar:
    for _ in range(pairs):
      for runs, command, env in ((tensorflow_runs, tensorflow_command,
                                  tensorflow_env),
                                 (pytorch_runs, pytorch_command,
                                  pytorch_env)):
        loads.append(round(os.getloadavg()[0], 2))
        runs.append(run_json_command(command, env=env))
        bar.update()
  tensorflow_speeds = [run["clips_per_second"] for run in tensorflow_runs]
  pytorch_speeds = [run["clips_per_second"] for run in pytorch_runs]
  tensorflow_median = statistics.median(tensorflow_speeds)
  pytorch_median = statistics.median(pytorch_speeds)
  pair_ratios = [t / p for t, p in zip(tensorflow_speeds, pytorch_speeds)]
  return {
      "tensorflow_clips_per_second": tensorflow_speeds,
      "pytorch_clips_per_second": pytorch_speeds,
      "tensorflow_median": tensorflow_median,
      "pytorch_median": pytorch_median,
      "ratio": round(tensorflow_median / pytorch_median, 3),
      "pair_ratios": [round(r, 3) for r in pair_ratios],
      "median_pair_ratio": round(statistics.median(pair_ratios), 3),
      "load_average": loads,
      "pairs": pairs,
      "cores": os.cpu_count(),
      "tensorflow_run": tensorflow_runs[-1],
  }


def reference_commands(benchmark_script, pytorch_python, batch_size=8,
                       steps=10, mixed_precision="none", jit_compile=False,
                       reference_script=REFERENCE_SCRIPT):
  """argv and environment of both sides at the reference's shapes.

  Args:
    benchmark_script: path of scripts/benchmark.py (run with this
      interpreter, --what=train_step).
    pytorch_python: interpreter that has torch.
    batch_size: clips per step, both sides.
    steps: timed steps, both sides (each adds 3 untimed warm-up steps).
    mixed_precision: avid_tf's Keras policy (PyTorch stays float32).
    jit_compile: compile avid_tf's step with XLA.
    reference_script: the PyTorch benchmark.

  Returns:
    (tensorflow_command, tensorflow_env, pytorch_command, pytorch_env); the
    avid_tf runs import the avid_tf of this process (PYTHONPATH).

  Raises:
    errors.UserError: when the reference script is missing.
  """
  if not os.path.isfile(reference_script):
    raise errors.UserError(
        f"no PyTorch reference step at {reference_script} (it is a file of "
        f"the repository checkout, benchmarks/pytorch_reference_step.py)")
  sizes = REFERENCE_SIZES
  tensorflow_command = [
      sys.executable, benchmark_script, "--what=train_step",
      f"--batch_size={batch_size}", f"--steps={steps}",
      f"--frames={sizes['num_frames']}", f"--crop={sizes['crop_size']}",
      f"--audio_seconds={sizes['audio_seconds']}",
      f"--video_depth={sizes['video_depth']}",
      f"--num_data={sizes['num_data']}",
      f"--num_negatives={sizes['num_negatives']}",
      f"--mixed_precision={mixed_precision}",
      "--jit_compile" if jit_compile else "--nojit_compile"]
  package_root = os.path.dirname(os.path.dirname(avid_tf.__file__))
  tensorflow_env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      [package_root] + [path for path in [os.environ.get("PYTHONPATH")]
                        if path]))
  pytorch_env = dict(os.environ, B=str(batch_size), STEPS=str(steps))
  return (tensorflow_command, tensorflow_env,
          [pytorch_python, reference_script], pytorch_env)
