"""Tests of the per-stage video probe: pooling, schedule, frozen backbone."""

import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from avid_tf import errors
from avid_tf.eval import stage_probe
from avid_tf.models import r2plus1d


def _reference_adaptive_max_pool(maps, grid):
  """PyTorch's AdaptiveMaxPool3d in NumPy float64, cell by cell."""
  maps = np.asarray(maps, np.float64)
  out = np.zeros((maps.shape[0],) + tuple(grid) + (maps.shape[-1],))
  sizes = maps.shape[1:4]
  for i in range(grid[0]):
    for j in range(grid[1]):
      for k in range(grid[2]):
        box = []
        for index, size, n in zip((i, j, k), grid, sizes):
          box.append(slice(int(np.floor(index * n / size)),
                           int(np.ceil((index + 1) * n / size))))
        out[:, i, j, k] = maps[:, box[0], box[1], box[2]].max(axis=(1, 2, 3))
  return out


@pytest.mark.parametrize("shape, grid", [
    ((2, 4, 14, 14, 3), (1, 8, 8)),   # Overlapping, uneven bins.
    ((2, 2, 7, 7, 3), (1, 6, 6)),
    ((1, 1, 4, 4, 2), (1, 4, 4)),     # Identity.
    ((2, 1, 2, 3, 2), (1, 4, 4)),     # Map smaller than the grid: repeats.
])
def test_adaptive_max_pool_matches_numpy_reference(shape, grid):
  maps = np.random.default_rng(0).normal(size=shape)
  pooled = stage_probe.adaptive_max_pool(tf.constant(maps, tf.float64), grid)
  np.testing.assert_array_equal(pooled.numpy(),
                                _reference_adaptive_max_pool(maps, grid))


def test_learning_rate_steps_at_the_milestones():
  rates = [stage_probe.learning_rate_at(e, 1e-4, (6, 9), 0.1)
           for e in range(12)]
  np.testing.assert_allclose(rates, [1e-4] * 6 + [1e-5] * 3 + [1e-6] * 3)


def _tiny_data(num=8, clips=2, seed=0):
  rng = np.random.default_rng(seed)
  labels = (np.arange(num) % 2).astype(np.int32)
  video = rng.normal(size=(num, clips, 2, 32, 32, 3)).astype(np.float32)
  video += labels[:, None, None, None, None, None] * 2.0
  return video, labels


def _run_probe(encoder, output_dir, epochs=2):
  video, labels = _tiny_data()

  def make_train_dataset(start_step):
    del start_step
    return tf.data.Dataset.from_tensor_slices(
        {"video": video[:, 0], "label": labels}).repeat().batch(4)

  test = tf.data.Dataset.from_tensor_slices(
      {"video": video, "label": labels}).batch(3)
  return stage_probe.train_stage_probe(
      encoder, make_train_dataset, 2, test, 2, str(output_dir),
      epochs=epochs, learning_rate=1e-2, milestones=(1,), progress=False)


@pytest.mark.slow
def test_probe_leaves_every_backbone_variable_bit_identical(tmp_path):
  encoder = r2plus1d.R2Plus1D(depth=10, width_multiplier=0.125)
  video, _ = _tiny_data()
  # Move the BN moving statistics away from their initial 0 / 1 first.
  encoder.stage_outputs(tf.constant(video[:, 0]), training=True)
  before = [v.numpy().copy() for v in encoder.variables]
  assert any("moving_mean" in v.path for v in encoder.variables)

  results = _run_probe(encoder, tmp_path)

  after = [v.numpy() for v in encoder.variables]
  assert len(before) == len(after)
  for variable, old, new in zip(encoder.variables, before, after):
    assert np.array_equal(old, new), variable.path
  assert set(results) == set(r2plus1d.STAGE_NAMES)
  for stage in results.values():
    # 8 test videos of 2 clips each.
    assert stage["clip_top1"] * 16 == int(stage["clip_top1"] * 16)
    assert stage["top1"] * 8 == int(stage["top1"] * 8)
  # The check can fail: BN in training mode moves the statistics.
  encoder.stage_outputs(tf.constant(video[:, 0]), training=True)
  assert not all(np.array_equal(old, v.numpy())
                 for old, v in zip(before, encoder.variables))


@pytest.mark.slow
def test_rerun_resumes_from_the_last_epoch_and_logs_to_tensorboard(tmp_path):
  encoder = r2plus1d.R2Plus1D(depth=10, width_multiplier=0.125)
  first = _run_probe(encoder, tmp_path, epochs=2)
  assert glob.glob(os.path.join(tmp_path, "tensorboard", "events.*"))
  checkpoint = tf.train.latest_checkpoint(
      os.path.join(tmp_path, stage_probe.CHECKPOINT_SUBDIR))
  assert checkpoint.endswith("-2")
  # All epochs done: the rerun only tests the restored classifiers.
  assert _run_probe(encoder, tmp_path, epochs=2) == first


def test_out_of_range_labels_are_a_clear_error(tmp_path):
  encoder = r2plus1d.R2Plus1D(depth=10, width_multiplier=0.125)
  video, labels = _tiny_data()
  train = lambda start: tf.data.Dataset.from_tensor_slices(
      {"video": video[:, 0], "label": labels - 1}).repeat().batch(4)
  test = tf.data.Dataset.from_tensor_slices(
      {"video": video, "label": labels}).batch(3)
  with pytest.raises(errors.UserError, match="class ids"):
    stage_probe.train_stage_probe(encoder, train, 1, test, 2, str(tmp_path),
                                  epochs=1, progress=False)
