"""End-to-end tests of the training entry: gin, checkpoints, resume, NaN."""

import glob
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

from avid_tf import errors
from avid_tf import runs
from avid_tf.data import augmentation
from avid_tf.data import preprocessing
from avid_tf.data import schema
from avid_tf.eval import finetune_data
from avid_tf.models import av_model
from avid_tf.models import builders
from avid_tf.training import callbacks as callbacks_lib
from avid_tf.training import checkpointing
from avid_tf.training import gin_utils
from avid_tf.training import train_lib
from conftest import REPO
from conftest import run_script
from conftest import script_env

TINY_GIN = os.path.join(gin_utils.GIN_ROOT, "tests", "tiny.gin")


def _train(model_dir, dataset_dir, *bindings):
  gin_utils.parse_gin([TINY_GIN], [f"train.dataset_dir = '{dataset_dir}'",
                                   *bindings])
  return train_lib.train(str(model_dir))


def _bank_values(model_dir):
  path = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
  reader = tf.train.load_checkpoint(path)
  return {name: reader.get_tensor(name)
          for name, _ in tf.train.list_variables(path)
          if name.startswith("model/") and "bank" in name}


@pytest.mark.slow
def test_train_writes_checkpoints_config_and_events(tmp_path,
                                                    tiny_dataset_dir):
  summary = _train(tmp_path, tiny_dataset_dir, "train.epochs = 2")
  # 16 videos x 1 clip / batch 4 = 4 steps per epoch.
  assert summary["steps"] == 8
  assert os.path.isfile(tmp_path / "config.gin")
  assert "train.batch_size = 4" in (tmp_path / "config.gin").read_text()
  assert glob.glob(str(tmp_path / "train" / "events.out.tfevents.*"))
  banks = _bank_values(str(tmp_path))
  assert len(banks) == 2
  for rows in banks.values():
    assert rows.shape == (16, 16)
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
  logs = summary["final_logs"]
  for key in ("loss", "loss_v2a", "loss_a2v", "partition",
              "positive_agreement", "learning_rate"):
    assert np.isfinite(logs[key]), key
  assert logs["partition"] > 0


@pytest.mark.slow
def test_interrupted_run_resumes_at_the_right_step(tmp_path,
                                                   tiny_dataset_dir):
  straight = tmp_path / "straight"
  _train(straight, tiny_dataset_dir, "train.epochs = 2")
  interrupted = tmp_path / "interrupted"
  # Stops after 3 steps (mid-epoch, checkpoint at step 2 and at the stop).
  first = _train(interrupted, tiny_dataset_dir, "train.epochs = 2",
                 "train.max_steps = 3")
  assert first["steps"] == 3
  resumed = _train(interrupted, tiny_dataset_dir, "train.epochs = 2")
  assert resumed["steps"] == 8
  expected = _bank_values(str(straight))
  actual = _bank_values(str(interrupted))
  for name, value in expected.items():
    np.testing.assert_allclose(actual[name], value, atol=1e-5, err_msg=name)


@pytest.mark.slow
def test_resume_with_another_dataset_size_fails_clearly(tmp_path,
                                                        tiny_dataset_dir):
  _train(tmp_path / "run", tiny_dataset_dir, "train.max_steps = 1")
  from conftest import write_tiny_dataset  # pylint: disable=g-import-not-at-top
  other = write_tiny_dataset(tmp_path / "other", num_train=12)
  with pytest.raises(checkpointing.CheckpointMismatchError, match="12 training"):
    _train(tmp_path / "run", other, "train.max_steps = 1")


@pytest.mark.slow
def test_resume_with_another_architecture_fails_clearly(tmp_path,
                                                        tiny_dataset_dir):
  _train(tmp_path / "run", tiny_dataset_dir, "train.max_steps = 1")
  with pytest.raises(checkpointing.CheckpointMismatchError,
                     match="another architecture"):
    _train(tmp_path / "run", tiny_dataset_dir, "train.max_steps = 1",
           "build_encoders.width_multiplier = 0.25")


@pytest.mark.slow
def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path,
                                                       tiny_dataset_dir,
                                                       monkeypatch):
  original_train_step = av_model.AVModel.train_step

  def train_step_with_nan_from_step_3(self, data):
    logs = original_train_step(self, data)
    step = self.optimizer.iterations  # Already incremented by this step.
    logs["loss"] = tf.where(step >= 3, float("nan"), logs["loss"])
    return logs

  monkeypatch.setattr(av_model.AVModel, "train_step",
                      train_step_with_nan_from_step_3)
  with pytest.raises(callbacks_lib.NonFiniteLossError,
                     match="at step 3.*ckpt-2"):
    _train(tmp_path, tiny_dataset_dir, "train.epochs = 2")
  state = tf.train.get_checkpoint_state(os.path.join(tmp_path, "checkpoints"))
  assert state.model_checkpoint_path.endswith("ckpt-2")


def _truncate_data(prefix):
  (data,) = glob.glob(prefix + ".data-*")
  with open(data, "r+b") as f:
    f.truncate(os.path.getsize(data) // 2)
  with open(data, "rb") as f:
    return f.read()


def _warnings(caplog, phrase):
  return [r.getMessage() for r in caplog.records
          if r.levelname == "WARNING" and phrase in r.getMessage()]


@pytest.mark.slow
def test_damaged_newest_checkpoint_resumes_from_the_previous_one(
    tmp_path, tiny_dataset_dir, caplog):
  straight = tmp_path / "straight"
  _train(straight, tiny_dataset_dir, "train.epochs = 2")
  run = tmp_path / "damaged"
  _train(run, tiny_dataset_dir, "train.epochs = 2", "train.max_steps = 3")
  checkpoints = str(run / "checkpoints")
  damaged_bytes = _truncate_data(os.path.join(checkpoints, "ckpt-3"))
  caplog.clear()
  resumed = _train(run, tiny_dataset_dir, "train.epochs = 2",
                   "train.max_checkpoints = 2")
  (warning,) = _warnings(caplog, "is damaged")
  assert "ckpt-3 is damaged (IndexError" in warning
  assert "restored " + os.path.join(checkpoints, "ckpt-2") in warning
  assert "\n" not in warning
  assert not _warnings(caplog, "crop size")  # 32 px crops of 40 px frames
  # Resumed at step 2 and trained on to the end, as an uninterrupted run.
  assert resumed["steps"] == 8
  expected = _bank_values(str(straight))
  actual = _bank_values(str(run))
  for name, value in expected.items():
    np.testing.assert_allclose(actual[name], value, atol=1e-5, err_msg=name)
  # The damaged files are kept, out of the manager's way: saves at steps 4,
  # 6 and 8 kept the newest two of them and deleted ckpt-2.
  (data,) = glob.glob(os.path.join(checkpoints, "ckpt-3.damaged.data-*"))
  with open(data, "rb") as f:
    assert f.read() == damaged_bytes
  assert os.path.isfile(os.path.join(checkpoints, "ckpt-3.damaged.index"))
  state = tf.train.get_checkpoint_state(checkpoints)
  assert [os.path.basename(p) for p in state.all_model_checkpoint_paths] == [
      "ckpt-6", "ckpt-8"]
  assert sorted(name for name in os.listdir(checkpoints)
                if name.endswith(".index")) == [
                    "ckpt-3.damaged.index", "ckpt-6.index", "ckpt-8.index"]
  # A later resume finds nothing damaged.
  caplog.clear()
  assert _train(run, tiny_dataset_dir, "train.epochs = 2")["steps"] == 8
  assert not _warnings(caplog, "is damaged")


@pytest.mark.slow
def test_readers_of_a_run_skip_a_damaged_checkpoint_and_leave_it(
    tmp_path, tiny_dataset_dir, avid_run, caplog):
  run = tmp_path / "run"
  shutil.copytree(avid_run, run)
  checkpoints = str(run / "checkpoints")
  newest = os.path.join(checkpoints, "ckpt-3")
  _truncate_data(newest)
  listing = sorted(os.listdir(checkpoints))
  state = (run / "checkpoints" / "checkpoint").read_text()

  assert checkpointing.resolve_checkpoint(str(run)) == os.path.join(
      checkpoints, "ckpt-2")
  (warning,) = _warnings(caplog, "is damaged")
  assert newest in warning and "left as they are" in warning
  model = runs.open_run(str(run)).model()
  reader = tf.train.load_checkpoint(os.path.join(checkpoints, "ckpt-2"))
  key = [name for name, _ in tf.train.list_variables(checkpoints)
         if "video_bank" in name][0]
  np.testing.assert_array_equal(model.video_bank.bank.numpy(),
                                reader.get_tensor(key))
  # Read-only: nothing renamed, the state still names the damaged one.
  assert sorted(os.listdir(checkpoints)) == listing
  assert (run / "checkpoints" / "checkpoint").read_text() == state

  with pytest.raises(checkpointing.DamagedCheckpointError, match="ckpt-3"):
    checkpointing.resolve_checkpoint(newest)
  _truncate_data(os.path.join(checkpoints, "ckpt-2"))
  with pytest.raises(checkpointing.DamagedCheckpointError,
                     match="No checkpoint of .* reads completely"):
    checkpointing.resolve_checkpoint(str(run))
  with pytest.raises(checkpointing.DamagedCheckpointError,
                     match="No checkpoint in .* reads completely"):
    _train(run, tiny_dataset_dir, "train.max_steps = 4")
  assert sorted(os.listdir(checkpoints)) == listing


@pytest.mark.slow
def test_crop_larger_than_the_stored_frames_warns_once(
    tmp_path, tiny_dataset_dir, caplog):
  _train(tmp_path, tiny_dataset_dir, "train.max_steps = 1",
         "clip_preprocessing.crop_size = 48")
  (warning,) = _warnings(caplog, "crop size")
  assert "crop size 48 exceeds the short side 40" in warning
  assert "--short_side=55" in warning


def test_bn_groups_that_do_not_divide_the_replica_batch_fail_early(
    tmp_path, tiny_dataset_dir):
  with pytest.raises(ValueError, match="per-replica batch of 4 clips is not "
                     "a multiple of build_encoders.bn_virtual_batch_size = 3"):
    _train(tmp_path, tiny_dataset_dir, "build_encoders.bn_virtual_batch_size "
           "= 3")
  assert not os.path.isdir(tmp_path / "checkpoints")


def test_released_recipes_pin_clip_timing_and_bn_groups(tiny_dataset_dir):
  from avid_tf import quickstart  # pylint: disable=g-import-not-at-top,unused-import
  dataset = schema.DatasetInfo.load(tiny_dataset_dir)
  for name, groups in (("avid/kinetics_cross.gin", 32),
                       ("avid/audioset_cross.gin", 20),
                       ("quickstart.gin", None)):
    gin_utils.parse_gin([os.path.join(gin_utils.GIN_ROOT, name)], [])
    with gin.unlock_config():
      geometry = preprocessing.clip_preprocessing(dataset)
      video, audio = builders.build_encoders()
    assert geometry.frame_rate == 16 and geometry.clip_seconds == 0.5, name
    assert video.bn_virtual_batch_size == groups, name
    assert audio.bn_virtual_batch_size == groups, name
    gin.clear_config()


def test_unknown_gin_binding_is_a_clear_error():
  with pytest.raises(gin_utils.GinConfigError, match="no_such_param"):
    gin_utils.parse_gin([TINY_GIN], ["train.no_such_param = 1"])
  with pytest.raises(gin_utils.GinConfigError, match="missing.gin"):
    gin_utils.parse_gin(["missing.gin"], [])


@pytest.mark.parametrize("path", sorted(glob.glob(
    os.path.join(gin_utils.GIN_ROOT, "**", "*.gin"), recursive=True)))
def test_every_gin_file_parses_and_builds(path):
  # The quickstart's files also configure `run_quickstart`, the evaluation
  # files `finetune`, the claims benchmark's its MLP encoders.
  from avid_tf import quickstart  # pylint: disable=g-import-not-at-top,unused-import
  from studies import latent_training  # pylint: disable=g-import-not-at-top,unused-import
  from avid_tf.eval import finetune  # pylint: disable=g-import-not-at-top,unused-import
  gin_utils.parse_gin([path], [])
  from avid_tf.models import builders  # pylint: disable=g-import-not-at-top
  with gin.unlock_config():
    model = builders.build_av_model(num_data=64)
    # The configuration objects the files bind, checked.
    augmentation.clip_augmentation()
    if os.sep + "eval" + os.sep in path:
      finetune_data.finetune_clips()
      finetune.finetune_schedule()
  assert model.num_data == 64
  gin.clear_config()


CMA_BINDINGS = ("build_objective.name = 'cma'",
                "build_cma_objective.num_positives = 2",
                "build_cma_objective.num_negatives = 6",
                "build_cma_objective.num_positive_set_negatives = 3",
                "build_cma_objective.resample_every_epochs = 1")


def _variables(model_dir, prefix):
  path = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
  reader = tf.train.load_checkpoint(path)
  return {name: reader.get_tensor(name)
          for name, _ in tf.train.list_variables(path)
          if name.startswith(prefix)}


@pytest.fixture(scope="module")
def avid_run(tmp_path_factory, tiny_dataset_dir):
  model_dir = tmp_path_factory.mktemp("avid_stage")
  _train(model_dir, tiny_dataset_dir, "train.max_steps = 3")
  return str(model_dir)


class _FirstStepState(keras.callbacks.Callback):
  """Records the model and optimizer state before the first step."""

  def on_train_begin(self, logs=None):
    if hasattr(self, "initial"):
      return
    model = self.model
    self.initial = {
        "video_bank": model.video_bank.bank.numpy(),
        "partition": float(model.objective.partition.numpy()),
        "iterations": int(model.optimizer.iterations.numpy()),
        "weights": [w.numpy() for w in model.trainable_weights],
    }


@pytest.mark.slow
def test_init_from_copies_weights_banks_and_z_with_a_fresh_optimizer(
    tmp_path, tiny_dataset_dir, avid_run):
  recorder = _FirstStepState()
  gin_utils.parse_gin([TINY_GIN], [f"train.dataset_dir = '{tiny_dataset_dir}'",
                                   *CMA_BINDINGS])
  summary = train_lib.train(str(tmp_path / "cma"), init_from=avid_run,
                            callbacks=[recorder])
  assert summary["steps"] == 4
  source = _variables(avid_run, "model/")
  bank = [v for k, v in source.items() if "video_bank" in k][0]
  np.testing.assert_array_equal(recorder.initial["video_bank"], bank)
  partition = [v for k, v in source.items() if "objective.Spartition" in k][0]
  assert recorder.initial["partition"] == pytest.approx(float(partition))
  assert recorder.initial["iterations"] == 0
  # The extra callback ran; Z stayed frozen through the CMA steps.
  after = _variables(str(tmp_path / "cma"), "model/objective")
  assert float(after["model/objective.Spartition/.ATTRIBUTES/"
                     "VARIABLE_VALUE"]) == pytest.approx(float(partition))
  logs = summary["final_logs"]
  assert {"loss_inst_x_v2a", "loss_pos_w_v2v"} <= set(logs)
  # 4 classes x 4 training videos, sets of 2: chance 3 / 15.
  precision = summary["epoch_logs"][-1][1]
  assert precision["positive_set_precision_chance"] == pytest.approx(0.2)


@pytest.mark.slow
def test_cma_stage_resumes_exactly_with_its_positive_sets(
    tmp_path, tiny_dataset_dir, avid_run):
  bindings = [f"train.dataset_dir = '{tiny_dataset_dir}'", "train.epochs = 2",
              *CMA_BINDINGS]

  def run(model_dir, *extra):
    gin_utils.parse_gin([TINY_GIN], bindings + list(extra))
    return train_lib.train(str(model_dir), init_from=avid_run)

  run(tmp_path / "straight")
  # Stops mid-epoch 1 (after the refresh at its start), then resumes; the
  # second call must not re-initialise from the AVID run.
  first = run(tmp_path / "interrupted", "train.max_steps = 6")
  assert first["steps"] == 6
  resumed = run(tmp_path / "interrupted")
  assert resumed["steps"] == 8
  # The summary spans both sessions: epoch 0's values come from the first.
  straight = train_lib._earlier_summary(str(tmp_path / "straight"), 8, 4,
                                        True)
  assert [e for e, _ in resumed["epoch_logs"]] == [0, 1]
  for (_, values), (_, reference) in zip(resumed["epoch_logs"],
                                         straight["epoch_logs"]):
    assert values.keys() == reference.keys()
    assert values["positive_set_precision"] == pytest.approx(
        reference["positive_set_precision"])
  assert resumed["train_seconds"] > first["train_seconds"]
  # A rerun of the finished run trains nothing and keeps what was recorded.
  again = run(tmp_path / "interrupted")
  assert again["steps"] == 8
  assert again["epoch_logs"] == [tuple(e) for e in resumed["epoch_logs"]]
  assert again["train_seconds"] == pytest.approx(resumed["train_seconds"],
                                                 abs=1.0)
  assert again["final_logs"] == pytest.approx(resumed["final_logs"])
  expected = _variables(str(tmp_path / "straight"), "model/")
  actual = _variables(str(tmp_path / "interrupted"), "model/")
  assert any("positive_sets" in name for name in expected)
  for name, value in expected.items():
    np.testing.assert_allclose(actual[name], value, atol=1e-5, err_msg=name)


@pytest.mark.slow
def test_init_from_another_dataset_size_or_architecture_fails_clearly(
    tmp_path, tiny_dataset_dir, avid_run):
  from conftest import write_tiny_dataset  # pylint: disable=g-import-not-at-top
  other = write_tiny_dataset(tmp_path / "other", num_train=12)
  gin_utils.parse_gin([TINY_GIN], [f"train.dataset_dir = '{other}'",
                                   "train.max_steps = 1", *CMA_BINDINGS])
  with pytest.raises(checkpointing.CheckpointMismatchError,
                     match="16 rows but the dataset has 12"):
    train_lib.train(str(tmp_path / "size"), init_from=avid_run)
  gin_utils.parse_gin([TINY_GIN], [
      f"train.dataset_dir = '{tiny_dataset_dir}'", "train.max_steps = 1",
      "build_encoders.width_multiplier = 0.25", *CMA_BINDINGS])
  with pytest.raises(checkpointing.CheckpointMismatchError,
                     match="has shape .* there and .* here"):
    train_lib.train(str(tmp_path / "width"), init_from=avid_run)
  with pytest.raises(FileNotFoundError, match="neither a training run"):
    train_lib.train(str(tmp_path / "nowhere"),
                    init_from=str(tmp_path / "no_such_run"))


@pytest.mark.slow
def test_init_from_a_run_without_the_inherited_state_fails_clearly(
    tmp_path, tiny_dataset_dir):
  gin_utils.parse_gin([TINY_GIN], [
      f"train.dataset_dir = '{tiny_dataset_dir}'", "train.max_steps = 1",
      "build_objective.name = 'robust_xid'",
      "build_robust_xid_objective.num_negatives = 4"])
  train_lib.train(str(tmp_path / "xid"))
  gin_utils.parse_gin([TINY_GIN], [f"train.dataset_dir = '{tiny_dataset_dir}'",
                                   "train.max_steps = 1", *CMA_BINDINGS])
  with pytest.raises(checkpointing.CheckpointMismatchError,
                     match="no objective state 'objective/partition'"):
    train_lib.train(str(tmp_path / "cma"), init_from=str(tmp_path / "xid"))


@pytest.mark.slow
def test_cma_from_scratch_is_a_clear_error(tmp_path, tiny_dataset_dir):
  gin_utils.parse_gin([TINY_GIN], [f"train.dataset_dir = '{tiny_dataset_dir}'",
                                   "train.max_steps = 1", *CMA_BINDINGS])
  with pytest.raises(ValueError, match="init_from"):
    train_lib.train(str(tmp_path / "cma"))


@pytest.mark.parametrize("binding, message", [
    ("train.epochs = -1", "train.epochs must be an integer >= 1, got -1"),
    ("train.batch_size = 'x'",
     "train.batch_size must be an integer >= 1, got 'x'"),
    ("train.clips_per_video = 0",
     "train.clips_per_video must be an integer >= 1, got 0"),
    ("train.batch_size = 4.0",
     "train.batch_size must be an integer >= 1, got 4.0"),
    ("train.learning_rate = 0.0", "train.learning_rate must be a number > 0"),
    ("train.max_steps = 0", "train.max_steps must be an integer >= 1"),
    ("train.strategy = 'tpu'", "train.strategy must be one of"),
    ("train.mixed_precision = 'float8'", "train.mixed_precision must be one"),
    ("train.jit_compile = 'yes'", "train.jit_compile must be True or False"),
    ("train.lr_decay_epochs = 3", "train.lr_decay_epochs must be a tuple"),
])
def test_bad_train_values_are_user_errors_naming_the_binding(
    tmp_path, tiny_dataset_dir, binding, message):
  model_dir = tmp_path / "run"
  with pytest.raises(errors.UserError, match=re.escape(message)) as error:
    _train(model_dir, tiny_dataset_dir, binding)
  # gin appends "In call to configurable 'train'" on a line of its own.
  assert str(error.value).splitlines()[0].startswith(message)
  assert not model_dir.exists()


class _Failure(keras.callbacks.Callback):
  """Records the precision policy during training, then fails."""

  def on_train_batch_end(self, batch, logs=None):
    self.policy = keras.mixed_precision.global_policy().name
    raise RuntimeError("stop here")


def _draws():
  return random.random(), float(np.random.rand())


def test_train_restores_the_global_policy_and_random_state(tmp_path,
                                                           tiny_dataset_dir):
  keras.mixed_precision.set_global_policy("float32")
  random.seed(7)
  np.random.seed(7)
  expected = _draws()
  random.seed(7)
  np.random.seed(7)
  summary = _train(tmp_path / "run", tiny_dataset_dir,
                   "train.mixed_precision = 'mixed_bfloat16'",
                   "train.max_steps = 1")
  assert summary["steps"] == 1
  assert keras.mixed_precision.global_policy().name == "float32"
  assert _draws() == expected
  failure = _Failure()
  gin_utils.parse_gin([TINY_GIN], [
      f"train.dataset_dir = '{tiny_dataset_dir}'",
      "train.mixed_precision = 'mixed_bfloat16'"])
  with pytest.raises(RuntimeError, match="stop here"):
    train_lib.train(str(tmp_path / "failing"), callbacks=[failure])
  assert failure.policy == "mixed_bfloat16"
  assert keras.mixed_precision.global_policy().name == "float32"


@pytest.mark.parametrize("arguments, message", [
    (["--gin_bindings=trian.epochs = 2"], "trian"),
    (["--gin_file=no_such.gin"], "no_such.gin"),
    (["--gin_bindings=train.dataset_dir = '/no/such/dataset'"],
     "/no/such/dataset"),
    (["--dataset_dir=/no/such/dataset"], "/no/such/dataset"),
    # The flag wins over the binding.
    (["--gin_bindings=train.dataset_dir = '/elsewhere'",
      "--dataset_dir=/no/such/dataset"], "/no/such/dataset"),
    ([], "train.dataset_dir"),
    (["--gin_bindings=train.dataset_dir = /no/quotes"],
     "train.dataset_dir = /no/quotes"),
])
def test_train_script_reports_mistakes_in_one_line(tmp_path, arguments,
                                                   message):
  result = run_script("train.py", f"--gin_file={TINY_GIN}",
                      f"--model_dir={tmp_path / 'run'}", *arguments)
  assert result.returncode == 1
  lines = result.stderr.strip().splitlines()
  assert "Traceback" not in result.stderr
  assert lines[-1].startswith("Error: ") and message in lines[-1]
  # Nothing is created for inputs that do not check out.
  assert not (tmp_path / "run").exists()


def test_a_rerun_with_other_settings_refuses_and_a_finished_one_writes_nothing(
    tmp_path, tiny_run_dir, tiny_dataset_dir):
  model_dir = tmp_path / "run"
  shutil.copytree(tiny_run_dir, model_dir)
  before = {path.name: path.read_bytes() for path in model_dir.rglob("*")
            if path.is_file()}
  with pytest.raises(errors.UserError,
                     match=r"train.batch_size: 4 recorded, 8 now"):
    _train(model_dir, tiny_dataset_dir, "train.max_steps = 2",
           "train.batch_size = 8")
  with pytest.raises(errors.UserError,
                     match=r"clip_preprocessing.num_frames: 4 recorded, 2 now"):
    _train(model_dir, tiny_dataset_dir, "train.max_steps = 2",
           "clip_preprocessing.num_frames = 2")
  # The same settings: the run has finished, and nothing is written (no
  # empty TensorBoard event file, no rewritten config.gin or summary).
  summary = _train(model_dir, tiny_dataset_dir, "train.max_steps = 2")
  assert summary["steps"] == 2 and summary["history"] == []
  after = {path.name: path.read_bytes() for path in model_dir.rglob("*")
           if path.is_file()}
  assert after == before


class _SignalAt(keras.callbacks.Callback):
  """Sends this process a signal at the end of one step."""

  def __init__(self, step, signal_number=signal.SIGINT):
    super().__init__()
    self._step, self._signal_number = step, signal_number

  def on_train_batch_end(self, batch, logs=None):
    if int(self.model.optimizer.iterations.numpy()) == self._step:
      os.kill(os.getpid(), self._signal_number)


def _logged_steps(model_dir):
  """Every (step, tag) of the run's TensorBoard files, in file order."""
  return [(event.step, value.tag)
          for path in sorted(glob.glob(os.path.join(model_dir, "train",
                                                    "events.out.*")))
          for event in tf.compat.v1.train.summary_iterator(path)
          for value in event.summary.value]


@pytest.mark.slow
def test_an_interrupted_session_saves_its_step_and_resumes_without_repeats(
    tmp_path, tiny_dataset_dir):
  model_dir = str(tmp_path / "run")
  # Checkpoints only at epoch ends: without the save at the signal, the
  # resumed run would start again from step 0 and log steps 1-3 twice.
  bindings = [f"train.dataset_dir = '{tiny_dataset_dir}'",
              "train.checkpoint_every_steps = 0"]
  gin_utils.parse_gin([TINY_GIN], bindings)
  with pytest.raises(errors.Interrupted) as interruption:
    train_lib.train(model_dir, callbacks=[_SignalAt(3, signal.SIGTERM)])
  # gin appends "In call to configurable 'train'" on a line of its own.
  assert str(interruption.value).splitlines()[0] == (
      "interrupted at step 3; rerun the same command to resume")
  assert interruption.value.signal_number == signal.SIGTERM
  # The handlers are put back once the session ends.
  assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
  assert tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints")
                                    ).endswith("ckpt-3")
  with open(os.path.join(model_dir, train_lib.SUMMARY_FILE)) as f:
    first = json.load(f)
  assert first["steps"] == 3
  gin_utils.parse_gin([TINY_GIN], bindings)
  resumed = train_lib.train(model_dir)
  assert resumed["steps"] == 4
  sessions = resumed["sessions"]
  assert [(s["start_step"], s["end_step"], s["interrupted"])
          for s in sessions] == [(0, 3, True), (3, 4, False)]
  assert resumed["train_seconds"] == pytest.approx(
      sum(s["seconds"] for s in sessions))
  assert resumed["train_seconds"] > first["train_seconds"] > 0
  logged = _logged_steps(model_dir)
  assert len(logged) == len(set(logged))
  assert sorted({step for step, _ in logged}) == [1, 2, 3, 4]


@pytest.mark.slow
def test_ctrl_c_stops_the_script_with_one_line(tmp_path, tiny_dataset_dir):
  model_dir = tmp_path / "run"
  process = subprocess.Popen(
      [sys.executable, os.path.join(REPO, "scripts", "train.py"),
       f"--gin_file={TINY_GIN}", f"--dataset_dir={tiny_dataset_dir}",
       f"--model_dir={model_dir}", "--gin_bindings=train.epochs = 100"],
      env=script_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True)
  deadline = time.time() + 120
  while not (model_dir / "checkpoints").is_dir() and time.time() < deadline:
    time.sleep(0.2)
  process.send_signal(signal.SIGINT)
  _, stderr = process.communicate(timeout=120)
  assert process.returncode == 128 + signal.SIGINT, stderr
  assert "Traceback" not in stderr
  # No XLA start-up lines from C++ logging.
  assert "I0000" not in stderr and "absl::InitializeLog" not in stderr
  last = stderr.strip().splitlines()[-1]
  match = re.fullmatch(
      r"interrupted at step (\d+); rerun the same command to resume", last)
  assert match, last
  with open(model_dir / train_lib.SUMMARY_FILE) as f:
    assert json.load(f)["steps"] == int(match.group(1))


def test_the_small_recipe_is_an_experiment_file_of_train_py(tmp_path):
  small = os.path.join(gin_utils.GIN_ROOT, "small.gin")
  # It parses, and train.py gets as far as the dataset.
  result = run_script("train.py", f"--gin_file={small}",
                      f"--dataset_dir={tmp_path / 'no_dataset'}",
                      f"--model_dir={tmp_path / 'run'}")
  assert result.returncode == 1
  assert f"No dataset at {tmp_path / 'no_dataset'}" in result.stderr
  gin_utils.parse_gin([small], [])
  # Progress output, checkpoints every few minutes, BatchNorm heads.
  assert gin.query_parameter("train.verbose") == 2
  assert gin.query_parameter("train.checkpoint_every_steps") == 200
  assert gin.query_parameter("build_av_model.head_batch_norm") is True


def test_debug_flag_keeps_the_traceback(tmp_path):
  result = run_script("train.py", f"--gin_file={TINY_GIN}",
                      f"--model_dir={tmp_path / 'run'}",
                      "--gin_bindings=trian.epochs = 2", "--debug")
  assert result.returncode != 0 and "Traceback" in result.stderr
