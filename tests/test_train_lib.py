"""End-to-end tests of the training entry: gin, checkpoints, resume, NaN."""

import glob
import os

import gin
import numpy as np
import pytest
import tensorflow as tf

from avid_tf.models import av_model
from avid_tf.training import callbacks as callbacks_lib
from avid_tf.training import checkpointing
from avid_tf.training import gin_utils
from avid_tf.training import train_lib

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


def test_resume_with_another_dataset_size_fails_clearly(tmp_path,
                                                        tiny_dataset_dir):
  _train(tmp_path / "run", tiny_dataset_dir, "train.max_steps = 1")
  from conftest import write_tiny_dataset  # pylint: disable=g-import-not-at-top
  other = write_tiny_dataset(tmp_path / "other", num_train=12)
  with pytest.raises(checkpointing.CheckpointMismatchError, match="12 training"):
    _train(tmp_path / "run", other, "train.max_steps = 1")


def test_resume_with_another_architecture_fails_clearly(tmp_path,
                                                        tiny_dataset_dir):
  _train(tmp_path / "run", tiny_dataset_dir, "train.max_steps = 1")
  with pytest.raises(checkpointing.CheckpointMismatchError,
                     match="another architecture"):
    _train(tmp_path / "run", tiny_dataset_dir, "train.max_steps = 1",
           "build_encoders.width_multiplier = 0.25")


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


def test_unknown_gin_binding_is_a_clear_error():
  with pytest.raises(gin_utils.GinConfigError, match="no_such_param"):
    gin_utils.parse_gin([TINY_GIN], ["train.no_such_param = 1"])
  with pytest.raises(gin_utils.GinConfigError, match="missing.gin"):
    gin_utils.parse_gin(["missing.gin"], [])


@pytest.mark.parametrize("path", sorted(glob.glob(
    os.path.join(gin_utils.GIN_ROOT, "**", "*.gin"), recursive=True)))
def test_every_gin_file_parses_and_builds(path):
  # The quickstart's files also configure `run_quickstart`.
  from avid_tf import quickstart  # pylint: disable=g-import-not-at-top,unused-import
  gin_utils.parse_gin([path], [])
  from avid_tf.models import builders  # pylint: disable=g-import-not-at-top
  with gin.unlock_config():
    model = builders.build_av_model(num_data=8)
  assert model.num_data == 8
  gin.clear_config()
