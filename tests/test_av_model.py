"""AVModel: one step against NumPy, Z freezing, weight decay, distribution."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from avid_tf.data import pipeline
from avid_tf.losses.avid import AVIDObjective
from avid_tf.memory import memory_bank
from conftest import mirrored_strategy
import tiny_av

NUM_DATA, NUM_NEGATIVES, DIM, TAU = 32, 16, 8, 0.07
TERMS = {"v2a": ("video", "audio"), "a2v": ("audio", "video"),
         "v2v": ("video", "video"), "a2a": ("audio", "audio")}


def _batches():
  """Three batches of 8: duplicate indices in batches 1 and 2."""
  # Duplicates inside a batch, on different replicas (positions 1 and 6).
  return tiny_av.random_batches(NUM_DATA, duplicates=((6, 1), (13, 12)))


def _first_batch(data):
  return tiny_av.first_batch(data)


def _make_model(objective=None, weight_decay=0.0, seed=0):
  objective = objective or AVIDObjective(1.0, 1.0, TAU,
                                         num_negatives=NUM_NEGATIVES,
                                         seed=seed)
  return tiny_av.tiny_model(objective, NUM_DATA, DIM,
                            weight_decay=weight_decay, seed=seed)


def _reference_step(model, batch, term_weights, partition=None):
  """NumPy float64 loss, Z and bank update of one step from the model state."""
  embeddings = {k: v.numpy().astype(np.float64)
                for k, v in model(batch, training=True).items()}
  banks = {"video": model.video_bank.bank.numpy().astype(np.float64),
           "audio": model.audio_bank.bank.numpy().astype(np.float64)}
  indices = batch["index"]
  step = int(model.optimizer.iterations.numpy())
  negatives = memory_bank.sample_negatives(
      indices, NUM_DATA, NUM_NEGATIVES, model.seed, step).numpy()
  logits = {}
  for term in term_weights:
    anchor, memory = TERMS[term]
    x, rows = embeddings[anchor], banks[memory]
    logits[term] = (np.sum(x * rows[indices], axis=1) / TAU,
                    np.einsum("bd,bkd->bk", x, rows[negatives]) / TAU)
  if partition is None:
    partition = np.exp(next(iter(logits.values()))[1]).mean()
  noise = NUM_NEGATIVES * partition
  term_losses = {}
  for term, (positive, negative) in logits.items():
    log_h = positive - np.log(np.exp(positive) + noise)
    log_1mh = np.log(noise) - np.log(np.exp(negative) + noise)
    term_losses[term] = np.mean(-log_h - log_1mh.sum(axis=1))
  loss = sum(term_weights[t] * v for t, v in term_losses.items())

  new_banks = {}
  for modality, bank in banks.items():
    bank = bank.copy()
    x = embeddings[modality]
    for index in np.unique(indices):
      mixed = (0.5 * bank[index]
               + 0.5 * x[indices == index].mean(axis=0))
      bank[index] = mixed / np.linalg.norm(mixed)
    new_banks[modality] = bank
  agreement = np.mean(np.sum(new_banks["video"][indices]
                             * new_banks["audio"][indices], axis=1))
  return loss, term_losses, partition, new_banks, agreement, embeddings


def test_call_returns_unit_float32_embeddings():
  model = _make_model()
  embeddings = model(_first_batch(_batches()), training=False)
  assert set(embeddings) == {"video", "audio"}
  for value in embeddings.values():
    assert value.dtype == tf.float32 and value.shape == (8, DIM)
    np.testing.assert_allclose(np.linalg.norm(value.numpy(), axis=1), 1.0,
                               atol=1e-6)
  assert not {w.path for w in model.trainable_weights} & {
      model.video_bank.bank.path, model.audio_bank.bank.path,
      model.objective.partition.path}


@pytest.mark.parametrize("cross, within", [(1.0, 0.0), (0.0, 1.0),
                                           (1.0, 1.0)])
def test_train_steps_match_numpy_and_freeze_partition(cross, within):
  data = _batches()
  objective = AVIDObjective(cross, within, TAU, num_negatives=NUM_NEGATIVES)
  model = _make_model(objective)
  model.compile(optimizer=keras.optimizers.SGD(0.05))
  batch = _first_batch(data)
  model(batch)
  assert model.objective.partition.numpy() == 0.0

  loss, term_losses, partition, banks, agreement, embeddings = (
      _reference_step(model, batch, objective.term_weights))
  logs = model.train_on_batch(batch, return_dict=True)
  expected_keys = {"loss", "partition", "positive_agreement",
                   "embedding_similarity_video", "embedding_similarity_audio",
                   "learning_rate"} | {f"loss_{t}" for t in term_losses}
  assert set(logs) == expected_keys
  np.testing.assert_allclose(logs["loss"], loss, rtol=1e-5)
  for term, value in term_losses.items():
    np.testing.assert_allclose(logs[f"loss_{term}"], value, rtol=1e-5)
  np.testing.assert_allclose(logs["partition"], partition, rtol=1e-5)
  np.testing.assert_allclose(model.objective.partition.numpy(), partition, rtol=1e-5)
  np.testing.assert_allclose(logs["positive_agreement"], agreement,
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(logs["learning_rate"], 0.05, rtol=1e-6)
  for modality in ("video", "audio"):
    x = embeddings[modality]
    similarity = x @ x.T
    np.testing.assert_allclose(
        logs[f"embedding_similarity_{modality}"],
        similarity[~np.eye(len(x), dtype=bool)].mean(), rtol=1e-4, atol=1e-6)
  for modality, bank in (("video", model.video_bank),
                         ("audio", model.audio_bank)):
    np.testing.assert_allclose(bank.bank.numpy(), banks[modality], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(bank.bank.numpy(), axis=1),
                               1.0, atol=1e-6)

  # Second step: new negatives, but Z stays frozen at the first estimate.
  second = {k: v[8:16] for k, v in data.items()}
  first_partition = model.objective.partition.numpy()
  loss, _, _, _, _, _ = _reference_step(
      model, second, objective.term_weights, partition=first_partition)
  logs = model.train_on_batch(second, return_dict=True)
  assert model.objective.partition.numpy() == first_partition
  assert logs["partition"] == pytest.approx(first_partition, rel=1e-7)
  np.testing.assert_allclose(logs["loss"], loss, rtol=1e-5)


def test_weight_decay_is_coupled_l2_on_every_trainable_variable():
  data = _batches()
  batch = _first_batch(data)
  plain, decayed = _make_model(weight_decay=0.0), _make_model(weight_decay=0.1)
  for model in (plain, decayed):
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    model(batch)
  decayed.set_weights(plain.get_weights())
  initial = [w.numpy() for w in plain.trainable_weights]
  plain.train_on_batch(batch)
  decayed.train_on_batch(batch)
  # SGD: w' = w - lr * (g + wd * w), so the difference is -lr * wd * w.
  for w0, w_plain, w_decayed in zip(initial, plain.trainable_weights,
                                    decayed.trainable_weights):
    np.testing.assert_allclose(w_decayed.numpy() - w_plain.numpy(),
                               -0.5 * 0.1 * w0, atol=1e-6)


def _initial_weights(data):
  model = _make_model(weight_decay=1e-3, seed=1)
  model(_first_batch(data))
  return model.get_weights()


def _fit(strategy, data, initial_weights, jit_compile=False):
  return tiny_av.fit(strategy, lambda: _make_model(weight_decay=1e-3), data,
                     initial_weights, jit_compile=jit_compile, epochs=1)


@pytest.mark.slow
def test_mirrored_fit_matches_default_strategy_and_replicas_agree():
  data = _batches()
  initial = _initial_weights(data)
  single, single_logs = _fit(tf.distribute.get_strategy(), data, initial)
  strategy = mirrored_strategy()
  mirrored, mirrored_logs = _fit(strategy, data, initial)

  assert mirrored.optimizer.iterations.numpy() == 3
  tiny_av.assert_same_training(mirrored, mirrored_logs, single, single_logs,
                               num_steps=3)
  tiny_av.assert_replicas_identical(strategy, mirrored)
  for name in ("video_bank", "audio_bank"):
    bank = getattr(mirrored, name).bank.numpy()
    np.testing.assert_allclose(np.linalg.norm(bank, axis=1), 1.0, atol=1e-6)
    # The banks did move (rows of the three batches were written).
    initial_bank = initial[[w.path for w in mirrored.weights].index(
        getattr(mirrored, name).bank.path)]
    assert not np.allclose(bank, initial_bank)


@pytest.mark.slow
def test_jit_compiled_fit_matches_graph_fit():
  data = _batches()
  initial = _initial_weights(data)
  graph, graph_logs = _fit(tf.distribute.get_strategy(), data, initial)
  compiled, compiled_logs = _fit(tf.distribute.get_strategy(), data, initial,
                                 jit_compile=True)
  assert compiled.jit_compile
  tiny_av.assert_same_training(compiled, compiled_logs, graph, graph_logs,
                               num_steps=3)


@pytest.mark.slow
def test_mixed_precision_step_keeps_float32_banks():
  data = _batches()
  previous = keras.config.dtype_policy()
  keras.config.set_dtype_policy("mixed_float16")
  try:
    model = _make_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    logs = model.train_on_batch(_first_batch(data), return_dict=True)
  finally:
    keras.config.set_dtype_policy(previous)
  assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
  assert all(np.isfinite(v) for v in logs.values())
  for bank in (model.video_bank, model.audio_bank):
    assert bank.bank.dtype == "float32"
    np.testing.assert_allclose(np.linalg.norm(bank.bank.numpy(), axis=1),
                               1.0, atol=1e-6)
  assert model.objective.partition.dtype == "float32" and model.objective.partition.numpy() > 0


def test_uint8_batches_are_finished_inside_the_step():
  rng = np.random.default_rng(1)
  batch = dict(_first_batch(_batches()))
  batch["video"] = rng.integers(0, 256, batch["video"].shape, np.uint8)
  batch[pipeline.VIDEO_JITTER] = rng.uniform(
      [0.6, 0.6, 0.6, -0.2], [1.4, 1.4, 1.4, 0.2], (8, 4)).astype(np.float32)
  batch[pipeline.VIDEO_JITTER_ORDER] = np.stack(
      [rng.permutation(4) for _ in range(8)]).astype(np.int32)
  finished = {k: v.numpy() for k, v in pipeline.finish_video(
      {k: tf.constant(v) for k, v in batch.items()}).items()}
  assert finished["video"].dtype == np.float32
  assert sorted(finished) == ["audio", "index", "label", "video"]
  logs, weights = [], []
  for data in (batch, finished):
    model = _make_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    logs.append(model.train_on_batch(data, return_dict=True))
    weights.append(model.get_weights())
  for key, value in logs[1].items():
    np.testing.assert_allclose(logs[0][key], value, rtol=1e-5, atol=1e-6)
  for w_uint8, w_float in zip(*weights):
    np.testing.assert_allclose(w_uint8, w_float, rtol=1e-5, atol=1e-6)
