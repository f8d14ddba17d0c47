"""Robust xID against float64 NumPy references, and under MirroredStrategy."""

import math
import os
import types

import gin
import numpy as np
import pytest
import tensorflow as tf

from avid_tf.losses import base
from avid_tf.losses import robust_xid
from avid_tf.losses.robust_xid import RobustXIDObjective
from avid_tf.memory import memory_bank
from avid_tf.training import checkpointing
from avid_tf.training.run_info import RunInfo
from conftest import mirrored_strategy
import tiny_av

NUM_ROWS, DIM, BATCH, NUM_NEGATIVES = 24, 6, 5, 7
TAU, TAU_S, TAU_T, MIX = 0.07, 0.035, 0.05, 0.5
WEIGHT_OPTIONS = {"weight_shift": 0.3, "weight_scale": 0.7,
                  "min_weight": 0.1}
INDICES = np.array([3, 17, 0, 3, 22], np.int32)
STEP = 4
_erfc = np.vectorize(math.erfc)


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _softmax(x, axis=-1):
  x = x - x.max(axis=axis, keepdims=True)
  e = np.exp(x)
  return e / e.sum(axis=axis, keepdims=True)


def _banks(seed=0):
  """Banks whose rows agree more or less; row 17 is a faulty pair."""
  rng = np.random.default_rng(seed)
  video = _unit(rng.normal(size=(NUM_ROWS, DIM)))
  noise = rng.uniform(0.1, 3.0, size=(NUM_ROWS, 1))
  audio = _unit(video + noise * rng.normal(size=(NUM_ROWS, DIM)))
  audio[17] = _unit(0.3 * rng.normal(size=DIM) - video[17])
  banks = {"video": memory_bank.MemoryBank(NUM_ROWS, DIM, seed=0),
           "audio": memory_bank.MemoryBank(NUM_ROWS, DIM, seed=1)}
  banks["video"].bank.assign(video.astype(np.float32))
  banks["audio"].bank.assign(audio.astype(np.float32))
  return banks


def _embeddings(seed=1):
  rng = np.random.default_rng(seed)
  return {m: _unit(rng.normal(size=(BATCH, DIM))).astype(np.float32)
          for m in ("video", "audio")}


def _reference_weights(video, audio, indices, weight_shift, weight_scale,
                       min_weight, statistics=None):
  """W(s) in float64; mu, sigma over the bank unless given."""
  bank_scores = np.sum(video * audio, axis=1)
  mean, std = statistics or (bank_scores.mean(), bank_scores.std())
  z = ((bank_scores[indices] - (mean + weight_shift * std))
       / (weight_scale * std))
  weights = min_weight + (1 - min_weight) * 0.5 * _erfc(-z / math.sqrt(2))
  return weights, bank_scores[indices], mean, std


def _reference(embeddings, banks, indices, candidates, soft_targets,
               mix=MIX, weights=None):
  """Loss, per-direction losses, targets and gradients in float64.

  Args:
    candidates: int [B, M] candidate rows of each anchor.
    weights: float [B] or None for uniform.

  Returns:
    Dict of loss, loss_v2a, loss_a2v, targets {v2a, a2v}, target_entropy,
    grad_video, grad_audio (the gradients hold targets and weights fixed).
  """
  v = embeddings["video"].astype(np.float64)
  a = embeddings["audio"].astype(np.float64)
  video = banks["video"].bank.numpy().astype(np.float64)
  audio = banks["audio"].bank.numpy().astype(np.float64)
  rows_a, rows_v = audio[candidates], video[candidates]
  sim_v2a = np.einsum("bd,bcd->bc", v, rows_a)
  sim_a2v = np.einsum("bd,bcd->bc", a, rows_v)
  probs = {"v2a": _softmax(sim_v2a / TAU), "a2v": _softmax(sim_a2v / TAU)}
  positive = (candidates == indices[:, None]).astype(np.float64)
  if soft_targets is None:
    similar = {"v2a": positive, "a2v": positive}
  elif soft_targets == "bootstrap":
    similar = {"v2a": _softmax(sim_v2a / TAU_S),
               "a2v": _softmax(sim_a2v / TAU_S)}
  elif soft_targets == "swapped":
    similar = {"v2a": _softmax(sim_a2v / TAU_S),
               "a2v": _softmax(sim_v2a / TAU_S)}
  elif soft_targets == "within_modal":
    within_v = np.einsum("bd,bcd->bc", video[indices], rows_v) / TAU_S
    within_a = np.einsum("bd,bcd->bc", audio[indices], rows_a) / TAU_S
    similar = {"v2a": _softmax(np.where(positive > 0, -np.inf, within_v)),
               "a2v": _softmax(np.where(positive > 0, -np.inf, within_a))}
  elif soft_targets == "pair_path":
    own_pair = np.sum(rows_v * rows_a, axis=-1) / TAU_T
    similar = {
        "v2a": _softmax(np.einsum("bd,bcd->bc", audio[indices], rows_v)
                        / TAU_S + own_pair),
        "a2v": _softmax(np.einsum("bd,bcd->bc", video[indices], rows_a)
                        / TAU_S + own_pair)}
  else:  # cycle, written out as in the definition.
    first_v = _softmax(sim_v2a / TAU_S)
    first_a = _softmax(sim_a2v / TAU_S)
    back_v = _softmax(np.einsum("bkd,bcd->bkc", rows_a, rows_v) / TAU_S)
    back_a = _softmax(np.einsum("bkd,bcd->bkc", rows_v, rows_a) / TAU_S)
    similar = {"v2a": np.einsum("bk,bkc->bc", first_v, back_v),
               "a2v": np.einsum("bk,bkc->bc", first_a, back_a)}
  targets = {t: (1 - mix) * positive + mix * similar[t] for t in similar}
  losses = {t: -np.sum(targets[t] * np.log(probs[t]), axis=1)
            for t in targets}
  weights = np.ones(len(indices)) if weights is None else weights
  normalised = weights / weights.sum()
  entropies = [-np.sum(t * np.log(np.where(t > 0, t, 1)), axis=1)
               for t in targets.values()]
  # d/dx of -sum_c T_c log softmax(x^T m_c / tau) = sum_c (P_c - T_c) m_c / tau.
  grads = {t: 0.5 * normalised[:, None] * np.einsum(
      "bc,bcd->bd", probs[t] - targets[t], rows) / TAU
           for t, rows in (("v2a", rows_a), ("a2v", rows_v))}
  return {"loss": np.sum(normalised * 0.5 * (losses["v2a"] + losses["a2v"])),
          "loss_v2a": np.sum(normalised * losses["v2a"]),
          "loss_a2v": np.sum(normalised * losses["a2v"]),
          "targets": targets,
          "target_entropy": np.mean(0.5 * (entropies[0] + entropies[1])),
          "grad_video": grads["v2a"], "grad_audio": grads["a2v"]}


def _candidates(kind, indices=INDICES, step=STEP, seed=0):
  if kind == "all":
    return np.tile(np.arange(NUM_ROWS), (len(indices), 1))
  negatives = memory_bank.sample_negatives(
      indices, NUM_ROWS, NUM_NEGATIVES, seed, step).numpy()
  return np.concatenate([indices[:, None], negatives], axis=1)


def _loss_and_gradients(objective, embeddings, banks, indices=INDICES,
                        step=STEP):
  variables = {m: tf.Variable(x) for m, x in embeddings.items()}
  with tf.GradientTape() as tape:
    loss, logs = objective(
        {m: tf.convert_to_tensor(x) for m, x in variables.items()}, banks,
        indices, tf.constant(step, tf.int64))
  grads = tape.gradient(loss, [variables["video"], variables["audio"]])
  return loss.numpy(), {k: v.numpy() for k, v in logs.items()}, grads


@pytest.mark.parametrize("soft_targets", [None, "bootstrap", "swapped",
                                          "within_modal", "cycle",
                                          "pair_path"])
@pytest.mark.parametrize("candidates", ["all", "sampled"])
def test_weighted_loss_logs_and_gradients_match_reference(candidates,
                                                          soft_targets):
  banks, embeddings = _banks(), _embeddings()
  objective = RobustXIDObjective(
      temperature=TAU, num_negatives=NUM_NEGATIVES, candidates=candidates,
      weighting_start_epoch=0, soft_targets=soft_targets, target_mix=MIX,
      target_temperature=TAU_S, pair_temperature=TAU_T, **WEIGHT_OPTIONS)
  loss, logs, grads = _loss_and_gradients(objective, embeddings, banks)

  weights, scores, mean, std = _reference_weights(
      banks["video"].bank.numpy().astype(np.float64),
      banks["audio"].bank.numpy().astype(np.float64), INDICES,
      **WEIGHT_OPTIONS)
  assert weights.std() > 0.05  # The weights do differ between samples.
  reference = _reference(embeddings, banks, INDICES,
                         _candidates(candidates), soft_targets,
                         weights=weights)
  np.testing.assert_allclose(loss, reference["loss"], rtol=1e-5)
  for key in ("loss_v2a", "loss_a2v"):
    np.testing.assert_allclose(logs[key], reference[key], rtol=1e-5)
  np.testing.assert_allclose(0.5 * (logs["loss_v2a"] + logs["loss_a2v"]),
                             loss, rtol=1e-6)
  np.testing.assert_allclose(grads[0].numpy(), reference["grad_video"],
                             rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(grads[1].numpy(), reference["grad_audio"],
                             rtol=1e-4, atol=1e-6)
  expected_keys = {"loss_v2a", "loss_a2v", "weight_mean", "weight_ess",
                   "weight_low_decile_mass", "bank_score_mean",
                   "bank_score_std", "weighting_active"}
  if soft_targets:
    expected_keys.add("target_entropy")
    np.testing.assert_allclose(logs["target_entropy"],
                               reference["target_entropy"], rtol=1e-4,
                               atol=1e-6)
  assert set(logs) == expected_keys
  assert all(v.dtype == np.float32 for v in logs.values())
  assert logs["weighting_active"] == 1.0
  np.testing.assert_allclose(logs["weight_mean"], weights.mean(), rtol=1e-5)
  np.testing.assert_allclose(
      logs["weight_ess"],
      weights.sum() ** 2 / np.sum(weights ** 2) / BATCH, rtol=1e-5)
  low = scores <= mean + std * robust_xid.LOW_DECILE_Z
  assert 0 < low.sum() < BATCH
  np.testing.assert_allclose(logs["weight_low_decile_mass"],
                             weights[low].sum() / weights.sum(), rtol=1e-5)
  np.testing.assert_allclose(logs["bank_score_mean"], mean, rtol=1e-5,
                             atol=1e-7)
  np.testing.assert_allclose(logs["bank_score_std"], std, rtol=1e-5)


@pytest.mark.parametrize("soft_targets", ["bootstrap", "swapped",
                                          "within_modal", "cycle",
                                          "pair_path"])
def test_zero_mix_with_uniform_weights_is_plain_xid(soft_targets):
  banks, embeddings = _banks(), _embeddings()
  options = dict(temperature=TAU, num_negatives=NUM_NEGATIVES,
                 weighting=False)
  plain = RobustXIDObjective(soft_targets=None, **options)
  soft = RobustXIDObjective(soft_targets=soft_targets, target_mix=0.0,
                            **options)
  plain_loss, plain_logs, plain_grads = _loss_and_gradients(
      plain, embeddings, banks)
  loss, logs, grads = _loss_and_gradients(soft, embeddings, banks)
  assert loss == plain_loss
  for grad, plain_grad in zip(grads, plain_grads):
    np.testing.assert_array_equal(grad.numpy(), plain_grad.numpy())
  assert logs["weighting_active"] == 0.0 and logs["weight_mean"] == 1.0
  assert logs["target_entropy"] == pytest.approx(0.0, abs=1e-7)

  reference = _reference(embeddings, banks, INDICES, _candidates("sampled"),
                         None)
  np.testing.assert_allclose(plain_loss, reference["loss"], rtol=1e-5)
  # Plain xID: the mean over the batch of -log P of the positive, halved.
  candidates = _candidates("sampled")
  v, rows = embeddings["video"], banks["audio"].bank.numpy()[candidates]
  log_p = np.log(_softmax(np.einsum("bd,bcd->bc", v, rows) / TAU))[:, 0]
  np.testing.assert_allclose(plain_logs["loss_v2a"], -log_p.mean(),
                             rtol=1e-5)


@pytest.mark.parametrize("soft_targets", ["bootstrap", "swapped",
                                          "within_modal", "cycle",
                                          "pair_path"])
@pytest.mark.parametrize("candidates", ["all", "sampled"])
def test_targets_are_distributions_without_gradient(candidates,
                                                    soft_targets):
  banks, embeddings = _banks(), _embeddings()
  objective = RobustXIDObjective(
      num_negatives=NUM_NEGATIVES, candidates=candidates,
      soft_targets=soft_targets)
  variables = {m: tf.Variable(x) for m, x in embeddings.items()}
  with tf.GradientTape(persistent=True) as tape:
    terms = objective.terms(
        {m: tf.convert_to_tensor(x) for m, x in variables.items()}, banks,
        INDICES, STEP)
  width = NUM_ROWS if candidates == "all" else NUM_NEGATIVES + 1
  positive_column = (INDICES if candidates == "all"
                     else np.zeros(BATCH, np.int32))
  for log_probs, targets in terms.values():
    assert log_probs.shape == targets.shape == (BATCH, width)
    targets_np = targets.numpy()
    assert targets_np.min() >= 0
    np.testing.assert_allclose(targets_np.sum(axis=1), 1.0, atol=1e-6)
    # At least 1 - lambda on the positive, the rest spread by S.
    own = targets_np[np.arange(BATCH), positive_column]
    assert np.all(own >= 1.0 - objective.target_mix - 1e-6)
    assert np.any(own < 1.0 - 1e-3)
    assert tape.gradient(targets, list(variables.values())) == [None, None]
  assert tape.gradient(terms["v2a"][0], variables["video"]) is not None
  assert tape.gradient(terms["a2v"][0], variables["audio"]) is not None


def test_weights_are_monotone_bounded_and_without_gradient():
  scores = tf.constant(np.linspace(-3.0, 3.0, 601), tf.float32)
  mean, std = 0.2, 0.3
  for shift, scale, min_weight in ((0.0, 0.5, 0.0), (0.5, 1.5, 0.25)):
    with tf.GradientTape() as tape:
      tape.watch(scores)
      weights = robust_xid.agreement_weights(scores, mean, std, shift,
                                             scale, min_weight)
    assert tape.gradient(weights, scores) is None
    weights = weights.numpy()
    assert np.all(np.diff(weights) >= 0)
    assert weights.min() >= min_weight and weights.max() <= 1.0
    assert weights[0] < min_weight + 0.01 and weights[-1] > 0.95
    midpoint = robust_xid.agreement_weights(mean + shift * std, mean, std,
                                            shift, scale, min_weight)
    np.testing.assert_allclose(midpoint.numpy(),
                               min_weight + (1 - min_weight) / 2, rtol=1e-6)
  # All scores equal (sigma 0): a step at mu, no division by zero.
  flat = robust_xid.agreement_weights([0.1, 0.2, 0.3], 0.2, 0.0).numpy()
  np.testing.assert_allclose(flat, [0.0, 0.5, 1.0])


def test_running_statistics_follow_an_ema_of_the_batch_moments():
  banks, embeddings = _banks(), _embeddings()
  momentum = 0.9
  objective = RobustXIDObjective(
      num_negatives=NUM_NEGATIVES, weighting_start_epoch=0,
      running_statistics=True, statistics_momentum=momentum,
      soft_targets=None, **WEIGHT_OPTIONS)
  video = banks["video"].bank.numpy().astype(np.float64)
  audio = banks["audio"].bank.numpy().astype(np.float64)
  bank_scores = np.sum(video * audio, axis=1)
  before = objective.current_statistics(banks)
  np.testing.assert_allclose([x.numpy() for x in before],
                             [bank_scores.mean(), bank_scores.std()],
                             rtol=1e-5)

  moments = None
  for step, indices in enumerate((INDICES, np.array([1, 2, 5, 8, 8]))):
    batch = bank_scores[indices]
    batch_moments = np.array([batch.mean(), np.mean(batch ** 2)])
    moments = batch_moments if moments is None else (
        momentum * moments + (1 - momentum) * batch_moments)
    mean, std = moments[0], math.sqrt(moments[1] - moments[0] ** 2)
    loss, logs, _ = _loss_and_gradients(objective, embeddings, banks,
                                        indices=indices, step=step)
    np.testing.assert_allclose(objective.score_moments.numpy(), moments,
                               rtol=1e-5)
    np.testing.assert_allclose([logs["bank_score_mean"],
                                logs["bank_score_std"]], [mean, std],
                               rtol=1e-4)
    weights, _, _, _ = _reference_weights(video, audio, indices,
                                          statistics=(mean, std),
                                          **WEIGHT_OPTIONS)
    reference = _reference(embeddings, banks, indices,
                           _candidates("sampled", indices, step), None,
                           weights=weights)
    np.testing.assert_allclose(loss, reference["loss"], rtol=1e-5)
  assert objective.score_updates.numpy() == 2
  np.testing.assert_allclose([x.numpy() for x in
                              objective.current_statistics(banks)],
                             [mean, std], rtol=1e-4)


def test_weighting_starts_at_the_step_the_callback_sets():
  banks, embeddings = _banks(), _embeddings()
  objective = RobustXIDObjective(num_negatives=NUM_NEGATIVES,
                                 weighting_start_epoch=2, soft_targets=None)
  # Not set yet (no callback ran): never weighted.
  _, logs, _ = _loss_and_gradients(objective, embeddings, banks, step=10**6)
  assert logs["weighting_active"] == 0.0
  run = RunInfo(model_dir="", num_data=NUM_ROWS, steps_per_epoch=5,
                strategy=None)
  (callback,) = objective.callbacks(run)
  callback.on_train_begin()
  assert objective.weighting_start_step.numpy() == 10
  assert objective.weighting_start_step.dtype == "int64"
  uniform = _reference(embeddings, banks, INDICES,
                       _candidates("sampled", step=9), None)
  loss, logs, _ = _loss_and_gradients(objective, embeddings, banks, step=9)
  assert logs["weighting_active"] == 0.0 and logs["weight_mean"] == 1.0
  np.testing.assert_allclose(loss, uniform["loss"], rtol=1e-5)
  _, logs, _ = _loss_and_gradients(objective, embeddings, banks, step=10)
  assert logs["weighting_active"] == 1.0 and logs["weight_mean"] < 1.0
  immediate = RobustXIDObjective(weighting_start_epoch=0)
  assert immediate.weighting_start_step.numpy() == 0


def _pairwise_auc(scores, labels):
  positive, negative = scores[labels], scores[~labels]
  greater = positive[:, None] > negative[None, :]
  equal = positive[:, None] == negative[None, :]
  return np.mean(greater + 0.5 * equal)


def test_roc_auc_matches_pairwise_count_with_ties():
  rng = np.random.default_rng(3)
  for size in (2, 7, 50):
    labels = np.arange(size) % 2 == 0
    rng.shuffle(labels)
    scores = np.round(rng.normal(size=size) + labels, 1)  # Many ties.
    assert robust_xid.roc_auc(scores, labels) == pytest.approx(
        _pairwise_auc(scores, labels), abs=1e-12)
  assert robust_xid.roc_auc([0.1, 0.1, 0.1], [True, False, True]) == 0.5
  assert math.isnan(robust_xid.roc_auc([0.1, 0.2], [True, True]))
  with pytest.raises(ValueError, match="scores"):
    robust_xid.roc_auc([0.1, 0.2], [True])


def test_callback_reports_bank_weights_auc_and_histograms(tmp_path):
  banks = _banks()
  objective = RobustXIDObjective(num_negatives=NUM_NEGATIVES,
                                 **WEIGHT_OPTIONS)
  video = banks["video"].bank.numpy().astype(np.float64)
  audio = banks["audio"].bank.numpy().astype(np.float64)
  weights, scores, mean, std = _reference_weights(
      video, audio, np.arange(NUM_ROWS), **WEIGHT_OPTIONS)
  faulty = (scores < np.median(scores)).astype(np.int64)
  faulty[:3] = 1 - faulty[:3]  # Not perfectly separable.
  faulty[3] = -1  # Unknown: left out.
  log_dir = str(tmp_path / "train")
  run = RunInfo(model_dir=str(tmp_path), num_data=NUM_ROWS,
                steps_per_epoch=4, strategy=None, log_dir=log_dir,
                instance_faulty=faulty)
  (callback,) = objective.callbacks(run)
  callback.set_model(types.SimpleNamespace(
      banks=banks, optimizer=types.SimpleNamespace(
          iterations=tf.Variable(8, dtype=tf.int64))))
  callback.on_train_begin()
  assert objective.weighting_start_step.numpy() == 4
  logs = {"loss": 1.0}
  callback.on_epoch_end(1, logs)

  summary = objective.bank_weight_summary(banks)
  np.testing.assert_allclose(summary["weights"].numpy(), weights, rtol=1e-4,
                             atol=1e-6)
  known = faulty >= 0
  tf_weights = summary["weights"].numpy()
  assert logs["faulty_weight_auc"] == pytest.approx(
      _pairwise_auc(-tf_weights[known], faulty[known] == 1), abs=1e-12)
  assert 0.5 < logs["faulty_weight_auc"] < 1.0
  np.testing.assert_allclose(
      logs["bank_weight_ess"],
      weights.sum() ** 2 / np.sum(weights ** 2) / NUM_ROWS, rtol=1e-4)
  np.testing.assert_allclose(logs["bank_weight_mean"], weights.mean(),
                             rtol=1e-4)
  low = scores <= mean + std * robust_xid.LOW_DECILE_Z
  np.testing.assert_allclose(logs["bank_weight_low_decile_mass"],
                             weights[low].sum() / weights.sum(), rtol=1e-4)
  assert callback.history == [(1, {k: v for k, v in logs.items()
                                   if k != "loss"})]
  assert any(name.startswith("events.out") for name in os.listdir(log_dir))

  # Without faulty flags (or with one class only) there is no AUC.
  for flags in (None, np.ones(NUM_ROWS, np.int64)):
    (callback,) = objective.callbacks(
        RunInfo(model_dir="", num_data=NUM_ROWS, steps_per_epoch=4,
                strategy=None, instance_faulty=flags))
    callback.set_model(types.SimpleNamespace(banks=banks))
    logs = {}
    callback.on_epoch_end(0, logs)
    assert "faulty_weight_auc" not in logs and "bank_weight_ess" in logs
  with pytest.raises(ValueError, match="instance_faulty"):
    objective.callbacks(RunInfo(model_dir="", num_data=NUM_ROWS,
                                steps_per_epoch=4, strategy=None,
                                instance_faulty=np.zeros(3, np.int64)))


MODEL_DATA, MODEL_DIM, MODEL_NEGATIVES = 32, 8, 16


def _model_batches():
  return tiny_av.random_batches(MODEL_DATA)


def _make_model(objective):
  return tiny_av.tiny_model(objective, MODEL_DATA, MODEL_DIM,
                            weight_decay=1e-3)


def _model_objective():
  return RobustXIDObjective(
      num_negatives=MODEL_NEGATIVES, running_statistics=True,
      statistics_momentum=0.5, soft_targets="cycle", **WEIGHT_OPTIONS)


def _initial_weights(data):
  model = _make_model(_model_objective())
  model(tiny_av.first_batch(data))
  return model.get_weights()


def _fit(strategy, data, initial_weights, jit_compile=False):
  """Three epochs of one step; weighting starts at step 1."""
  run = RunInfo(model_dir="", num_data=MODEL_DATA, steps_per_epoch=1,
                strategy=strategy,
                instance_faulty=np.arange(MODEL_DATA) % 2)
  callbacks = []

  def objective_callbacks(model):
    callbacks.extend(model.objective.callbacks(run))
    return callbacks

  model, logs = tiny_av.fit(
      strategy, lambda: _make_model(_model_objective()), data,
      initial_weights, jit_compile=jit_compile,
      callbacks=objective_callbacks, epochs=3, steps_per_epoch=1)
  return model, logs, callbacks[0].history


def _assert_same_training(model, logs, history, reference, reference_logs,
                          reference_history):
  assert [step["weighting_active"] for step in reference_logs] == [0, 1, 1]
  tiny_av.assert_same_training(model, logs, reference, reference_logs,
                               num_steps=3, log_atol=1e-7)
  assert [epoch for epoch, _ in history] == [0, 1, 2]
  for (_, scalars), (_, reference_scalars) in zip(history,
                                                  reference_history):
    assert set(scalars) == set(reference_scalars)
    for key, value in reference_scalars.items():
      np.testing.assert_allclose(scalars[key], value, rtol=1e-5, err_msg=key)


@pytest.mark.slow
def test_mirrored_fit_matches_default_strategy_and_replicas_agree():
  data = _model_batches()
  initial = _initial_weights(data)
  single, single_logs, single_history = _fit(tf.distribute.get_strategy(),
                                             data, initial)
  strategy = mirrored_strategy()
  mirrored, mirrored_logs, mirrored_history = _fit(strategy, data, initial)

  assert mirrored.optimizer.iterations.numpy() == 3
  assert mirrored.objective.weighting_start_step.numpy() == 1
  assert mirrored.objective.score_updates.numpy() == 3
  _assert_same_training(mirrored, mirrored_logs, mirrored_history, single,
                        single_logs, single_history)
  # The weights differ within a batch, so the global normalisation matters.
  assert single_logs[-1]["weight_ess"] < 0.99
  tiny_av.assert_replicas_identical(strategy, mirrored)


@pytest.mark.slow
def test_jit_compiled_fit_matches_graph_fit():
  data = _model_batches()
  initial = _initial_weights(data)
  graph, graph_logs, graph_history = _fit(tf.distribute.get_strategy(), data,
                                          initial)
  compiled, compiled_logs, compiled_history = _fit(
      tf.distribute.get_strategy(), data, initial, jit_compile=True)
  assert compiled.jit_compile
  _assert_same_training(compiled, compiled_logs, compiled_history, graph,
                        graph_logs, graph_history)


def test_state_is_checkpointed_and_reset_at_train_begin(tmp_path):
  data = _model_batches()
  model = _make_model(_model_objective())
  model(tiny_av.first_batch(data))
  paths = {v.path for v in model.objective.state.values()}
  assert paths == {"objective/weighting_start_step",
                   "objective/score_moments", "objective/score_updates"}
  model.objective.weighting_start_step.assign(7)
  model.objective.score_moments.assign([0.25, 0.5])
  model.objective.score_updates.assign(9)
  prefix = checkpointing.make_checkpoint(model).save(str(tmp_path / "ckpt"))

  resumed = _make_model(_model_objective())
  resumed(tiny_av.first_batch(data))
  # The encoders' paths are numbered per process; the objective's are not.
  checkpointing.make_checkpoint(resumed).restore(prefix).expect_partial()
  for name, variable in model.objective.state.items():
    np.testing.assert_array_equal(resumed.objective.state[name].numpy(),
                                  variable.numpy())
  # A resumed run with another epoch length moves the start at train begin.
  (callback,) = resumed.objective.callbacks(
      RunInfo(model_dir="", num_data=MODEL_DATA, steps_per_epoch=3,
              strategy=None))
  callback.on_train_begin()
  assert resumed.objective.weighting_start_step.numpy() == 3


def test_builder_is_gin_configurable_and_names_the_layer():
  gin.parse_config("""
      build_robust_xid_objective.soft_targets = "within_modal"
      build_robust_xid_objective.target_mix = 0.3
      build_robust_xid_objective.running_statistics = True
  """)
  objective = robust_xid.build_robust_xid_objective(num_data=10, seed=4)
  assert objective.name == base.OBJECTIVE_NAME
  assert (objective.soft_targets, objective.target_mix,
          objective.running_statistics, objective.seed) == (
              "within_modal", 0.3, True, 4)
  assert set(objective.state) == {"weighting_start_step", "score_moments",
                                  "score_updates"}
  default = RobustXIDObjective(soft_targets=None)
  assert default.soft_targets == "none"
  assert set(default.state) == {"weighting_start_step"}


@pytest.mark.parametrize("kwargs, message", [
    ({"temperature": 0.0}, "temperature"),
    ({"target_temperature": -1.0}, "temperature"),
    ({"pair_temperature": 0.0}, "pair_temperature"),
    ({"num_negatives": 0}, "num_negatives"),
    ({"candidates": "some"}, "candidates"),
    ({"soft_targets": "teacher"}, "soft_targets"),
    ({"weighting_start_epoch": -1}, "weighting_start_epoch"),
    ({"weight_scale": 0.0}, "weight_scale"),
    ({"min_weight": 1.5}, "min_weight"),
    ({"statistics_momentum": 1.0}, "statistics_momentum"),
    ({"target_mix": -0.1}, "target_mix"),
])
def test_invalid_settings_raise(kwargs, message):
  with pytest.raises(ValueError, match=message):
    RobustXIDObjective(**kwargs)


def test_robust_gin_and_the_builder_defaults_agree():
  """robust.gin is the builder's defaults with the weights switched on."""
  import inspect  # pylint: disable=g-import-not-at-top
  from avid_tf.training import gin_utils  # pylint: disable=g-import-not-at-top
  defaults = {name: p.default for name, p in inspect.signature(
      robust_xid.build_robust_xid_objective).parameters.items()
              if p.default is not inspect.Parameter.empty}
  with gin_utils.isolated_config():
    gin_utils.parse_gin([os.path.join(gin_utils.GIN_ROOT, "robust_xid",
                                      "robust.gin")], skip_unknown=True)
    robust = robust_xid.build_robust_xid_objective(num_data=8)
  assert robust.weighting and defaults["weighting"]
  for name in ("soft_targets", "weight_shift", "weight_scale", "min_weight",
               "target_mix", "target_temperature", "pair_temperature"):
    assert getattr(robust, name) == defaults[name], name
