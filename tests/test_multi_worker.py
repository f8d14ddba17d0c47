"""Two MultiWorkerMirroredStrategy processes on localhost train in lockstep.

Each worker is a subprocess (tests/multi_worker_main.py) with one CPU device
and a TF_CONFIG for a 2-worker cluster on free localhost ports; both call
`train_lib.train` with the same model_dir, as on a shared filesystem.

Reference run: under the cluster, worker j's replica trains on input
pipeline j's stream (pipeline j of 2 owns every other video) and batch norm
normalises over its own 2 clips of each 4-clip global batch. A single-device
run would draw its global batches from one stream over all videos and
normalise over 4 clips, so it does not compute the same thing. A
2-replica MirroredStrategy run over the two logical CPUs of this process
(tests/conftest.py), with replica j fed pipeline j's stream, does: same
global batches split the same way, same negatives (drawn per (seed, step)
for the global batch), same all-gathered bank updates. Its banks must match
the workers' up to float rounding.
"""

import glob
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from avid_tf.data import pipeline
from avid_tf.models import builders
from avid_tf.training import gin_utils
from avid_tf.training import strategy as strategy_lib
from avid_tf.training import train_lib
from conftest import script_env

WORKER_MAIN = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                           "multi_worker_main.py")
TINY_GIN = os.path.join(gin_utils.GIN_ROOT, "tests", "tiny.gin")
NUM_WORKERS = 2
MAX_STEPS = 3
# From the workers' start to their end (they take 1-2 minutes on two busy
# cores); a worker whose peer died would otherwise wait on its collectives.
WORKERS_TIMEOUT_S = 300


def _bindings(dataset_dir):
  # tiny.gin: global batch 4, 16 videos, checkpoints every 2 steps.
  return [f"train.dataset_dir = '{dataset_dir}'",
          f"train.max_steps = {MAX_STEPS}"]


def _free_ports(count):
  sockets = [socket.socket() for _ in range(count)]
  for sock in sockets:
    sock.bind(("localhost", 0))
  ports = [sock.getsockname()[1] for sock in sockets]
  for sock in sockets:
    sock.close()
  return ports


def _log_tails(log_paths, chars=3000):
  tails = []
  for path in log_paths:
    with open(path, errors="replace") as f:
      tails.append(f"--- {path} (tail) ---\n{f.read()[-chars:]}")
  return "\n".join(tails)


class _Cluster:
  """The two worker processes, started at construction.

  The in-process reference run can go on while they train; `results` waits
  for them and fails (never hangs) if they do not finish in time.
  """

  def __init__(self, work_dir, bindings):
    cluster = {"worker": [f"localhost:{port}"
                          for port in _free_ports(NUM_WORKERS)]}
    self.model_dir = os.path.join(work_dir, "run")
    self._outputs = [os.path.join(work_dir, f"worker{i}")
                     for i in range(NUM_WORKERS)]
    self._log_paths = [output + ".log" for output in self._outputs]
    self._deadline = time.monotonic() + WORKERS_TIMEOUT_S
    self._results = None
    self._processes = []
    try:
      for index, output in enumerate(self._outputs):
        env = script_env(TF_CONFIG=json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}}))
        with open(self._log_paths[index], "w") as log:
          self._processes.append(subprocess.Popen(
              [sys.executable, WORKER_MAIN, f"--model_dir={self.model_dir}",
               f"--output={output}"] +
              [f"--gin_bindings={binding}" for binding in bindings],
              env=env, stdout=log, stderr=subprocess.STDOUT))
    except BaseException:
      self.kill()
      raise

  def kill(self):
    for process in self._processes:
      if process.poll() is None:
        process.kill()
      process.wait()

  def results(self):
    """Returns [(banks dict, summary dict)] per worker, chief first."""
    if self._results is None:
      # Stops at the first failure: its peer would only wait for it.
      while (time.monotonic() < self._deadline and
             any(p.poll() is None for p in self._processes) and
             not any(p.poll() for p in self._processes)):
        time.sleep(0.5)
      self.kill()
      codes = [p.returncode for p in self._processes]
      if any(codes):
        pytest.fail(f"Workers exited with {codes} (negative: killed after "
                    f"{WORKERS_TIMEOUT_S} s or after a peer failed).\n" +
                    _log_tails(self._log_paths))
      self._results = []
      for output in self._outputs:
        with np.load(output + ".npz") as banks, open(output + ".json") as f:
          self._results.append((dict(banks), json.load(f)))
    return self._results


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, tiny_dataset_dir):
  workers = _Cluster(str(tmp_path_factory.mktemp("multi_worker")),
                     _bindings(tiny_dataset_dir))
  yield workers
  workers.kill()


def _checkpoint_banks(path):
  reader = tf.train.load_checkpoint(path)
  banks = {}
  for name, _ in tf.train.list_variables(path):
    if name.startswith("model/") and "bank" in name:
      banks["video" if "video" in name else "audio"] = reader.get_tensor(name)
  return banks


@pytest.mark.slow
def test_banks_match_a_mirrored_run_of_the_same_global_batches(
    cluster, tmp_path, tiny_dataset_dir, monkeypatch):
  # Runs while the workers train.
  make_train_dataset = pipeline.make_train_dataset

  def worker_streams_interleaved(*args, input_context=None, **kwargs):
    if input_context is None:  # train() reading the element spec.
      return make_train_dataset(*args, **kwargs)
    streams = tuple(
        make_train_dataset(*args, input_context=tf.distribute.InputContext(
            NUM_WORKERS, worker, NUM_WORKERS), **kwargs)
        for worker in range(NUM_WORKERS))
    # One input pipeline feeds the replicas in turn: replica j gets worker
    # j's batch of every step.
    return tf.data.Dataset.zip(streams).flat_map(
        lambda *batches: tf.data.Dataset.from_tensor_slices(
            tf.nest.map_structure(lambda *x: tf.stack(x), *batches)))

  models = []
  build_av_model = builders.build_av_model

  def build_and_keep(*args, **kwargs):
    models.append(build_av_model(*args, **kwargs))
    return models[-1]

  monkeypatch.setattr(pipeline, "make_train_dataset",
                      worker_streams_interleaved)
  monkeypatch.setattr(
      strategy_lib, "get_strategy",
      lambda name: tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
  monkeypatch.setattr(builders, "build_av_model", build_and_keep)
  gin_utils.parse_gin([TINY_GIN], _bindings(tiny_dataset_dir) +
                      ["train.strategy = 'mirrored'"])
  summary = train_lib.train(str(tmp_path))
  assert summary["steps"] == MAX_STEPS
  worker_banks = cluster.results()[0][0]
  for name, bank in models[-1].banks.items():
    np.testing.assert_allclose(bank.bank.numpy(), worker_banks[name],
                               atol=1e-5, err_msg=name)


@pytest.mark.slow
def test_workers_finish_with_bit_identical_banks(cluster):
  (chief_banks, chief_summary), (other_banks, other_summary) = cluster.results()
  assert chief_summary["steps"] == other_summary["steps"] == MAX_STEPS
  assert sorted(chief_banks) == sorted(other_banks) == ["audio", "video"]
  for name, rows in chief_banks.items():
    assert rows.shape == (16, 16)
    np.testing.assert_array_equal(other_banks[name], rows, err_msg=name)
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
  # Logs are averaged over all workers, so the NaN guard sees one loss.
  assert chief_summary["final_logs"] == other_summary["final_logs"]
  assert np.isfinite(chief_summary["final_logs"]["loss"])


def test_only_the_chief_writes_the_model_dir(cluster):
  results = cluster.results()
  model_dir = cluster.model_dir
  checkpoint_dir = os.path.join(model_dir, train_lib.CHECKPOINT_SUBDIR)
  state = tf.train.get_checkpoint_state(checkpoint_dir)
  assert [os.path.basename(p) for p in state.all_model_checkpoint_paths] == [
      "ckpt-2", f"ckpt-{MAX_STEPS}"]
  chief_banks = results[0][0]
  for name, rows in _checkpoint_banks(state.model_checkpoint_path).items():
    np.testing.assert_array_equal(rows, chief_banks[name], err_msg=name)
  # The other worker's temporary checkpoint folder is gone.
  assert sorted(os.listdir(checkpoint_dir)) == [
      "checkpoint", "ckpt-2.data-00000-of-00001", "ckpt-2.index",
      "ckpt-3.data-00000-of-00001", "ckpt-3.index"]
  assert len(glob.glob(os.path.join(model_dir, "train",
                                    "events.out.tfevents.*"))) == 1
  with open(os.path.join(model_dir, "config.gin")) as f:
    assert "train.strategy = 'multi_worker'" in f.read()
  with open(os.path.join(model_dir, "train_summary.json")) as f:
    assert json.load(f)["steps"] == MAX_STEPS
