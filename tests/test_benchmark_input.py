"""Tests of the input-pipeline benchmark on tiny synthetic data."""

import numpy as np

from avid_tf.data import benchmark_input
from avid_tf.data import media
from avid_tf.data import pipeline


def test_direct_decode_picks_consecutive_frames_and_audio(tmp_path):
  fps, seconds, rate = 16, 3.0, 24000
  frames = np.stack([np.full((32, 48, 3), 10 + 4 * k, np.uint8)
                     for k in range(int(fps * seconds))])
  t = np.arange(int(seconds * rate)) / rate
  path = str(tmp_path / "clip.mp4")
  media.write_av_file(path, frames, fps,
                      audio=0.5 * np.sin(2 * np.pi * 440 * t),
                      sample_rate=rate)
  decode = benchmark_input._decode_clip_with_pyav  # pylint: disable=W0212
  for video_start, first_frame in ((0.0, 0), (0.8, 12), (2.6, 41)):
    images, audio = decode(path, video_start, 0.5, num_frames=8,
                           frame_rate=16.0, audio_samples=2 * rate,
                           sample_rate=rate)
    assert images.shape == (8, 32, 48, 3) and images.dtype == np.uint8
    numbers = np.round((images.mean(axis=(1, 2, 3)) - 10) / 4).astype(int)
    # Nearest preceding frames; past the end the last frame repeats.
    expected = np.minimum(first_frame + np.arange(8), 47)
    np.testing.assert_array_equal(numbers, expected)
    assert audio.shape == (2 * rate,) and audio.dtype == np.int16
    assert np.abs(audio[:rate]).max() > 8000  # the tone, not silence


def test_benchmark_reports_both_designs(tmp_path):
  dataset_dir, video_dir = benchmark_input.write_synthetic_av_dataset(
      str(tmp_path), num_videos=3, size=(48, 64), seconds=(2.5, 3.0))
  assert pipeline.steps_per_epoch(dataset_dir, 3, 1) == 1
  result = benchmark_input.benchmark_input_pipeline(
      dataset_dir, video_dir, batch_size=2, num_frames=4, crop_size=32,
      num_batches=2, warmup_batches=1, baseline_batches=1)
  assert result["cores"] >= 1
  assert result["clips_per_second"] > 0
  assert result["baseline_clips_per_second"] > 0
  np.testing.assert_allclose(result["clips_per_second_per_core"],
                             result["clips_per_second"] / result["cores"],
                             rtol=0.01)
  np.testing.assert_allclose(
      result["speedup"],
      result["clips_per_second"] / result["baseline_clips_per_second"],
      rtol=0.02)
