"""Tests of the input-pipeline benchmark on tiny synthetic data."""

import os

import numpy as np
import pytest

from benchmarks import input_pipeline
from avid_tf.data import media
from avid_tf.data import pipeline
from avid_tf.data import preprocessing
from avid_tf.data import schema


def _preprocessing(num_frames, audio_seconds, sample_rate):
  return preprocessing.Preprocessing(
      num_frames=num_frames, crop_size=32, frame_rate=16.0,
      audio_seconds=audio_seconds, sample_rate=sample_rate,
      spectrogram_mean=[0.0] * 257, spectrogram_std=[1.0] * 257)


def test_direct_decode_picks_consecutive_frames_and_audio(tmp_path):
  fps, seconds, rate = 16, 3.0, 24000
  frames = np.stack([np.full((32, 48, 3), 10 + 4 * k, np.uint8)
                     for k in range(int(fps * seconds))])
  t = np.arange(int(seconds * rate)) / rate
  # A tone in the first second only: where it lands shows the alignment.
  tone = np.where(t < 1.0, 0.5 * np.sin(2 * np.pi * 440 * t), 0.0)
  path = str(tmp_path / "clip.mp4")
  media.write_av_file(path, frames, fps, audio=tone, sample_rate=rate)
  clip = _preprocessing(8, 1.0, rate)
  for video_start, first_frame in ((0.0, 0), (0.8, 12), (2.6, 41)):
    images, audio = input_pipeline.decode_clip(path, video_start, 0.5, clip)
    assert images.shape == (8, 32, 48, 3) and images.dtype == np.uint8
    numbers = np.round((images.mean(axis=(1, 2, 3)) - 10) / 4).astype(int)
    # Nearest preceding frames; past the end the last frame repeats.
    expected = np.minimum(first_frame + np.arange(8), 47)
    np.testing.assert_array_equal(numbers, expected)
    assert audio.shape == (rate,) and audio.dtype == np.int16
    # Audio from 0.5 s: the tone for half a second, then (near) silence.
    assert np.abs(audio[:rate // 2 - 1200]).max() > 8000
    assert np.abs(audio[rate // 2 + 1200:]).max() < 500


@pytest.fixture(scope="module")
def synthetic_dataset(tmp_path_factory):
  """(dataset_dir, video_dir) of three requested videos, 48 px, 2.5 s."""
  return input_pipeline.make_synthetic_dataset(
      str(tmp_path_factory.mktemp("benchmark")), num_videos=3, size=48,
      duration=2.5, num_workers=1)


@pytest.mark.slow
def test_benchmark_reports_both_designs(synthetic_dataset):
  dataset_dir, video_dir = synthetic_dataset
  dataset = schema.DatasetInfo.load(dataset_dir)
  assert dataset.num_examples("train") == 4  # two per class
  assert pipeline.steps_per_epoch(dataset, 4, 1) == 1
  result = input_pipeline.benchmark_input_pipeline(
      dataset_dir, video_dir, batch_size=2, num_frames=4, crop_size=32,
      num_batches=2, warmup_batches=1, baseline_batches=1)
  assert result["cores"] >= 1
  assert result["clips_per_second"] > 0
  assert result["baseline_clips_per_second"] > 0
  # The figures are rounded to 2 decimals, hence the absolute tolerance.
  np.testing.assert_allclose(result["clips_per_second_per_core"],
                             result["clips_per_second"] / result["cores"],
                             rtol=0.01, atol=0.006)
  np.testing.assert_allclose(
      result["speedup"],
      result["clips_per_second"] / result["baseline_clips_per_second"],
      rtol=0.02, atol=0.006)


def test_baseline_batches_follow_the_preprocessing(synthetic_dataset):
  dataset_dir, video_dir = synthetic_dataset
  dataset = schema.DatasetInfo.load(dataset_dir)
  clip = preprocessing.clip_preprocessing(dataset, num_frames=4,
                                          crop_size=32, audio_seconds=0.5)
  paths, durations = input_pipeline.source_videos(dataset, video_dir)
  assert len(paths) == 4 and all(os.path.isfile(p) for p in paths)
  np.testing.assert_allclose(durations, 2.5, atol=0.05)
  direct = input_pipeline.make_direct_decode_dataset(paths, durations, 2,
                                                     clip)
  batch = next(iter(direct))
  expected = clip.element_spec(2)
  for key in ("video", "audio", "index"):
    assert batch[key].shape == expected[key].shape, key
    assert batch[key].dtype == expected[key].dtype, key


@pytest.mark.slow
def test_stage_breakdown_adds_up_to_the_whole_clip(tiny_dataset_dir):
  dataset = schema.DatasetInfo.load(tiny_dataset_dir)
  clip = preprocessing.clip_preprocessing(dataset, num_frames=4,
                                          crop_size=32, audio_seconds=1.0)
  # CPU timers on a shared machine are noisy at these tiny sizes, while an
  # accounting error (a phase missed or counted twice) is systematic: the
  # breakdown must match the whole in one of five measurements.
  ratios = []
  for _ in range(5):
    result = input_pipeline.stage_breakdown(dataset, clip, batch_size=4,
                                            num_clips=64, repeats=5)
    stages = result["stages_ms_per_clip"]
    assert list(stages) == ["parse_and_sample", "jpeg_decode",
                            "crop_and_resize", "colour_jitter",
                            "normalisation", "spectrogram", "batching"]
    # Batching tiny clips may cost less than the timer's noise.
    assert all(stages[name] > 0 for name in list(stages)[:-1])
    assert result["num_clips"] == 64
    ratios.append(result["sum_over_total"])
    # Timed one by one, the phases cost what the whole map function does.
    if 0.9 <= ratios[-1] <= 1.1:
      break
  assert 0.9 <= ratios[-1] <= 1.1, ratios
