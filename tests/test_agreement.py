"""AVID+CMA positive sets against a float64 brute-force search."""

import numpy as np
import pytest
import tensorflow as tf

from benchmarks import cma_search
from avid_tf.memory import agreement
from avid_tf.memory.memory_bank import MemoryBank
from conftest import mirrored_strategy

# One bank shape and tiling for most tests, so they share one compilation
# per agreement. 61 rows in 9 tiles of 7, the last one shifted back over
# rows that the one before scored.
N, D, K = 61, 8, 6
TILE = 7


def _unit_rows(rng, num_rows=N, dim=D):
  rows = rng.standard_normal((num_rows, dim))
  return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(
      np.float32)


def _brute_force(video, audio, k, kind):
  video, audio = np.float64(video), np.float64(audio)
  similarities = {"video": video @ video.T, "audio": audio @ audio.T}
  similarities["consensus"] = np.minimum(similarities["video"],
                                         similarities["audio"])
  similarities["union"] = np.maximum(similarities["video"],
                                     similarities["audio"])
  scores = similarities[kind]
  np.fill_diagonal(scores, -np.inf)
  # A stable sort of -rho keeps equal rho in increasing index order.
  return np.argsort(-scores, axis=1, kind="stable")[:, :k], scores


def _quantised_rows(rng):
  """Rows in {-1, 0, 1}^D: every dot product is an exact small integer."""
  video = rng.integers(-1, 2, (N, D)).astype(np.float32)
  audio = rng.integers(-1, 2, (N, D)).astype(np.float32)
  # Two pairs of exact duplicates, rows twice as long as any other row, so
  # each is its copy's strongest agreement (Cauchy-Schwarz).
  for bank in (video, audio):
    bank[3] = bank[40] = 2 * np.sign(bank[3] + 0.5)
    bank[50] = bank[51] = -bank[3]
  return video, audio


@pytest.mark.parametrize("kind", agreement.AGREEMENTS)
def test_matches_brute_force_on_random_rows(kind):
  rng = np.random.default_rng(0)
  video, audio = _unit_rows(rng), _unit_rows(rng)
  sets = agreement.positive_sets(video, audio, k=K, agreement=kind,
                                 block_size=TILE)
  assert sets.dtype == tf.int32 and sets.shape == (N, K)
  expected, _ = _brute_force(video, audio, K, kind)
  np.testing.assert_array_equal(sets.numpy(), expected)


@pytest.mark.parametrize("kind", agreement.AGREEMENTS)
def test_ties_go_to_the_lower_index_and_duplicates_are_positives(kind):
  video, audio = _quantised_rows(np.random.default_rng(1))
  sets = agreement.positive_sets(video, audio, k=K, agreement=kind,
                                 block_size=TILE).numpy()
  expected, scores = _brute_force(video, audio, K, kind)
  ranked = -np.sort(-scores, axis=1)
  # The data must tie across the k-th place, or the test proves nothing.
  assert (ranked[:, K - 1] == ranked[:, K]).sum() > N // 2
  np.testing.assert_array_equal(sets, expected)
  assert not (sets == np.arange(N)[:, None]).any()
  np.testing.assert_array_equal(sets[[3, 40, 50, 51], 0], [40, 3, 51, 50])


def test_tiling_does_not_change_the_result():
  video, audio = _quantised_rows(np.random.default_rng(2))
  # 16: groups of 16 columns (several survivors per group); None: one tile.
  results = [agreement.positive_sets(video, audio, k=K, block_size=size)
             for size in (TILE, 16, None)]
  for result in results[1:]:
    np.testing.assert_array_equal(result.numpy(), results[0].numpy())
  np.testing.assert_array_equal(results[0].numpy(),
                                _brute_force(video, audio, K, "consensus")[0])


@pytest.fixture
def smallest_cap(monkeypatch):
  """Cuts rows at 4 k survivors, so that small banks exercise the cuts."""
  monkeypatch.setattr(agreement, "_CANDIDATE_CAP", 0)
  agreement._graphs.cache_clear()  # pylint: disable=protected-access
  yield
  agreement._graphs.cache_clear()  # pylint: disable=protected-access


@pytest.mark.usefixtures("smallest_cap")
def test_rows_where_everything_ties_are_cut_and_stay_exact():
  # Every pair agrees exactly (rho = 1), except with the last row (rho = 2):
  # each row keeps every score it sees until it has too many, is cut to its
  # top k (while its tile waits, then during its own sweep), and must still
  # take the last row first and then the lowest indices.
  num_rows, k = 300, 4
  video = np.zeros((num_rows, 2), np.float32)
  video[:, 0] = 1.0
  video[-1, 0] = 2.0
  sets = agreement.positive_sets(video, video, k=k, block_size=32).numpy()
  np.testing.assert_array_equal(sets[0], [num_rows - 1, 1, 2, 3])
  np.testing.assert_array_equal(sets[2], [num_rows - 1, 0, 1, 3])
  np.testing.assert_array_equal(sets[200], [num_rows - 1, 0, 1, 2])
  np.testing.assert_array_equal(sets[-1], [0, 1, 2, 3])


@pytest.mark.usefixtures("smallest_cap")
def test_rows_cut_many_times_stay_exact():
  rng = np.random.default_rng(3)
  video, audio = _unit_rows(rng, 300), _unit_rows(rng, 300)
  sets = agreement.positive_sets(video, audio, k=20, block_size=64)
  np.testing.assert_array_equal(
      sets.numpy(), _brute_force(video, audio, 20, "consensus")[0])


def test_memory_banks_and_variables_are_read():
  video_bank = MemoryBank(N, dim=D, seed=1)
  audio_bank = MemoryBank(N, dim=D, seed=2)
  expected, _ = _brute_force(video_bank.bank.numpy(), audio_bank.bank.numpy(),
                             K, "consensus")
  for banks in ((video_bank, audio_bank),
                (video_bank.bank.value, tf.constant(audio_bank.bank))):
    np.testing.assert_array_equal(
        agreement.positive_sets(*banks, k=K, block_size=TILE).numpy(),
        expected)


def test_identical_under_a_strategy_and_refused_per_replica():
  strategy = mirrored_strategy()
  with strategy.scope():
    video_bank = MemoryBank(N, dim=D, seed=1)
    audio_bank = MemoryBank(N, dim=D, seed=2)
    sets = agreement.positive_sets(video_bank, audio_bank, k=K,
                                   block_size=TILE)
  expected, _ = _brute_force(video_bank.bank.numpy(), audio_bank.bank.numpy(),
                             K, "consensus")
  np.testing.assert_array_equal(sets.numpy(), expected)
  with pytest.raises(RuntimeError, match="cross-replica"):
    strategy.run(lambda: agreement.positive_sets(video_bank, audio_bank,
                                                 k=K, block_size=TILE))
  with pytest.raises(RuntimeError, match="eagerly"):
    tf.function(lambda: agreement.positive_sets(
        video_bank, audio_bank, k=K, block_size=TILE))()


@pytest.mark.parametrize("enabled", [True, False])
def test_tensor_float_32_setting_is_restored(enabled):
  previous = tf.config.experimental.tensor_float_32_execution_enabled()
  rng = np.random.default_rng(0)
  try:
    tf.config.experimental.enable_tensor_float_32_execution(enabled)
    agreement.positive_sets(_unit_rows(rng), _unit_rows(rng), k=K,
                            block_size=TILE)
    assert (tf.config.experimental.tensor_float_32_execution_enabled()
            == enabled)
  finally:
    tf.config.experimental.enable_tensor_float_32_execution(previous)


@pytest.mark.parametrize("arguments, message", [
    ({"agreement": "mean"}, r"agreement must be one of \('consensus'"),
    ({"k": 0}, r"k must be in \[1, N - 1\] = \[1, 60\], got 0"),
    ({"k": N}, r"k must be in \[1, N - 1\] = \[1, 60\], got 61"),
    ({"audio": np.ones((N + 1, D))}, "same shape"),
    ({"audio": np.ones((N, D + 1))}, "same shape"),
    ({"video": np.ones((N,))}, r"video_bank must be a matrix \[N, D\]"),
    ({"video": np.full((N, D), np.nan)}, "must be finite"),
    ({"block_size": 0}, "block_size must be a positive int"),
    ({"block_size": (8, 16)}, r"block_size must be .* got \(8, 16\)"),
])
def test_rejects_bad_arguments(arguments, message):
  arguments = dict({"video": np.ones((N, D)), "audio": np.ones((N, D))},
                   **arguments)
  video, audio = arguments.pop("video"), arguments.pop("audio")
  with pytest.raises(ValueError, match=message) as error:
    agreement.positive_sets(video, audio, **arguments)
  assert "\n" not in str(error.value)


def test_positive_set_precision_by_hand():
  labels = np.array([0, 0, 1, 1, -1, 0])
  sets = np.array([[1, 2], [0, 5], [3, 4], [2, 0], [0, 1], [1, 0]])
  # Rows 0, 1, 2, 3 and 5 score 1/2, 1, 1/2 (its positive 4 is unlabelled),
  # 1/2 and 1; row 4 is not scored.
  assert agreement.positive_set_precision(sets, labels) == pytest.approx(0.7)
  assert agreement.positive_set_precision(
      tf.constant(sets, tf.int32), labels) == pytest.approx(0.7)
  # Rows of class 0 see 2 of 5 others of their class, rows of class 1 see 1.
  assert agreement.positive_set_precision_chance(labels) == pytest.approx(
      (3 * 2 / 5 + 2 * 1 / 5) / 5)
  assert agreement.positive_set_precision_chance(labels, 2) == pytest.approx(
      0.32)


def test_positive_set_precision_rejects_bad_input():
  with pytest.raises(ValueError, match="must match"):
    agreement.positive_set_precision(np.zeros((4, 2), int), np.zeros(5, int))
  with pytest.raises(ValueError, match="no row has a label"):
    agreement.positive_set_precision(np.zeros((4, 2), int), -np.ones(4, int))
  with pytest.raises(ValueError, match="k in"):
    agreement.positive_set_precision_chance(np.zeros(4, int), 4)


def test_benchmark_reports_a_search():
  result = cma_search.benchmark_cma_search(num_data=200, dim=D, k=K,
                                           block_size=TILE)
  assert result["seconds"] > 0 and result["achieved_gflops"] > 0
  assert result["gflop"] == pytest.approx(4 * 200 ** 2 * D / 1e9)
  # 29 tiles of 7 rows, 29 * 30 / 2 of them scored.
  assert result["matmul_gflop"] == pytest.approx(435 * 49 * 4 * D / 1e9)
  assert result["achieved_gflops"] == pytest.approx(
      result["gflop"] / result["seconds"], rel=0.01)
  assert result["peak_memory_bytes"] > 0
  assert result["memory_measure"] in ("cpu_peak_rss", "gpu_peak_allocated")
  assert result["tile"] == TILE
