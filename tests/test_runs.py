"""Tests of avid_tf.runs: opening a run folder, an export, a converted run."""

import json
import os
import shutil

import gin
import numpy as np
import pytest
import tensorflow as tf

from avid_tf import runs
from avid_tf.export import saved_model
from avid_tf.training import builder_args
from avid_tf.training import gin_utils
from conftest import run_script

VIDEO = tf.random.stateless_normal([2, 4, 32, 32, 3], seed=[0, 1])


def _checkpoint_banks(model_dir):
  path = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
  reader = tf.train.load_checkpoint(path)
  return {name: reader.get_tensor(name)
          for name, _ in tf.train.list_variables(path)
          if name.startswith("model/") and "bank" in name}


def _weights(model):
  return [w.numpy() for w in model.trainable_weights]


def test_a_run_restores_its_checkpoint(tiny_run_dir):
  run = runs.open_run(tiny_run_dir)
  assert run.kind == runs.RUN
  model = run.model()
  saved = _checkpoint_banks(tiny_run_dir)
  restored = sorted([model.video_bank.bank.numpy(),
                     model.audio_bank.bank.numpy()], key=lambda a: a.sum())
  expected = sorted(saved.values(), key=lambda a: a.sum())
  for a, b in zip(restored, expected):
    np.testing.assert_array_equal(a, b)
  assert model.num_data == 16
  assert float(model.objective.partition.numpy()) > 0
  assert run.preprocessing.num_frames == 4
  assert run.encoder_preprocessing("video")["crop_size"] == 32


def test_the_builder_args_round_trip(tiny_run_dir):
  recorded = builder_args.read(tiny_run_dir)
  # tiny.gin's bindings and the defaults it leaves alone.
  assert recorded["build_encoders"]["width_multiplier"] == 0.125
  assert recorded["build_encoders"]["video_depth"] == 10
  assert recorded["build_av_model"]["embedding_dim"] == 16
  assert recorded["build_objective"]["name"] == "avid"
  assert recorded["build_avid_objective"]["num_negatives"] == 8
  with gin_utils.isolated_config():
    gin_utils.parse_gin([os.path.join(gin_utils.GIN_ROOT, "tests",
                                      "tiny.gin")])
    assert builder_args.current() == recorded
  with open(os.path.join(tiny_run_dir, builder_args.FILE_NAME)) as f:
    assert json.load(f) == recorded


def test_an_old_run_without_builder_args_reads_its_config_gin(tiny_run_dir,
                                                              tmp_path):
  old = tmp_path / "old_run"
  shutil.copytree(tiny_run_dir, old)
  os.remove(old / builder_args.FILE_NAME)
  assert builder_args.read(str(old)) == builder_args.read(tiny_run_dir)
  np.testing.assert_array_equal(
      runs.open_run(str(old)).model().video_encoder(VIDEO).numpy(),
      runs.open_run(tiny_run_dir).model().video_encoder(VIDEO).numpy())


def test_the_model_follows_builder_args_not_config_gin(tiny_run_dir,
                                                       tmp_path):
  edited = tmp_path / "edited"
  shutil.copytree(tiny_run_dir, edited)
  args = builder_args.read(tiny_run_dir)
  args["build_av_model"]["embedding_dim"] = 8
  builder_args.write(str(edited), args)
  model = runs.open_run(str(edited)).random_init_model()
  assert model.video_head(model.video_encoder(VIDEO)).shape == (2, 8)


def test_loading_a_run_ignores_and_keeps_the_callers_gin_config(tiny_run_dir):
  gin_utils.parse_gin([], ["build_encoders.width_multiplier = 0.5",
                           "build_av_model.embedding_dim = 64"])
  model = runs.open_run(tiny_run_dir).model()
  assert model.video_head(model.video_encoder(VIDEO)).shape == (2, 16)
  assert gin.query_parameter("build_encoders.width_multiplier") == 0.5


def test_the_random_init_baseline_is_the_documented_seed(tiny_run_dir):
  run = runs.open_run(tiny_run_dir)
  baseline = _weights(run.random_init_model())
  # Whatever the process draws in between does not change the init.
  np.random.normal(size=10)
  tf.random.normal([10])
  run.random_init_model(seed=3)
  for a, b in zip(baseline, _weights(run.random_init_model(
      num_data=4, seed=runs.RANDOM_INIT_SEED))):
    np.testing.assert_array_equal(a, b)
  other = _weights(run.random_init_model(seed=runs.RANDOM_INIT_SEED + 1))
  assert any(np.abs(a - b).max() > 0 for a, b in zip(baseline, other))
  pretrained = _weights(run.model())
  assert any(np.abs(a - b).max() > 0 for a, b in zip(baseline, pretrained))
  encoder = run.encoder("video", random_init=True)
  assert encoder.kind == "random"
  np.testing.assert_array_equal(
      encoder.encoder(VIDEO, training=False).numpy(),
      run.random_init_model().video_encoder(VIDEO, training=False).numpy())


def test_an_export_opens_as_encoders_only(tiny_run_dir, tmp_path):
  export_dir = str(tmp_path / "export")
  run = runs.open_run(tiny_run_dir)
  saved_model.export_encoders(
      run.model(), export_dir,
      video_preprocessing=run.encoder_preprocessing("video"),
      audio_preprocessing=run.encoder_preprocessing("audio"))
  export = runs.open_run(export_dir)
  assert export.kind == runs.EXPORT
  assert export.encoder_preprocessing("video")["num_frames"] == 4
  source = export.encoder("video")
  assert source.kind == "export"
  np.testing.assert_allclose(
      source.encoder(VIDEO).numpy(),
      run.model().video_encoder(VIDEO, training=False).numpy(), atol=1e-4)
  with pytest.raises(runs.NotARunError, match="encoders only"):
    export.model()
  with pytest.raises(runs.NotARunError, match="encoders only"):
    export.random_init_model()


def test_what_is_not_a_run_is_one_clear_error(tmp_path):
  with pytest.raises(runs.NotARunError, match="neither") as error:
    runs.open_run(str(tmp_path))
  assert "\n" not in str(error.value)
  with pytest.raises(FileNotFoundError, match="does not exist"):
    runs.open_run(str(tmp_path / "nowhere"))
  with pytest.raises(runs.NotARunError, match="random initialisation"):
    runs.load_encoder(None)


def test_export_script_writes_encoders_matching_the_model(tiny_run_dir,
                                                          tmp_path):
  export_dir = str(tmp_path / "export")
  result = run_script("export.py", f"--model_dir={tiny_run_dir}",
                      f"--export_dir={export_dir}", check=True)
  # The tiny run trained 2 steps: the export says so, and prints it.
  checkpoint = os.path.join(tiny_run_dir, "checkpoints", "ckpt-2")
  assert f"Exported {checkpoint} (step 2)" in result.stdout
  for modality in ("video", "audio"):
    assert saved_model.read_metadata(os.path.join(
        export_dir, f"{modality}_encoder"))["source"] == {
            "model_dir": tiny_run_dir, "checkpoint": checkpoint, "step": 2}
  model = runs.open_run(tiny_run_dir).model()
  layer = saved_model.load_encoder_layer(
      os.path.join(export_dir, "video_encoder"), trainable=False)
  np.testing.assert_allclose(layer(VIDEO).numpy(),
                             model.video_encoder(VIDEO, training=False).numpy(),
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
