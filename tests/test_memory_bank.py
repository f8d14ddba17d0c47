"""Memory bank: initialisation, negative sampling, synchronised update."""

import numpy as np
import pytest
import tensorflow as tf

from avid_tf.memory import memory_bank
from avid_tf.memory.memory_bank import MemoryBank
from conftest import mirrored_strategy


def _normalize(x):
  return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_initial_rows_are_unit_norm_and_seeded():
  bank = MemoryBank(20, dim=6, seed=3)
  rows = bank.bank.numpy()
  assert rows.shape == (20, 6) and rows.dtype == np.float32
  assert not bank.bank.trainable and not bank.trainable_weights
  np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-6)
  np.testing.assert_array_equal(rows, MemoryBank(20, dim=6, seed=3).bank)
  assert not np.allclose(rows, MemoryBank(20, dim=6, seed=4).bank.numpy())


def test_initial_rows_identical_on_every_replica_and_strategy():
  strategy = mirrored_strategy()
  with strategy.scope():
    bank = MemoryBank(20, dim=6, seed=3)
  copies = [c.numpy() for c in strategy.experimental_local_results(
      bank.bank.value)]
  assert len(copies) == 2
  np.testing.assert_array_equal(copies[0], copies[1])
  np.testing.assert_array_equal(copies[0], MemoryBank(20, dim=6, seed=3).bank)


def test_gather_returns_rows():
  bank = MemoryBank(10, dim=4, seed=0)
  indices = np.array([[3, 3], [0, 9]])
  np.testing.assert_array_equal(bank.gather(indices).numpy(),
                                bank.bank.numpy()[indices])


def test_sample_negatives_never_self_and_uniform_over_others():
  num_rows, num_negatives = 5, 4000
  indices = np.array([0, 1, 2, 3, 4, 2], np.int32)
  negatives = memory_bank.sample_negatives(indices, num_rows, num_negatives,
                                           seed=7, step=0).numpy()
  assert negatives.shape == (6, num_negatives)
  assert negatives.dtype == np.int32
  for row, index in zip(negatives, indices):
    assert index not in row
    counts = np.bincount(row, minlength=num_rows)
    others = np.delete(counts, index) / num_negatives
    # Binomial std of a frequency near 1/4 over 4000 draws is ~0.007.
    np.testing.assert_allclose(others, 0.25, atol=0.035)


def test_sample_negatives_with_two_rows_always_picks_the_other():
  negatives = memory_bank.sample_negatives(
      np.array([0, 1, 1]), 2, 50, seed=0, step=3).numpy()
  np.testing.assert_array_equal(negatives, [[1] * 50, [0] * 50, [0] * 50])


def test_sample_negatives_deterministic_per_seed_and_step():
  indices = np.arange(8)
  draw = lambda seed, step: memory_bank.sample_negatives(  # noqa: E731
      indices, 1000, 16, seed, step).numpy()
  np.testing.assert_array_equal(draw(1, 5), draw(1, 5))
  np.testing.assert_array_equal(draw(1, tf.constant(5, tf.int64)), draw(1, 5))
  assert (draw(1, 5) != draw(1, 6)).mean() > 0.9
  assert (draw(1, 5) != draw(2, 5)).mean() > 0.9


def test_sample_negatives_rejects_too_small_bank():
  with pytest.raises(ValueError, match="num_rows=1"):
    memory_bank.sample_negatives(np.array([0]), 1, 4, seed=0, step=0)


def test_each_replica_takes_its_slice_of_the_global_draw():
  global_indices = np.array([4, 0, 9, 9, 2, 7, 1, 3], np.int32)
  expected = memory_bank.sample_negatives(global_indices, 10, 6, seed=2,
                                          step=11).numpy()
  strategy = mirrored_strategy()
  local_indices = strategy.experimental_distribute_values_from_function(
      lambda ctx: global_indices.reshape(2, 4)[ctx.replica_id_in_sync_group])
  per_replica = strategy.run(
      tf.function(lambda i: memory_bank.sample_negatives(i, 10, 6, 2, 11)),
      args=(local_indices,))
  got = np.concatenate(
      [t.numpy() for t in strategy.experimental_local_results(per_replica)])
  np.testing.assert_array_equal(got, expected)


# Chi-square critical values at p = 0.001 by degrees of freedom.
_CHI2_999 = {5: 20.515, 7: 24.322, 10: 29.588}


def test_excluded_rows_are_never_drawn_and_the_rest_is_uniform():
  num_rows, num_negatives = 12, 6000
  indices = np.array([0, 5, 11, 3], np.int32)
  # Duplicates, the anchor itself and neighbouring runs in the exclusions.
  exclude = np.array([[1, 2, 2, 3, 0],
                      [4, 6, 11, 4, 4],
                      [10, 9, 0, 1, 2],
                      [3, 3, 3, 3, 3]], np.int32)
  negatives = memory_bank.sample_negatives(
      indices, num_rows, num_negatives, seed=3, step=1,
      exclude=exclude).numpy()
  assert negatives.shape == (4, num_negatives) and negatives.dtype == np.int32
  for row, index, excluded in zip(negatives, indices, exclude):
    forbidden = set(excluded.tolist()) | {int(index)}
    assert not forbidden & set(row.tolist())
    allowed = sorted(set(range(num_rows)) - forbidden)
    counts = np.bincount(row, minlength=num_rows)[allowed]
    expected = num_negatives / len(allowed)
    chi2 = np.sum((counts - expected) ** 2 / expected)
    assert chi2 < _CHI2_999[len(allowed) - 1], (index, counts)


def test_exclusion_leaving_one_row_always_draws_it():
  negatives = memory_bank.sample_negatives(
      np.array([2], np.int32), 4, 20, seed=0, step=0,
      exclude=np.array([[0, 3]], np.int32)).numpy()
  np.testing.assert_array_equal(negatives, [[1] * 20])
  with pytest.raises(ValueError, match="at least one row"):
    memory_bank.sample_negatives(np.array([0]), 3, 4, 0, 0,
                                 exclude=np.array([[1, 2]]))


def test_exclusion_draws_do_not_depend_on_the_replica_count_or_xla():
  global_indices = np.array([4, 0, 9, 9, 2, 7, 1, 3], np.int32)
  exclude = (global_indices[:, None] + np.arange(1, 4)[None, :]) % 10
  expected = memory_bank.sample_negatives(global_indices, 10, 6, seed=2,
                                          step=11, exclude=exclude).numpy()
  compiled = tf.function(
      lambda i, e: memory_bank.sample_negatives(i, 10, 6, 2, 11, exclude=e),
      jit_compile=True)
  np.testing.assert_array_equal(compiled(global_indices, exclude).numpy(),
                                expected)
  strategy = mirrored_strategy()
  local = strategy.experimental_distribute_values_from_function(
      lambda ctx: (global_indices.reshape(2, 4)[ctx.replica_id_in_sync_group],
                   exclude.reshape(2, 4, 3)[ctx.replica_id_in_sync_group]))
  per_replica = strategy.run(
      tf.function(lambda pair: memory_bank.sample_negatives(
          pair[0], 10, 6, 2, 11, exclude=pair[1])), args=(local,))
  got = np.concatenate(
      [t.numpy() for t in strategy.experimental_local_results(per_replica)])
  np.testing.assert_array_equal(got, expected)


def test_average_duplicates_exact_for_unique_and_mean_for_repeated():
  rng = np.random.default_rng(0)
  values = rng.normal(size=(5, 3)).astype(np.float32)
  indices = np.array([2, 7, 2, 4, 2])
  got = memory_bank.average_duplicates(indices, values).numpy()
  np.testing.assert_array_equal(got[[1, 3]], values[[1, 3]])
  mean = values[[0, 2, 4]].astype(np.float64).mean(axis=0)
  for row in (0, 2, 4):
    np.testing.assert_allclose(got[row], mean, rtol=1e-6)


def _reference_update(bank, indices, embeddings, momentum):
  bank = bank.astype(np.float64).copy()
  embeddings = embeddings.astype(np.float64)
  new_rows = {}
  for index in np.unique(indices):
    mean = embeddings[indices == index].mean(axis=0)
    mixed = momentum * bank[index] + (1 - momentum) * mean
    new_rows[index] = mixed / np.linalg.norm(mixed)
  for index, row in new_rows.items():
    bank[index] = row
  return bank


def test_update_matches_reference_with_duplicates_and_stays_unit_norm():
  bank = MemoryBank(8, dim=4, momentum=0.3, seed=1)
  before = bank.bank.numpy()
  rng = np.random.default_rng(1)
  indices = np.array([1, 3, 1, 6, 1, 3], np.int32)
  embeddings = _normalize(rng.normal(size=(6, 4))).astype(np.float32)
  rows = bank.update(indices, embeddings).numpy()

  after = bank.bank.numpy()
  expected = _reference_update(before, indices, embeddings, 0.3)
  np.testing.assert_allclose(after, expected, rtol=1e-6, atol=1e-6)
  untouched = [0, 2, 4, 5, 7]
  np.testing.assert_array_equal(after[untouched], before[untouched])
  np.testing.assert_array_equal(rows, after[indices])
  np.testing.assert_allclose(np.linalg.norm(after, axis=1), 1.0, atol=1e-6)


def test_update_under_jit_matches_eager():
  rng = np.random.default_rng(2)
  indices = np.array([5, 0, 5, 2], np.int32)
  embeddings = _normalize(rng.normal(size=(4, 4))).astype(np.float32)
  eager, compiled = MemoryBank(6, dim=4, seed=2), MemoryBank(6, dim=4, seed=2)
  eager.update(indices, embeddings)
  tf.function(compiled.update, jit_compile=True)(indices, embeddings)
  np.testing.assert_allclose(compiled.bank.numpy(), eager.bank.numpy(),
                             atol=1e-7)


def test_update_from_all_gathered_replicas_keeps_copies_identical():
  rng = np.random.default_rng(3)
  global_indices = np.array([3, 0, 3, 9, 1, 3, 7, 0], np.int32)
  global_embeddings = _normalize(rng.normal(size=(8, 4))).astype(np.float32)
  single = MemoryBank(10, dim=4, seed=5)
  expected_rows = single.update(global_indices, global_embeddings).numpy()

  strategy = mirrored_strategy()
  with strategy.scope():
    bank = MemoryBank(10, dim=4, seed=5)

  def local(values):
    return strategy.experimental_distribute_values_from_function(
        lambda ctx: values.reshape((2, 4) + values.shape[1:])[
            ctx.replica_id_in_sync_group])

  @tf.function
  def step(indices, embeddings):
    return bank.update(memory_bank.all_gather_batch(indices),
                       memory_bank.all_gather_batch(embeddings))

  rows = strategy.run(step, args=(local(global_indices),
                                  local(global_embeddings)))
  for replica_rows in strategy.experimental_local_results(rows):
    np.testing.assert_array_equal(replica_rows.numpy(), expected_rows)
  copies = [c.numpy() for c in strategy.experimental_local_results(
      bank.bank.value)]
  np.testing.assert_array_equal(copies[0], copies[1])
  np.testing.assert_array_equal(copies[0], single.bank.numpy())


def test_constructor_rejects_bad_arguments():
  with pytest.raises(ValueError, match="momentum"):
    MemoryBank(4, dim=2, momentum=1.0)
  with pytest.raises(ValueError, match="num_rows"):
    MemoryBank(0, dim=2)
