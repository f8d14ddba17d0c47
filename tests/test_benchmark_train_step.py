"""Tests for benchmarks.train_step (no timing assertions)."""

import json

import gin
import keras
import numpy as np
import pytest

from benchmarks import train_step
from avid_tf.losses import avid
from avid_tf.models import flops
from avid_tf.training import gin_utils

TINY = dict(batch_size=2, num_frames=4, crop_size=32, video_depth=10,
            audio_seconds=0.4, num_data=16, num_negatives=4, steps=2,
            warmup_steps=1, width_multiplier=0.125)


@pytest.mark.slow
def test_smoke_reports_positive_figures_as_json():
  result = train_step.benchmark_train_step(**TINY)
  json.dumps(result)  # One JSON line: everything must serialise.
  for key in ("clips_per_second", "step_seconds_median", "gflop_per_clip",
              "achieved_gflops"):
    assert isinstance(result[key], float) and result[key] > 0, key
  assert result["clips_per_second"] == pytest.approx(
      2 / result["step_seconds_median"], rel=1e-2)
  assert result["achieved_gflops"] == pytest.approx(
      result["gflop_per_clip"] * result["clips_per_second"], rel=1e-2)
  assert result["step_seconds_min"] <= result["step_seconds_median"]
  assert result["step_seconds_median"] <= result["step_seconds_max"]
  assert np.isfinite(result["loss"])
  assert result["replicas"] == 1
  assert (result["batch_size"], result["crop_size"], result["strategy"]) == (
      2, 32, "default")
  assert (result["video_depth"], result["width_multiplier"],
          result["num_negatives"], result["audio_frames"]) == (
              10, 0.125, 4, 40)
  # The policy the benchmark set is undone.
  assert keras.mixed_precision.global_policy().name == "float32"


def test_model_comes_from_the_builders_at_the_requested_sizes():
  with gin_utils.isolated_config():
    with gin.unlock_config():
      gin.bind_parameter("build_encoders.video_depth", 34)
    model = train_step.build_benchmark_model(
        16, video_depth=10, width_multiplier=0.125, num_negatives=4,
        gin_bindings=["build_avid_objective.temperature = 0.1"])
    # The caller's configuration is untouched.
    assert gin.query_parameter("build_encoders.video_depth") == 34
  assert model.video_encoder.depth == 10
  assert model.video_encoder.width_multiplier == 0.125
  assert model.audio_encoder.width_multiplier == 0.125
  assert isinstance(model.objective, avid.AVIDObjective)
  assert model.objective.num_negatives == 4
  assert model.objective.temperature == pytest.approx(0.1)
  assert model.num_data == 16


def test_gflop_per_clip_is_three_forwards_of_the_built_encoders():
  model = train_step.build_benchmark_model(
      16, video_depth=10, width_multiplier=0.125, num_negatives=4)
  clip = train_step.clip_geometry(4, 32, 0.4)
  assert clip.video_shape == (4, 32, 32, 3)
  assert clip.audio_shape == (40, 257, 1)
  expected = 3 * (
      flops.forward_flops(model.video_encoder, clip.video_shape) +
      flops.forward_flops(model.audio_encoder, clip.audio_shape)) / 1e9
  assert flops.train_step_gflop_per_clip(
      model.video_encoder, model.audio_encoder, clip.video_shape,
      clip.audio_shape) == pytest.approx(expected)


def test_synthetic_batch_follows_the_batch_contract():
  clip = train_step.clip_geometry(4, 32, 0.4)
  batch = train_step.synthetic_batch(clip, 3, num_data=5)
  for key, spec in clip.element_spec(3).items():
    assert batch[key].shape == tuple(spec.shape), key
    assert batch[key].dtype == spec.dtype.as_numpy_dtype, key
  assert batch["video"].shape == (3, 4, 32, 32, 3)
  assert batch["audio"].shape == (3, 40, 257, 1)
  assert len(set(batch["index"].tolist())) == 3  # distinct rows
  assert batch["index"].min() >= 0 and batch["index"].max() < 5


@pytest.mark.parametrize("kwargs,match", [
    (dict(mixed_precision="float16"), "mixed_precision"),
    (dict(strategy="tpu"), "strategy"),
    (dict(steps=0), "steps"),
    (dict(audio_seconds=0.0), "audio_seconds"),
    (dict(num_data=1), "num_data"),
])
def test_invalid_arguments_raise(kwargs, match):
  with pytest.raises(ValueError, match=match):
    train_step.benchmark_train_step(**{**TINY, **kwargs})
