"""AVID+CMA objective against a float64 NumPy reference; refresh callback."""

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

from avid_tf.losses import base
from avid_tf.losses import cma
from avid_tf.memory import agreement
from avid_tf.memory import memory_bank
from avid_tf.memory.memory_bank import MemoryBank
from avid_tf.training.run_info import RunInfo
from conftest import mirrored_strategy
import tiny_av

TAU, NUM_DATA, DIM = 0.07, 32, 8
K, M, NUM_POSITIVES, PARTITION = 16, 8, 4, 30.0


def _unit(x):
  return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _random_sets(rng, num_rows=NUM_DATA, k=NUM_POSITIVES):
  """k distinct rows j != i for every row i."""
  return np.stack([rng.choice(np.delete(np.arange(num_rows), i), k,
                              replace=False)
                   for i in range(num_rows)]).astype(np.int32)


def _objective(**kwargs):
  settings = dict(num_positives=NUM_POSITIVES, num_negatives=K,
                  num_positive_set_negatives=M, temperature=TAU)
  settings.update(kwargs)
  return cma.CMAObjective(NUM_DATA, **settings)


def _reference_nce(anchors, positive_rows, negative_rows, partition):
  """-(1/|P|) sum_p log h(s_p) - sum_j log(1 - h(s_j)), batch mean."""
  anchors = anchors.astype(np.float64)
  positive = np.einsum("bd,bpd->bp", anchors, positive_rows) / TAU
  negative = np.einsum("bd,bkd->bk", anchors, negative_rows) / TAU
  noise = negative_rows.shape[1] * partition
  log_h = positive - np.log(np.exp(positive) + noise)
  log_one_minus_h = np.log(noise) - np.log(np.exp(negative) + noise)
  return np.mean(-log_h.mean(axis=1) - log_one_minus_h.sum(axis=1))


def _reference_terms(embeddings, banks, indices, positives, negatives,
                     partition):
  v = embeddings["video"].astype(np.float64)
  a = embeddings["audio"].astype(np.float64)
  v_bank = banks["video"].bank.numpy().astype(np.float64)
  a_bank = banks["audio"].bank.numpy().astype(np.float64)
  own, few = indices[:, None], negatives[:, :M]
  return {
      "inst_x_v2a": _reference_nce(v, a_bank[own], a_bank[negatives],
                                   partition),
      "inst_x_a2v": _reference_nce(a, v_bank[own], v_bank[negatives],
                                   partition),
      "inst_w_v2v": _reference_nce(v, v_bank[own], v_bank[negatives],
                                   partition),
      "inst_w_a2a": _reference_nce(a, a_bank[own], a_bank[negatives],
                                   partition),
      "pos_x_v2a": _reference_nce(v, a_bank[positives], a_bank[few],
                                  partition),
      "pos_x_a2v": _reference_nce(a, v_bank[positives], v_bank[few],
                                  partition),
      "pos_w_v2v": _reference_nce(v, v_bank[positives], v_bank[few],
                                  partition),
      "pos_w_a2a": _reference_nce(a, a_bank[positives], a_bank[few],
                                  partition),
  }


@pytest.fixture(name="setup")
def _setup():
  rng = np.random.default_rng(0)
  batch = 4
  banks = {"video": MemoryBank(NUM_DATA, DIM, seed=0),
           "audio": MemoryBank(NUM_DATA, DIM, seed=1)}
  embeddings = {"video": _unit(rng.normal(size=(batch, DIM))),
                "audio": _unit(rng.normal(size=(batch, DIM)))}
  indices = np.array([3, 7, 0, 3], np.int32)
  sets = _random_sets(rng)
  negatives = rng.integers(0, NUM_DATA, (batch, K)).astype(np.int32)
  return banks, embeddings, indices, sets, negatives


@pytest.mark.parametrize("coefficients, expected_weights", [
    ((1, 0, 0, 1), {"inst_x_v2a": 0.25, "inst_x_a2v": 0.25,
                    "pos_w_v2v": 0.25, "pos_w_a2a": 0.25}),
    ((0, 1, 0, 0), {"inst_w_v2v": 0.5, "inst_w_a2a": 0.5}),
    ((0, 0, 3, 0), {"pos_x_v2a": 0.5, "pos_x_a2v": 0.5}),
    ((2, 0, 6, 0), {"inst_x_v2a": 0.125, "inst_x_a2v": 0.125,
                    "pos_x_v2a": 0.375, "pos_x_a2v": 0.375}),
    ((1, 1, 1, 1), {term: 0.125 for term in cma.TERMS}),
])
def test_terms_match_reference_and_only_weighted_terms_are_computed(
    setup, coefficients, expected_weights):
  banks, embeddings, indices, sets, negatives = setup
  objective = _objective(**dict(zip(cma.COEFFICIENTS, coefficients)))
  assert objective.term_weights == pytest.approx(expected_weights)
  assert sum(objective.coefficients.values()) == pytest.approx(1.0)
  positives = sets[indices]
  scores = objective.scores(embeddings, banks, indices, positives, negatives)
  assert list(scores) == list(expected_weights)
  for term, (positive, negative) in scores.items():
    if term.startswith("inst"):
      assert positive.shape == (4, 1) and negative.shape == (4, K)
    else:
      assert positive.shape == (4, NUM_POSITIVES)
      assert negative.shape == (4, M)
  loss, term_losses = objective.loss(scores, PARTITION)

  reference = _reference_terms(embeddings, banks, indices, positives,
                               negatives, PARTITION)
  for term, value in term_losses.items():
    np.testing.assert_allclose(value.numpy(), reference[term], rtol=1e-5,
                               err_msg=term)
  expected = sum(w * reference[t] for t, w in expected_weights.items())
  np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-5)


def test_within_modal_instance_terms_use_within_modal_keys(setup):
  banks, embeddings, indices, sets, negatives = setup
  scores = _objective(inst_w=1.0, pos_w=0.0, inst_x=0.0).scores(
      embeddings, banks, indices, sets[indices], negatives)
  for term, modality in (("inst_w_v2v", "video"), ("inst_w_a2a", "audio")):
    anchors = embeddings[modality].astype(np.float64)
    keys = banks[modality].bank.numpy().astype(np.float64)
    positive, negative = scores[term]
    np.testing.assert_allclose(
        positive.numpy()[:, 0], np.sum(anchors * keys[indices], 1) / TAU,
        rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        negative.numpy(),
        np.einsum("bd,bkd->bk", anchors, keys[negatives]) / TAU,
        rtol=1e-5, atol=1e-5)


def _set_state(objective, sets, partition=PARTITION, epoch=0):
  objective.partition.assign(partition)
  objective.positive_sets.assign(sets)
  objective.positive_sets_epoch.assign(epoch)


def test_call_draws_negatives_outside_positive_sets_and_logs_terms(setup):
  banks, embeddings, indices, sets, _ = setup
  objective = _objective(seed=5)
  _set_state(objective, sets)
  loss, logs = objective(embeddings, banks, tf.constant(indices), 7)

  positives = sets[indices]
  negatives = memory_bank.sample_negatives(
      indices, NUM_DATA, K, 5, 7, exclude=positives).numpy()
  reference = _reference_terms(embeddings, banks, indices, positives,
                               negatives, PARTITION)
  assert set(logs) == {"partition"} | {
      f"loss_{term}" for term in objective.term_names}
  assert logs["partition"].numpy() == PARTITION
  for term in objective.term_names:
    np.testing.assert_allclose(logs[f"loss_{term}"].numpy(), reference[term],
                               rtol=1e-5, err_msg=term)
  np.testing.assert_allclose(
      loss.numpy(), sum(w * reference[t]
                        for t, w in objective.term_weights.items()),
      rtol=1e-5)
  assert objective.partition.numpy() == PARTITION  # Z stays frozen.


def _chi_square_critical(dof, z=3.090):
  """Wilson-Hilferty approximation of the chi^2 quantile at z (0.999)."""
  c = 2.0 / (9.0 * dof)
  return dof * (1.0 - c + z * np.sqrt(c)) ** 3


def test_negatives_are_uniform_outside_positive_set_and_self():
  num_rows, k, num_negatives, num_steps = 16, 3, 64, 50
  sets = _random_sets(np.random.default_rng(1), num_rows, k)
  objective = cma.CMAObjective(num_rows, num_positives=k,
                               num_negatives=num_negatives,
                               num_positive_set_negatives=8, seed=3)
  objective.positive_sets.assign(sets)
  indices = tf.range(num_rows)
  counts = np.zeros((num_rows, num_rows))
  for step in range(num_steps):
    positives, negatives = objective.candidates(indices, step)
    np.testing.assert_array_equal(positives.numpy(), sets)
    negatives = negatives.numpy()
    assert negatives.shape == (num_rows, num_negatives)
    for i in range(num_rows):
      assert not np.isin(negatives[i], np.append(sets[i], i)).any()
      counts[i] += np.bincount(negatives[i], minlength=num_rows)

  statistic = 0.0
  for i in range(num_rows):
    allowed = np.setdiff1d(np.arange(num_rows), np.append(sets[i], i))
    expected = num_steps * num_negatives / len(allowed)
    statistic += np.sum((counts[i, allowed] - expected) ** 2 / expected)
  dof = num_rows * (num_rows - k - 2)
  assert statistic < _chi_square_critical(dof)


def _batches():
  return tiny_av.random_batches(NUM_DATA)


def _first_batch(data):
  return tiny_av.first_batch(data)


def _make_model(objective, seed=0):
  return tiny_av.tiny_model(objective, NUM_DATA, DIM, weight_decay=1e-3,
                            seed=seed)


def _compiled_model(data, jit_compile=False, **kwargs):
  model = _make_model(_objective(**kwargs))
  model.compile(optimizer=keras.optimizers.Adam(1e-2),
                jit_compile=jit_compile)
  model(_first_batch(data))
  model.objective.partition.assign(PARTITION)
  return model


def _fit_epochs(model, data, callbacks, steps_per_epoch=1, **kwargs):
  return model.fit(tiny_av.dataset(data, repeat=True),
                   steps_per_epoch=steps_per_epoch,
                   callbacks=callbacks, verbose=0, shuffle=False, **kwargs)


def _run(labels=None):
  return RunInfo(model_dir="unused", num_data=NUM_DATA, steps_per_epoch=1,
                 strategy=tf.distribute.get_strategy(),
                 instance_labels=labels)


class _Recorder(keras.callbacks.Callback):
  """State at every epoch begin (after the refresh) and epoch-end logs."""

  def __init__(self):
    super().__init__()
    self.begin, self.end = {}, {}

  def on_epoch_begin(self, epoch, logs=None):
    objective = self.model.objective
    self.begin[epoch] = {
        "sets": objective.positive_sets.numpy(),
        "sets_epoch": int(objective.positive_sets_epoch.numpy()),
        "video": self.model.video_bank.bank.numpy(),
        "audio": self.model.audio_bank.bank.numpy()}

  def on_epoch_end(self, epoch, logs=None):
    self.end[epoch] = dict(logs)


def _precision(sets, labels):
  known = labels >= 0
  return np.mean([np.mean(labels[sets[i]] == labels[i])
                  for i in np.flatnonzero(known)])


@pytest.mark.slow
def test_refresh_recomputes_sets_at_train_begin_and_every_period():
  data = _batches()
  # Small tiles: the search is exact for any tiling.
  model = _compiled_model(data, agreement="union", resample_every_epochs=2,
                          block_size=8)
  labels = np.arange(NUM_DATA) % 4
  labels[[5, 10]] = -1
  refresh = model.objective.callbacks(_run(labels))
  assert len(refresh) == 1
  recorder = _Recorder()
  history = _fit_epochs(model, data, refresh + [recorder], epochs=5)

  refresh = refresh[0]
  assert [epoch for epoch, _ in refresh.history] == [0, 2, 4]
  assert [recorder.begin[e]["sets_epoch"] for e in range(5)] == [
      0, 0, 2, 2, 4]
  for epoch in range(5):
    state = recorder.begin[epoch]
    if epoch % 2 == 0:
      expected = agreement.positive_sets(state["video"], state["audio"],
                                         k=NUM_POSITIVES, agreement="union")
      np.testing.assert_array_equal(state["sets"], np.asarray(expected))
    else:
      np.testing.assert_array_equal(state["sets"],
                                    recorder.begin[epoch - 1]["sets"])
    # The banks moved, so a refresh really had new rows to rank.
    if epoch:
      assert not np.allclose(state["video"], recorder.begin[epoch - 1]["video"])

  chance = float(agreement.positive_set_precision_chance(labels,
                                                         NUM_POSITIVES))
  for epoch, stats in refresh.history:
    precision = _precision(recorder.begin[epoch]["sets"], labels)
    assert stats["positive_set_precision"] == pytest.approx(precision)
    assert stats["positive_set_precision_chance"] == pytest.approx(chance)
  # A random other row shares i's label with probability (n_c - 1) / (N - 1),
  # about 1 / classes for balanced classes.
  assert chance == pytest.approx(np.mean(
      [(np.sum(labels == labels[i]) - 1) / (NUM_DATA - 1)
       for i in np.flatnonzero(labels >= 0)]))
  assert chance == pytest.approx(0.25, abs=0.04)
  for epoch in range(5):
    precision = _precision(recorder.begin[epoch]["sets"], labels)
    assert recorder.end[epoch]["positive_set_precision"] == pytest.approx(
        precision)
  assert history.history["positive_set_precision_chance"] == pytest.approx(
      [chance] * 5)


def test_resumed_run_keeps_the_sets_of_the_current_period():
  data = _batches()
  model = _compiled_model(data, resample_every_epochs=2)
  sentinel = _random_sets(np.random.default_rng(2))
  # (epoch of the checkpointed sets, epoch the run resumes at, refresh?)
  for sets_epoch, initial_epoch, refreshed in [
      (2, 2, False), (2, 3, False), (2, 4, True), (-1, 3, True),
      (0, 2, True)]:
    _set_state(model.objective, sentinel, epoch=sets_epoch)
    refresh = model.objective.callbacks(_run())
    recorder = _Recorder()
    _fit_epochs(model, data, refresh + [recorder],
                initial_epoch=initial_epoch, epochs=initial_epoch + 1)
    state = recorder.begin[initial_epoch]
    case = f"sets of epoch {sets_epoch}, resumed at {initial_epoch}"
    if refreshed:
      assert refresh[0].history == [(initial_epoch, {})], case
      assert state["sets_epoch"] == initial_epoch, case
      expected = agreement.positive_sets(state["video"], state["audio"],
                                         k=NUM_POSITIVES)
      np.testing.assert_array_equal(state["sets"], np.asarray(expected),
                                    err_msg=case)
    else:
      assert not refresh[0].history, case
      assert state["sets_epoch"] == sets_epoch, case
      np.testing.assert_array_equal(state["sets"], sentinel, err_msg=case)


def test_computes_sets_once_when_resample_every_epochs_is_zero():
  data = _batches()
  model = _compiled_model(data, resample_every_epochs=0)
  # No labelled row: nothing to measure the precision against.
  refresh = model.objective.callbacks(_run(np.full(NUM_DATA, -1)))
  history = _fit_epochs(model, data, refresh, epochs=3)
  assert refresh[0].history == [(0, {})]
  assert "positive_set_precision" not in history.history


def test_missing_partition_is_a_clear_error(setup):
  data = _batches()
  model = _compiled_model(data)
  model.objective.partition.assign(0.0)
  with pytest.raises(ValueError, match="init_from"):
    _fit_epochs(model, data, model.objective.callbacks(_run()), epochs=1)
  assert model.optimizer.iterations.numpy() == 0

  # Graph-side: a step run without the callback.
  model.objective.positive_sets_epoch.assign(0)
  with pytest.raises(tf.errors.InvalidArgumentError, match="init_from"):
    model.train_on_batch(_first_batch(data))
  banks, embeddings, indices, sets, _ = setup
  objective = _objective()
  objective.positive_sets.assign(sets)
  objective.positive_sets_epoch.assign(0)
  with pytest.raises(tf.errors.InvalidArgumentError, match="Z is 0"):
    objective(embeddings, banks, indices, 0)


def test_positive_sets_never_computed_is_a_clear_error():
  data = _batches()
  model = _compiled_model(data)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match="never computed"):
    model.train_on_batch(_first_batch(data))


def _initial_weights(data):
  """Weights of an 'AVID run': trained-looking encoders, banks and Z."""
  model = _make_model(_objective(), seed=1)
  model(_first_batch(data))
  model.objective.partition.assign(PARTITION)
  return model.get_weights()


def _fit(strategy, data, initial_weights, jit_compile=False):
  """Two epochs of three steps, refreshing the sets at both epochs."""
  run = RunInfo(model_dir="unused", num_data=NUM_DATA, steps_per_epoch=3,
                strategy=strategy)
  return tiny_av.fit(
      strategy, lambda: _make_model(_objective(resample_every_epochs=1)),
      data, initial_weights, jit_compile=jit_compile,
      callbacks=lambda model: model.objective.callbacks(run), epochs=2,
      steps_per_epoch=3)


def _assert_same_training(model, logs, reference, reference_logs):
  assert model.objective.partition.numpy() == PARTITION
  tiny_av.assert_same_training(model, logs, reference, reference_logs,
                               num_steps=6)


@pytest.mark.slow
def test_mirrored_fit_matches_default_strategy_and_replicas_agree():
  data = _batches()
  initial = _initial_weights(data)
  single, single_logs = _fit(tf.distribute.get_strategy(), data, initial)
  strategy = mirrored_strategy()
  mirrored, mirrored_logs = _fit(strategy, data, initial)

  assert mirrored.optimizer.iterations.numpy() == 6
  assert mirrored.objective.positive_sets_epoch.numpy() == 1
  assert {"loss_inst_x_v2a", "loss_inst_x_a2v", "loss_pos_w_v2v",
          "loss_pos_w_a2a", "partition"} <= set(mirrored_logs[0])
  _assert_same_training(mirrored, mirrored_logs, single, single_logs)
  tiny_av.assert_replicas_identical(strategy, mirrored)


@pytest.mark.slow
def test_jit_compiled_fit_matches_graph_fit():
  data = _batches()
  initial = _initial_weights(data)
  graph, graph_logs = _fit(tf.distribute.get_strategy(), data, initial)
  compiled, compiled_logs = _fit(tf.distribute.get_strategy(), data, initial,
                                 jit_compile=True)
  assert compiled.jit_compile
  _assert_same_training(compiled, compiled_logs, graph, graph_logs)


def test_builder_defaults_are_the_released_configuration():
  objective = cma.build_cma_objective(num_data=100)
  assert objective.name == base.OBJECTIVE_NAME
  assert objective.inherited_state == ("partition",)
  assert (objective.num_positives, objective.num_negatives,
          objective.num_positive_set_negatives) == (32, 1024, 64)
  assert objective.temperature == pytest.approx(0.07)
  assert objective.agreement == "consensus"
  assert objective.resample_every_epochs == 5
  assert objective.term_weights == pytest.approx(
      {"inst_x_v2a": 0.25, "inst_x_a2v": 0.25, "pos_w_v2v": 0.25,
       "pos_w_a2a": 0.25})
  state = {name: (tuple(v.shape), v.dtype)
           for name, v in objective.state.items()}
  assert state == {"partition": ((), "float32"),
                   "positive_sets": ((100, 32), "int32"),
                   "positive_sets_epoch": ((), "int64")}
  assert objective.positive_sets_epoch.numpy() == -1

  gin.bind_parameter("build_cma_objective.resample_every_epochs", 10)
  gin.bind_parameter("build_cma_objective.agreement", "union")
  objective = cma.build_cma_objective(num_data=100, seed=4)
  assert (objective.resample_every_epochs, objective.agreement,
          objective.seed) == (10, "union", 4)


@pytest.mark.parametrize("kwargs, message", [
    ({"pos_w": -1.0}, ">= 0"),
    ({"inst_x": 0.0, "pos_w": 0.0}, "cannot all be 0"),
    ({"temperature": 0.0}, "temperature"),
    ({"num_negatives": 0}, "num_negatives"),
    ({"num_positive_set_negatives": K + 1}, "num_positive_set_negatives"),
    ({"num_positives": NUM_DATA - 1}, "num_positives"),
    ({"num_positives": 0}, "num_positives"),
    ({"agreement": "both"}, "agreement"),
    ({"resample_every_epochs": -1}, "resample_every_epochs"),
    ({"block_size": 0}, "block_size"),
])
def test_invalid_settings_raise(kwargs, message):
  with pytest.raises(ValueError, match=message):
    _objective(**kwargs)
