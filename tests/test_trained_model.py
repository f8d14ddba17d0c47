"""Tests that a run folder rebuilds its model and exports its encoders."""

import os

import gin
import numpy as np
import pytest
import tensorflow as tf

from avid_tf.export import saved_model
from avid_tf.training import gin_utils
from avid_tf.training import trained_model
from conftest import run_script


def _checkpoint_banks(model_dir):
  path = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
  reader = tf.train.load_checkpoint(path)
  return {name: reader.get_tensor(name)
          for name, _ in tf.train.list_variables(path)
          if name.startswith("model/") and "bank" in name}


def test_load_trained_model_restores_the_checkpoint(tiny_run_dir):
  model = trained_model.load_trained_model(tiny_run_dir)
  saved = _checkpoint_banks(tiny_run_dir)
  restored = sorted([model.video_bank.bank.numpy(),
                     model.audio_bank.bank.numpy()], key=lambda a: a.sum())
  expected = sorted(saved.values(), key=lambda a: a.sum())
  for a, b in zip(restored, expected):
    np.testing.assert_array_equal(a, b)
  assert model.num_data == 16
  assert float(model.objective.partition.numpy()) > 0


def test_missing_run_folder_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="config.gin"):
    trained_model.load_trained_model(str(tmp_path))


def test_export_script_writes_encoders_matching_the_model(tiny_run_dir, tmp_path):
  export_dir = str(tmp_path / "export")
  run_script("export.py", f"--model_dir={tiny_run_dir}",
             f"--export_dir={export_dir}", check=True)
  model = trained_model.load_trained_model(tiny_run_dir)
  video = tf.random.stateless_normal([2, 4, 32, 32, 3], seed=[0, 1])
  layer = saved_model.load_encoder_layer(
      os.path.join(export_dir, "video_encoder"), trainable=False)
  np.testing.assert_allclose(layer(video).numpy(),
                             model.video_encoder(video, training=False).numpy(),
                             atol=1e-4)
  metadata = saved_model.read_metadata(os.path.join(export_dir,
                                                    "audio_encoder"))
  assert len(metadata["preprocessing"]["spectrogram_mean"]) == 257
  assert not os.path.exists(os.path.join(export_dir, "memory_bank"))


def test_export_script_reports_a_missing_run_in_one_line(tmp_path):
  result = run_script("export.py", f"--model_dir={tmp_path / 'no_run'}",
                      f"--export_dir={tmp_path / 'export'}")
  assert result.returncode == 1 and "Traceback" not in result.stderr
  assert result.stderr.strip().splitlines()[-1].startswith(
      f"Error: {tmp_path / 'no_run'}")


def test_loading_a_run_leaves_the_callers_gin_config_alone(tiny_run_dir):
  gin_utils.parse_gin([], ["build_encoders.width_multiplier = 0.5"])
  trained_model.load_trained_model(tiny_run_dir)
  assert gin.query_parameter("build_encoders.width_multiplier") == 0.5


def test_random_init_depends_on_the_seed_alone(tiny_run_dir):
  def weights(seed):
    model = trained_model.build_model(tiny_run_dir, num_data=16, seed=seed)
    return [w.numpy() for w in model.trainable_weights]

  first = weights(7)
  # Whatever the process draws in between does not change the init.
  np.random.normal(size=10)
  tf.random.normal([10])
  trained_model.build_model(tiny_run_dir, num_data=16, seed=3)
  again = weights(7)
  other = weights(8)
  assert len(first) == len(again) > 0
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a, b)
  assert any(np.abs(a - b).max() > 0 for a, b in zip(first, other))
