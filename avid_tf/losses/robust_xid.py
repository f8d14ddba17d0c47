"""Robust cross-modal instance discrimination (docs/methods.md, "Robust xID").

Morgado, Misra and Vasconcelos, "Robust Audio-Visual Instance
Discrimination" (CVPR 2021), name two kinds of noise in cross-modal
instance discrimination (xID): faulty positives, whose audio and video say
nothing about each other, and faulty negatives, other instances that are
semantically related to the anchor. The paper counters the first with a
weighted contrastive loss that down-weighs poorly corresponding instances
and the second with a soft target distribution that estimates the
relationships between instances. That is what we take from the paper; the
formulas and constants below are our choices (there is no public code).

Base loss (our formulation). For anchor i with candidate memory rows C_i
(i itself and K uniform negatives, or the whole bank):

  P(a_bar_c | v_i) = softmax_{c in C_i}(v_i^T a_bar_c / tau),
  P(v_bar_c | a_i) likewise over the video bank,
  L_i = 1/2 [-sum_c T_v(c|i) log P(a_bar_c|v_i)
             - sum_c T_a(c|i) log P(v_bar_c|a_i)],

averaged over the two directions like AVID's cross-modal terms. Hard
targets T = 1[c = i] give plain xID.

Faulty positives. s_i = v_bar_i^T a_bar_i, the agreement of the instance's
own bank rows before this step's update, scores how well its audio and
video correspond. With mu, sigma the mean and standard deviation of s over
the bank (recomputed each step, or a running estimate):

  w_i = w_min + (1 - w_min) Phi((s_i - (mu + delta sigma)) / (kappa sigma)),

and the loss is sum_i w_i L_i / sum_i w_i over the global batch. Weights
are uniform until `weighting_start_epoch` (the banks start random) and
carry no gradient.

Faulty negatives. T(c|i) = (1 - lambda) 1[c = i] + lambda S(c|i), with S one
of: bootstrap (the direction's own prediction at the sharper temperature
tau_s), swapped (the other direction's prediction), within_modal (the
anchor's own bank row against the other candidates' rows of the same
modality; the anchor itself is left out of S, it would always win), cycle
(v_i -> a_bar_k -> v_bar_c over the candidates), pair_path (the path through
both instances' own pairs: S_v(c|i) ~ exp(a_bar_i^T v_bar_c / tau_s +
v_bar_c^T a_bar_c / tau_t), a candidate whose own audio and video agree and
whose video resembles i's audio; the term v_bar_i^T a_bar_i would be
constant over c and drops out; S_a likewise with the modalities swapped).
Targets carry no gradient.
lambda = 0 with uniform weights is exactly plain xID.
"""

import math
import statistics

import gin
import keras
import numpy as np
import tensorflow as tf

from avid_tf import errors
from avid_tf.losses import avid
from avid_tf.losses import base
from avid_tf.memory import memory_bank

CANDIDATES = ("sampled", "all")
SOFT_TARGETS = ("none", "bootstrap", "swapped", "within_modal", "cycle",
                "pair_path")
DIRECTIONS = ("v2a", "a2v")

# Phi^{-1}(0.1): the lowest-agreement decile of the bank under the same
# Gaussian model of the scores that the weights use.
LOW_DECILE_Z = statistics.NormalDist().inv_cdf(0.1)
# Floor of sigma in the weights: a bank whose scores are all equal (sigma 0)
# gives a step function instead of a division by zero.
MIN_SCORE_STD = 1e-6
# Value of the start step before the callback sets it: never weight.
WEIGHTING_NOT_SET = np.iinfo(np.int64).max


def gaussian_cdf(x):
  """Standard normal CDF, Phi(x) = erfc(-x / sqrt(2)) / 2 (accurate tails)."""
  return 0.5 * tf.math.erfc(-x / math.sqrt(2.0))


def agreement_weights(scores, mean, std, shift=0.0, scale=0.5,
                      min_weight=0.0):
  """Weights of instances by the agreement of their audio and video rows.

  Args:
    scores: float s_i = v_bar_i^T a_bar_i, any shape.
    mean: mu of the scores over the bank.
    std: sigma of the scores over the bank (floored at MIN_SCORE_STD).
    shift: delta; the weight is halfway between w_min and 1 at mu + delta
      sigma.
    scale: kappa > 0; the Gaussian CDF's width is kappa sigma.
    min_weight: w_min in [0, 1], the weight of the worst instances.

  Returns:
    float32 weights of the shape of `scores`, in [w_min, 1], non-decreasing
    in s, with no gradient.
  """
  scores = tf.cast(scores, tf.float32)
  std = tf.maximum(tf.cast(std, tf.float32), MIN_SCORE_STD)
  z = (scores - (tf.cast(mean, tf.float32) + shift * std)) / (scale * std)
  weights = min_weight + (1.0 - min_weight) * gaussian_cdf(z)
  return tf.stop_gradient(weights)


def bank_agreement(banks):
  """Scores s_n = v_bar_n^T a_bar_n of every bank row, float32 [N]."""
  video, audio = (_all_rows(banks[m]) for m in ("video", "audio"))
  return tf.reduce_sum(video * audio, axis=1)


def score_statistics(scores):
  """Mean and (population) standard deviation of scores [n], float32."""
  mean = tf.reduce_mean(scores)
  return mean, tf.sqrt(tf.reduce_mean(tf.square(scores - mean)))


def cross_entropy(targets, log_probs):
  """-sum_c T(c) log P(c) per anchor: float32 [B]."""
  return -tf.reduce_sum(targets * log_probs, axis=-1)


def entropy(distribution):
  """-sum_c p log p per row (0 log 0 = 0): float32 [B]."""
  return -tf.reduce_sum(tf.math.xlogy(distribution, distribution), axis=-1)


def roc_auc(scores, labels):
  """Rank-based ROC-AUC: P(score of a positive > score of a negative).

  Ties count half (average ranks, the Mann-Whitney U statistic), so it is
  exact for saturated weights.

  Args:
    scores: float array [n]; higher means "more likely positive".
    labels: bool array [n], True for the positive class.

  Returns:
    The AUC as a Python float; NaN when a class is empty (undefined).

  Raises:
    ValueError: if the shapes differ.
  """
  scores = np.asarray(scores, np.float64).ravel()
  labels = np.asarray(labels, bool).ravel()
  if scores.shape != labels.shape:
    raise ValueError(f"roc_auc: {scores.size} scores for {labels.size} "
                     f"labels")
  num_positive = int(labels.sum())
  num_negative = labels.size - num_positive
  if not num_positive or not num_negative:
    return float("nan")
  _, group, counts = np.unique(scores, return_inverse=True,
                               return_counts=True)
  # Tied values share the mean of the 1-based ranks they occupy.
  ranks = np.cumsum(counts) - (counts - 1) / 2.0
  rank_sum = ranks[group][labels].sum()
  return float((rank_sum - num_positive * (num_positive + 1) / 2.0)
               / (num_positive * num_negative))


def _all_rows(bank):
  return bank.gather(tf.range(bank.num_rows))


class RobustXIDObjective(base.Objective):
  """Weighted soft-target cross-modal instance discrimination.

  State: `weighting_start_step` (int64, set from the run's steps per epoch
  by the callback at train begin; checkpointed) and, with running
  statistics, `score_moments` (float32 [2], EMA of E[s] and E[s^2]) and
  `score_updates` (int64, EMA updates so far).

  Logs (float32 scalars, the same on every replica): loss_v2a, loss_a2v
  (weighted global-batch means of each direction; their mean is the loss),
  weight_mean, weight_ess ((sum w)^2 / sum w^2 divided by the global batch
  size: 1 for uniform weights), weight_low_decile_mass (share of the
  batch's weight on samples with s <= mu + sigma Phi^{-1}(0.1)),
  bank_score_mean, bank_score_std (the mu, sigma the weights use),
  weighting_active (0 or 1) and, with soft targets, target_entropy (mean
  over the global batch and both directions of the entropy of T, nats).

  Args:
    temperature: tau of the predictions.
    num_negatives: K negatives per anchor when candidates="sampled".
    candidates: "sampled" (i and K uniform negatives, the same for both
      directions) or "all" (every bank row; exact, O(B N D) memory).
    weighting: whether faulty positives are down-weighted; False keeps
      uniform weights (the statistics are still computed and logged).
    weighting_start_epoch: first epoch with agreement weights.
    weight_shift: delta of the weights.
    weight_scale: kappa > 0 of the weights.
    min_weight: w_min in [0, 1].
    running_statistics: estimate mu, sigma with an EMA of the global
      batch's score moments (O(B D) a step) instead of over the whole bank
      (O(N D) a step).
    statistics_momentum: EMA momentum in [0, 1); the first update takes
      the batch's moments as they are.
    soft_targets: None/"none", "bootstrap", "swapped", "within_modal",
      "cycle" or "pair_path".
    target_mix: lambda in [0, 1], the mass of T on S.
    target_temperature: tau_s > 0 of S.
    pair_temperature: tau_t > 0 of the candidates' own-pair agreement in
      "pair_path".
    seed: seed of the negative draws (with the step).
    name: layer name.

  Raises:
    ValueError: for settings outside the ranges above.
  """

  def __init__(self, temperature=0.07, num_negatives=1024,
               candidates="sampled", weighting=True, weighting_start_epoch=1,
               weight_shift=-2.0, weight_scale=1.0, min_weight=0.25,
               running_statistics=False, statistics_momentum=0.99,
               soft_targets="bootstrap", target_mix=0.75,
               target_temperature=0.035, pair_temperature=0.07, seed=0,
               name=base.OBJECTIVE_NAME, **kwargs):
    super().__init__(name=name, **kwargs)
    soft_targets = soft_targets or "none"
    if min(temperature, target_temperature, pair_temperature) <= 0:
      raise errors.InvalidValueError(
          f"temperatures must be > 0, got temperature={temperature}, "
          f"target_temperature={target_temperature}, pair_temperature="
          f"{pair_temperature}")
    if num_negatives < 1:
      raise errors.InvalidValueError(
          f"num_negatives must be >= 1, got {num_negatives}")
    if candidates not in CANDIDATES:
      raise errors.InvalidValueError(
          f"candidates must be one of {CANDIDATES}, got "
          f"'{candidates}'")
    if soft_targets not in SOFT_TARGETS:
      raise errors.InvalidValueError(f"soft_targets must be None or one of "
                                     f"{SOFT_TARGETS}, got '{soft_targets}'")
    if weighting_start_epoch < 0:
      raise errors.InvalidValueError(f"weighting_start_epoch must be >= 0, got "
                                     f"{weighting_start_epoch}")
    if weight_scale <= 0:
      raise errors.InvalidValueError(
          f"weight_scale must be > 0, got {weight_scale}")
    if not 0.0 <= min_weight <= 1.0:
      raise errors.InvalidValueError(
          f"min_weight must be in [0, 1], got {min_weight}")
    if not 0.0 <= statistics_momentum < 1.0:
      raise errors.InvalidValueError(
          f"statistics_momentum must be in [0, 1), got "
                       f"{statistics_momentum}")
    if not 0.0 <= target_mix <= 1.0:
      raise errors.InvalidValueError(
          f"target_mix must be in [0, 1], got {target_mix}")
    self.temperature = float(temperature)
    self.num_negatives = int(num_negatives)
    self.candidates = candidates
    self.weighting = bool(weighting)
    self.weighting_start_epoch = int(weighting_start_epoch)
    self.weight_shift = float(weight_shift)
    self.weight_scale = float(weight_scale)
    self.min_weight = float(min_weight)
    self.running_statistics = bool(running_statistics)
    self.statistics_momentum = float(statistics_momentum)
    self.soft_targets = soft_targets
    self.target_mix = float(target_mix)
    self.target_temperature = float(target_temperature)
    self.pair_temperature = float(pair_temperature)
    self.seed = int(seed)
    initial_start = (0 if self.weighting_start_epoch == 0
                     else WEIGHTING_NOT_SET)
    self.weighting_start_step = self.add_state(
        "weighting_start_step", (), dtype="int64",
        initializer=lambda shape, dtype=None: tf.fill(
            shape, tf.constant(initial_start, tf.int64)))
    if self.running_statistics:
      self.score_moments = self.add_state("score_moments", (2,))
      self.score_updates = self.add_state("score_updates", (),
                                          dtype="int64")

  def set_weighting_start(self, steps_per_epoch):
    """Sets the first weighted step to weighting_start_epoch epochs in.

    Args:
      steps_per_epoch: optimizer steps per epoch of the run.
    """
    self.weighting_start_step.assign(
        self.weighting_start_epoch * int(steps_per_epoch))

  def instance_weights(self, scores, mean, std):
    """Agreement weights W(s) with this objective's delta, kappa, w_min."""
    return agreement_weights(scores, mean, std, self.weight_shift,
                             self.weight_scale, self.min_weight)

  def current_statistics(self, banks):
    """The (mu, sigma) the next weights would use, without updating the EMA.

    Args:
      banks: {"video", "audio"} MemoryBank.

    Returns:
      float32 scalars (mu, sigma): the bank's, or the running estimate once
      it has had an update (before that the bank's stand in).
    """
    bank_mean, bank_std = score_statistics(bank_agreement(banks))
    if not self.running_statistics:
      return bank_mean, bank_std
    running_mean, running_std = _moments_to_statistics(
        tf.convert_to_tensor(self.score_moments.value))
    seen = self.score_updates.value > 0
    return (tf.where(seen, running_mean, bank_mean),
            tf.where(seen, running_std, bank_std))

  def _step_statistics(self, banks, scores):
    """(mu, sigma) of this step; advances the running estimate if used."""
    if not self.running_statistics:
      return score_statistics(bank_agreement(banks))
    sums = base.cross_replica_sum(tf.stack([
        tf.reduce_sum(scores), tf.reduce_sum(tf.square(scores)),
        tf.cast(tf.size(scores), tf.float32)]))
    batch_moments = sums[:2] / sums[2]
    previous = tf.convert_to_tensor(self.score_moments.value)
    updates = tf.convert_to_tensor(self.score_updates.value)
    momentum = self.statistics_momentum
    moments = tf.where(updates > 0,
                       momentum * previous + (1.0 - momentum) * batch_moments,
                       batch_moments)
    self.score_moments.assign(moments)
    self.score_updates.assign(updates + 1)
    return _moments_to_statistics(moments)

  def _candidate_rows(self, banks, indices, step):
    """Candidate rows of both banks and the one-hot of the positive.

    Returns:
      ({"video", "audio"}: float32 [B, M, D], or [1, N, D] shared by the
      batch for candidates="all"; positive: float32 [B, M]).
    """
    if self.candidates == "all":
      rows = {m: _all_rows(bank)[None] for m, bank in banks.items()}
      return rows, tf.one_hot(indices, banks["video"].num_rows)
    negatives = banks["video"].sample_negatives(
        indices, self.num_negatives, self.seed, step)
    candidates = tf.concat([indices[:, None], negatives], axis=1)
    rows = {m: bank.gather(candidates) for m, bank in banks.items()}
    return rows, tf.one_hot(tf.zeros_like(indices), self.num_negatives + 1)

  def _similarity_targets(self, similarities, rows, positive, banks,
                          indices):
    """The similarity distributions S of the chosen variant.

    Args:
      similarities: {"v2a": v_i^T a_bar_c, "a2v": a_i^T v_bar_c}, [B, M].
      rows: the candidate rows of `_candidate_rows`.
      positive: float32 [B, M], one-hot of the anchor's own candidate.
      banks: the memory banks.
      indices: int32 [B].

    Returns:
      (S_v, S_a): float32 [B, M], each row summing to one; S_v is the
      target of the v2a prediction, S_a of the a2v one.
    """
    sharp = {t: tf.nn.softmax(s / self.target_temperature, axis=-1)
             for t, s in similarities.items()}
    if self.soft_targets == "bootstrap":
      return sharp["v2a"], sharp["a2v"]
    if self.soft_targets == "swapped":
      return sharp["a2v"], sharp["v2a"]
    if self.soft_targets == "within_modal":
      # The anchor's own row scores 1 against itself and would take nearly
      # all of S at any useful tau_s, so S spreads over the other rows only.
      logits = [avid.memory_logits(banks[m].gather(indices), rows[m],
                                   self.target_temperature)
                for m in ("video", "audio")]
      return tuple(tf.nn.softmax(tf.where(positive > 0, -np.inf, x), axis=-1)
                   for x in logits)
    if self.soft_targets == "pair_path":
      return self._pair_path_targets(rows, banks, indices)
    # cycle: X[k, c] = a_bar_k^T v_bar_c over the candidates, [B|1, M, M].
    # A matmul, not an elementwise product ([B, M, M, D] would not fit);
    # it may run in TF32 on GPUs, which only touches the targets.
    cross = tf.linalg.matmul(rows["audio"], rows["video"],
                             transpose_b=True) / self.target_temperature
    audio_to_video = tf.nn.softmax(cross, axis=2)  # P(v_bar_c | a_bar_k)
    video_to_audio = tf.nn.softmax(cross, axis=1)  # [c, k]: P(a_bar_c|v_bar_k)
    target_v = tf.linalg.matmul(sharp["v2a"][:, None, :], audio_to_video)
    target_a = tf.linalg.matmul(video_to_audio, sharp["a2v"][:, :, None])
    return target_v[:, 0, :], target_a[:, :, 0]

  def _pair_path_targets(self, rows, banks, indices):
    """S of "pair_path": (S_v, S_a), float32 [B, M] (see the module doc)."""
    own_pair = tf.reduce_sum(rows["video"] * rows["audio"], axis=-1)
    own_pair = own_pair / self.pair_temperature
    anchor = {m: banks[m].gather(indices) for m in ("video", "audio")}
    target_v = avid.memory_logits(anchor["audio"], rows["video"],
                                  self.target_temperature) + own_pair
    target_a = avid.memory_logits(anchor["video"], rows["audio"],
                                  self.target_temperature) + own_pair
    return tf.nn.softmax(target_v, axis=-1), tf.nn.softmax(target_a, axis=-1)

  def terms(self, embeddings, banks, indices, step):
    """Log-predictions and targets of both directions over the candidates.

    Args:
      embeddings: {"video", "audio"} float [B, D], unit norm.
      banks: {"video", "audio"} MemoryBank.
      indices: int [B], the anchors' memory rows.
      step: int scalar, seed of the negative draws.

    Returns:
      {"v2a": (log P(a_bar_c|v_i), T_v), "a2v": (log P(v_bar_c|a_i), T_a)},
      float32 [B, M] each; the targets carry no gradient.
    """
    indices = tf.cast(indices, tf.int32)
    rows, positive = self._candidate_rows(banks, indices, step)
    similarities = {
        "v2a": avid.memory_logits(embeddings["video"], rows["audio"], 1.0),
        "a2v": avid.memory_logits(embeddings["audio"], rows["video"], 1.0)}
    log_probs = {t: tf.nn.log_softmax(s / self.temperature, axis=-1)
                 for t, s in similarities.items()}
    if self.soft_targets == "none":
      targets = (positive, positive)
    else:
      similar = self._similarity_targets(similarities, rows, positive, banks,
                                         indices)
      targets = tuple(
          tf.stop_gradient((1.0 - self.target_mix) * positive
                           + self.target_mix * s) for s in similar)
    return {t: (log_probs[t], targets[n]) for n, t in enumerate(DIRECTIONS)}

  def call(self, embeddings, banks, indices, step, training=True):
    del training
    indices = tf.cast(indices, tf.int32)
    _, num_replicas = memory_bank.replica_context_info()
    terms = self.terms(embeddings, banks, indices, step)
    term_losses = {t: cross_entropy(targets, log_probs)
                   for t, (log_probs, targets) in terms.items()}
    per_sample = 0.5 * (term_losses["v2a"] + term_losses["a2v"])

    scores = tf.reduce_sum(banks["video"].gather(indices)
                           * banks["audio"].gather(indices), axis=1)
    mean, std = self._step_statistics(banks, scores)
    active = tf.logical_and(
        self.weighting,
        tf.cast(step, tf.int64) >= self.weighting_start_step.value)
    weights = tf.where(active, self.instance_weights(scores, mean, std),
                       tf.ones_like(scores))
    low = tf.cast(scores <= mean + std * LOW_DECILE_Z, tf.float32)
    local_sums = [tf.reduce_sum(weights), tf.reduce_sum(tf.square(weights)),
                  tf.reduce_sum(weights * low),
                  tf.cast(tf.size(scores), tf.float32)]
    local_sums += [tf.reduce_sum(weights * term_losses[t])
                   for t in DIRECTIONS]
    if self.soft_targets != "none":
      local_sums.append(tf.reduce_sum(
          0.5 * (entropy(terms["v2a"][1]) + entropy(terms["a2v"][1]))))
    sums = base.cross_replica_sum(tf.stop_gradient(tf.stack(local_sums)))
    total_weight, count = sums[0], sums[3]
    # R sum_local / sum_global: AVModel divides by R and the optimizer sums
    # over replicas, so the gradient is that of the global weighted mean.
    loss = num_replicas * tf.math.divide_no_nan(
        tf.reduce_sum(weights * per_sample), total_weight)

    logs = {f"loss_{t}": tf.math.divide_no_nan(sums[4 + n], total_weight)
            for n, t in enumerate(DIRECTIONS)}
    logs.update(
        weight_mean=total_weight / count,
        weight_ess=tf.math.divide_no_nan(tf.square(total_weight),
                                         sums[1] * count),
        weight_low_decile_mass=tf.math.divide_no_nan(sums[2], total_weight),
        bank_score_mean=mean, bank_score_std=std,
        weighting_active=tf.cast(active, tf.float32))
    if self.soft_targets != "none":
      logs["target_entropy"] = sums[6] / count
    return loss, logs

  def bank_weight_summary(self, banks):
    """Agreement scores and weights W(s) of every bank row, with statistics.

    The weights are those the rows would get at the next weighted step,
    whether or not weighting has started (so they can be judged early).

    Args:
      banks: {"video", "audio"} MemoryBank.

    Returns:
      Dict of float32 tensors: scores [N], weights [N], and the scalars
      mean (of w), ess ((sum w)^2 / sum w^2 / N) and low_decile_mass (share
      of the weight on rows with s <= mu + sigma Phi^{-1}(0.1)).
    """
    scores = bank_agreement(banks)
    mean, std = self.current_statistics(banks)
    weights = self.instance_weights(scores, mean, std)
    total = tf.reduce_sum(weights)
    count = tf.cast(tf.size(weights), tf.float32)
    low = tf.cast(scores <= mean + std * LOW_DECILE_Z, tf.float32)
    return {
        "scores": scores, "weights": weights, "mean": total / count,
        "ess": tf.math.divide_no_nan(
            tf.square(total), tf.reduce_sum(tf.square(weights)) * count),
        "low_decile_mass": tf.math.divide_no_nan(
            tf.reduce_sum(weights * low), total)}

  def callbacks(self, run):
    return [RobustXIDCallback(self, run)]


def _moments_to_statistics(moments):
  mean = moments[0]
  return mean, tf.sqrt(tf.maximum(moments[1] - tf.square(mean), 0.0))


class RobustXIDCallback(keras.callbacks.Callback):
  """Starts the weighting on time and reports the bank's weights per epoch.

  At train begin (every `fit`, resumed runs included) it sets the
  objective's weighting start step to weighting_start_epoch *
  run.steps_per_epoch. At each epoch end it computes W(s) over the whole
  bank and adds to the epoch's logs (written by the run's logger) and to
  `history` [(epoch, scalars)]: bank_weight_mean, bank_weight_ess (divided
  by N), bank_weight_low_decile_mass and, when the run has faulty flags
  with both classes present, faulty_weight_auc (ROC-AUC of -w for telling
  faulty rows, flag 1, from clean ones, flag 0; other flag values are left
  out). With a log folder it also writes histograms of the bank's weights
  and scores at the global step.

  Args:
    objective: the `RobustXIDObjective` being trained.
    run: the run's `avid_tf.training.run_info.RunInfo`.

  Raises:
    ValueError: if the faulty flags are not one per memory row.
  """

  def __init__(self, objective, run):
    super().__init__()
    self._objective = objective
    self._run = run
    self._faulty = None
    if run.instance_faulty is not None:
      faulty = np.asarray(run.instance_faulty)
      if faulty.shape != (run.num_data,):
        raise ValueError(f"instance_faulty has shape {faulty.shape}, "
                         f"expected ({run.num_data},)")
      self._faulty = faulty
    self._writer = None
    self.history = []

  def on_train_begin(self, logs=None):
    self._objective.set_weighting_start(self._run.steps_per_epoch)

  def on_epoch_end(self, epoch, logs=None):
    summary = self._objective.bank_weight_summary(self.model.banks)
    scalars = {"bank_weight_mean": float(summary["mean"]),
               "bank_weight_ess": float(summary["ess"]),
               "bank_weight_low_decile_mass":
                   float(summary["low_decile_mass"])}
    weights = summary["weights"].numpy()
    if self._faulty is not None:
      known = (self._faulty == 0) | (self._faulty == 1)
      auc = roc_auc(-weights[known], self._faulty[known] == 1)
      if np.isfinite(auc):
        scalars["faulty_weight_auc"] = auc
    if self._run.log_dir is not None:
      if self._writer is None:
        self._writer = tf.summary.create_file_writer(self._run.log_dir)
      step = int(self.model.optimizer.iterations.numpy())
      with self._writer.as_default(step=step):
        tf.summary.histogram("train/bank_weights", weights)
        tf.summary.histogram("train/bank_scores", summary["scores"])
      self._writer.flush()
    if logs is not None:
      logs.update(scalars)
    self.history.append((epoch, scalars))


@gin.configurable
def build_robust_xid_objective(
    num_data, seed=0, temperature=0.07, num_negatives=1024,
    candidates="sampled", weighting=True, weighting_start_epoch=1,
    weight_shift=-2.0, weight_scale=1.0, min_weight=0.25,
    running_statistics=False, statistics_momentum=0.99,
    soft_targets="bootstrap", target_mix=0.75, target_temperature=0.035,
    pair_temperature=0.07):
  """Returns the Robust xID objective (see RobustXIDObjective).

  The defaults of the weights and the soft targets were chosen on the
  claims benchmark's development configuration by the rule in
  docs/methods.md ("Choosing Robust xID's defaults");
  gin/robust_xid/robust.gin states the same values.

  Args:
    num_data: rows of the memory banks (unused: the objective reads them
      from the banks).
    seed: seed of the negative draws.
    temperature: tau of the predictions.
    num_negatives: K negatives per anchor (candidates="sampled").
    candidates: "sampled" or "all".
    weighting: down-weight faulty positives.
    weighting_start_epoch: first epoch with agreement weights.
    weight_shift: delta.
    weight_scale: kappa.
    min_weight: w_min.
    running_statistics: EMA of the score moments instead of the bank's.
    statistics_momentum: momentum of that EMA.
    soft_targets: None/"none", "bootstrap", "swapped", "within_modal",
      "cycle", "pair_path".
    target_mix: lambda.
    target_temperature: tau_s.
    pair_temperature: tau_t ("pair_path").
  """
  del num_data
  return RobustXIDObjective(
      temperature=temperature, num_negatives=num_negatives,
      candidates=candidates, weighting=weighting,
      weighting_start_epoch=weighting_start_epoch, weight_shift=weight_shift,
      weight_scale=weight_scale, min_weight=min_weight,
      running_statistics=running_statistics,
      statistics_momentum=statistics_momentum, soft_targets=soft_targets,
      target_mix=target_mix, target_temperature=target_temperature,
      pair_temperature=pair_temperature, seed=seed)
