"""Tests for avid_tf.training.benchmark_train (no timing assertions)."""

import json

import keras
import numpy as np
import pytest

from avid_tf.models import flops
from avid_tf.training import benchmark_train

TINY = dict(batch_size=2, num_frames=4, crop_size=32, video_depth=10,
            audio_frames=40, num_data=16, num_negatives=4, steps=2,
            warmup_steps=1, width_multiplier=0.125)


def test_smoke_reports_positive_figures_as_json():
  result = benchmark_train.benchmark_train_step(**TINY)
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
  # The policy the benchmark set is undone.
  assert keras.mixed_precision.global_policy().name == "float32"


def test_gflop_per_clip_is_three_forwards_of_the_built_encoders():
  model = benchmark_train.build_benchmark_model(
      16, video_depth=10, width_multiplier=0.125, num_negatives=4)
  expected = 3 * (
      flops.forward_flops(model.video_encoder, (4, 32, 32, 3)) +
      flops.forward_flops(model.audio_encoder, (40, 257, 1))) / 1e9
  assert flops.train_step_gflop_per_clip(
      model.video_encoder, model.audio_encoder, (4, 32, 32, 3),
      (40, 257, 1)) == pytest.approx(expected)
  assert model.num_negatives == 4 and model.num_data == 16


def test_synthetic_batch_follows_the_batch_contract():
  batch = benchmark_train.synthetic_batch(3, 4, 32, 40, num_data=5)
  assert batch["video"].shape == (3, 4, 32, 32, 3)
  assert batch["audio"].shape == (3, 40, 257, 1)
  assert batch["video"].dtype == np.float32
  assert batch["index"].dtype == np.int32
  assert len(set(batch["index"].tolist())) == 3  # distinct rows
  assert batch["index"].min() >= 0 and batch["index"].max() < 5


@pytest.mark.parametrize("kwargs,match", [
    (dict(mixed_precision="float16"), "mixed_precision"),
    (dict(strategy="tpu"), "strategy"),
    (dict(steps=0), "steps"),
    (dict(num_data=1), "num_data"),
])
def test_invalid_arguments_raise(kwargs, match):
  with pytest.raises(ValueError, match=match):
    benchmark_train.benchmark_train_step(**{**TINY, **kwargs})
