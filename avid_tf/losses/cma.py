"""AVID with Cross-Modal Agreement (AVID+CMA; docs/methods.md, "AVID+CMA").

The second training stage after Cross-AVID. Every instance i gets a
positive set P_i: the k rows j != i that agree most with i in both memory
banks (avid_tf.memory.agreement), recomputed from the banks every few
epochs. Terms (each an NCE term, avid_tf.losses.nce, with Z inherited from
the AVID stage and frozen):

  inst_x_v2a: L(v_i; a_bar_i,                 K negatives a_bar_n)
  inst_x_a2v: L(a_i; v_bar_i,                 K negatives v_bar_n)
  inst_w_v2v: L(v_i; v_bar_i,                 K negatives v_bar_n)
  inst_w_a2a: L(a_i; a_bar_i,                 K negatives a_bar_n)
  pos_x_v2a:  L(v_i; {a_bar_p : p in P_i},    M negatives a_bar_n)
  pos_x_a2v:  L(a_i; {v_bar_p : p in P_i},    M negatives v_bar_n)
  pos_w_v2v:  L(v_i; {v_bar_p : p in P_i},    M negatives v_bar_n)
  pos_w_a2a:  L(a_i; {a_bar_p : p in P_i},    M negatives a_bar_n)

  L = sum_g c_g * (first direction + second direction) / 2 over the groups
  g in (inst_x, inst_w, pos_x, pos_w), with the c_g normalised to sum 1.

The K negatives of an anchor are drawn uniformly outside P_i U {i} and are
shared by every term; the positive-set terms use the first M of them. Terms
whose coefficient is zero are not computed.
"""

import gin
import keras
import numpy as np
import tensorflow as tf

from avid_tf import errors
from avid_tf.losses import avid
from avid_tf.losses import base
from avid_tf.losses import nce
from avid_tf.memory import agreement as agreement_lib
from avid_tf.memory import memory_bank

# term -> (coefficient, anchor modality, memory modality, positives), in
# evaluation order; positives "instance" is the anchor's own row, "set" the
# rows of its positive set.
TERMS = {
    "inst_x_v2a": ("inst_x", "video", "audio", "instance"),
    "inst_x_a2v": ("inst_x", "audio", "video", "instance"),
    "inst_w_v2v": ("inst_w", "video", "video", "instance"),
    "inst_w_a2a": ("inst_w", "audio", "audio", "instance"),
    "pos_x_v2a": ("pos_x", "video", "audio", "set"),
    "pos_x_a2v": ("pos_x", "audio", "video", "set"),
    "pos_w_v2v": ("pos_w", "video", "video", "set"),
    "pos_w_a2a": ("pos_w", "audio", "audio", "set"),
}
COEFFICIENTS = ("inst_x", "inst_w", "pos_x", "pos_w")

_MISSING_PARTITION = (
    "AVID+CMA needs the NCE partition estimate Z of a Cross-AVID run, but Z "
    "is 0 (never estimated): start CMA from an AVID run with "
    "train(init_from=<AVID model_dir>)")
_MISSING_SETS = (
    "AVID+CMA positive sets were never computed: train with the callbacks "
    "of objective.callbacks(run)")


class CMAObjective(base.Objective):
  """AVID+CMA: instance and positive-set NCE terms with general coefficients.

  State (`add_state`):
    partition: float32 Z, inherited from the Cross-AVID run
      (`inherited_state`) and never re-estimated.
    positive_sets: int32 [N, k], P_i of every memory row.
    positive_sets_epoch: int64, the epoch whose start last computed
      `positive_sets` (-1 before the first), so a resumed run knows whether
      the checkpointed sets are those of the current period.

  Logs: loss_<term> for every computed term and partition.

  Args:
    num_data: N, rows of the memory banks.
    num_positives: k, the size of every positive set.
    num_negatives: K, negatives per anchor (instance terms).
    num_positive_set_negatives: M <= K, the first M of the K negatives are
      those of the positive-set terms.
    temperature: tau of the scores x^T m / tau.
    inst_x: coefficient of the cross-modal instance terms (>= 0).
    inst_w: coefficient of the within-modal instance terms (>= 0).
    pos_x: coefficient of the cross-modal positive-set terms (>= 0).
    pos_w: coefficient of the within-modal positive-set terms (>= 0).
    agreement: how the positive sets are ranked, one of
      `avid_tf.memory.agreement.AGREEMENTS`.
    resample_every_epochs: recompute the positive sets at the start of
      every epoch that is a multiple of this; 0 computes them once, at the
      start of training.
    block_size: rows per square tile of the agreement search, which bounds
      the refresh's memory; None for the agreement module's default.
    seed: seed of the negative draws (with the step).
    name: layer name.

  Raises:
    ValueError: for invalid settings (see the messages).
  """

  inherited_state = ("partition",)

  def __init__(self, num_data, num_positives=32, num_negatives=1024,
               num_positive_set_negatives=64, temperature=0.07, inst_x=1.0,
               inst_w=0.0, pos_x=0.0, pos_w=1.0, agreement="consensus",
               resample_every_epochs=5, block_size=None, seed=0,
               name=base.OBJECTIVE_NAME, **kwargs):
    super().__init__(name=name, **kwargs)
    coefficients = dict(zip(COEFFICIENTS, (inst_x, inst_w, pos_x, pos_w)))
    if any(value < 0 for value in coefficients.values()):
      raise errors.InvalidValueError(f"AVID+CMA coefficients must be >= 0, got "
                                     f"{coefficients}")
    total = float(sum(coefficients.values()))
    if total <= 0:
      raise errors.InvalidValueError(
          "AVID+CMA coefficients inst_x, inst_w, pos_x and "
          "pos_w cannot all be 0")
    if temperature <= 0:
      raise errors.InvalidValueError(
          f"temperature must be > 0, got {temperature}")
    if num_negatives < 1:
      raise errors.InvalidValueError(
          f"num_negatives must be >= 1, got {num_negatives}")
    if not 1 <= num_positive_set_negatives <= num_negatives:
      raise errors.InvalidValueError(
          f"num_positive_set_negatives must be in [1, num_negatives="
          f"{num_negatives}], got {num_positive_set_negatives}")
    if num_positives < 1 or num_positives + 1 >= num_data:
      raise errors.InvalidValueError(
          f"num_positives must be >= 1 and leave rows to draw negatives "
          f"from (num_positives + 1 < num_data={num_data}), got "
          f"{num_positives}")
    if agreement not in agreement_lib.AGREEMENTS:
      raise errors.InvalidValueError(
          f"agreement must be one of "
          f"{agreement_lib.AGREEMENTS}, got '{agreement}'")
    if resample_every_epochs < 0:
      raise errors.InvalidValueError(f"resample_every_epochs must be >= 0, got "
                                     f"{resample_every_epochs}")
    if block_size is not None and block_size < 1:
      raise errors.InvalidValueError(
          f"block_size must be >= 1 or None, got {block_size}")
    self.num_data = int(num_data)
    self.num_positives = int(num_positives)
    self.num_negatives = int(num_negatives)
    self.num_positive_set_negatives = int(num_positive_set_negatives)
    self.temperature = float(temperature)
    self.coefficients = {g: float(c) / total for g, c in coefficients.items()}
    self.agreement = agreement
    self.resample_every_epochs = int(resample_every_epochs)
    self.block_size = block_size
    self.seed = int(seed)
    self.term_weights = {
        term: self.coefficients[group] / 2
        for term, (group, _, _, _) in TERMS.items()
        if self.coefficients[group] > 0}
    self.partition = self.add_state("partition", ())
    self.positive_sets = self.add_state(
        "positive_sets", (self.num_data, self.num_positives), dtype="int32")
    self.positive_sets_epoch = self.add_state(
        "positive_sets_epoch", (), dtype="int64",
        initializer=keras.initializers.Constant(-1))

  @property
  def term_names(self):
    """Names of the computed terms, in evaluation order."""
    return list(self.term_weights)

  def negative_count(self, term):
    """K for an instance term, M for a positive-set term."""
    if TERMS[term][3] == "instance":
      return self.num_negatives
    return self.num_positive_set_negatives

  def candidates(self, indices, step):
    """The positive sets and negatives of this replica's anchors.

    Args:
      indices: int [B], the anchors' memory rows.
      step: int scalar, the training step (seed of the draw with `seed`).

    Returns:
      (positives int32 [B, k], negatives int32 [B, K]): P_i from the state
      and K rows drawn uniformly outside P_i U {i}, the same on any number
      of replicas.
    """
    indices = tf.cast(indices, tf.int32)
    positives = tf.gather(self.positive_sets.value, indices)
    negatives = memory_bank.sample_negatives(
        indices, self.num_data, self.num_negatives, self.seed, step,
        exclude=positives)
    return positives, negatives

  def scores(self, embeddings, banks, indices, positives, negatives):
    """Positive and negative logits of every computed term.

    Each bank is gathered once per kind of row (own row, positive set,
    negatives), and only as many negative rows as the terms reading that
    bank use.

    Args:
      embeddings: {"video": v [B, D], "audio": a [B, D]}, unit norm.
      banks: {"video": MemoryBank, "audio": MemoryBank}.
      indices: int [B], the anchors' memory rows.
      positives: int [B, k], the anchors' positive sets.
      negatives: int [B, K], negatives shared by all terms.

    Returns:
      {term: (positive_logits, negative_logits)}, float32, in evaluation
      order: [B, 1] and [B, K] for instance terms, [B, k] and [B, M] for
      positive-set terms.
    """
    negatives_read = {}
    for term in self.term_names:
      memory_modality = TERMS[term][2]
      negatives_read[memory_modality] = max(
          negatives_read.get(memory_modality, 0), self.negative_count(term))
    rows = {}

    def memory(modality, kind):
      if (modality, kind) not in rows:
        bank = banks[modality]
        if kind == "instance":
          value = bank.gather(indices)[:, None, :]
        elif kind == "set":
          value = bank.gather(positives)
        else:
          value = bank.gather(negatives[:, :negatives_read[modality]])
        rows[(modality, kind)] = value
      return rows[(modality, kind)]

    scores = {}
    for term in self.term_names:
      _, anchor_modality, memory_modality, kind = TERMS[term]
      anchors = embeddings[anchor_modality]
      negative_rows = memory(memory_modality, "negatives")
      scores[term] = (
          avid.memory_logits(anchors, memory(memory_modality, kind),
                             self.temperature),
          avid.memory_logits(
              anchors, negative_rows[:, :self.negative_count(term)],
              self.temperature))
    return scores

  def loss(self, scores, partition):
    """Weighted sum of the NCE terms (see `nce.weighted_nce_loss`)."""
    return nce.weighted_nce_loss(scores, self.term_weights, partition)

  def call(self, embeddings, banks, indices, step, training=True):
    del training
    partition = tf.convert_to_tensor(self.partition.value)
    # The callback checks both before training; these catch a step run
    # without it (e.g. train_on_batch), where Z = 0 would silently give
    # a wrong loss and all-zero positive sets wrong positives.
    checks = [
        tf.debugging.assert_positive(partition, message=_MISSING_PARTITION),
        tf.debugging.assert_non_negative(
            tf.convert_to_tensor(self.positive_sets_epoch.value),
            message=_MISSING_SETS)]
    with tf.control_dependencies(checks):
      partition = tf.identity(partition)
      positives, negatives = self.candidates(indices, step)
    scores = self.scores(embeddings, banks, indices, positives, negatives)
    loss, term_losses = self.loss(scores, partition)
    logs = {f"loss_{term}": value for term, value in term_losses.items()}
    logs["partition"] = partition
    return loss, logs

  def check_partition(self):
    """Raises ValueError unless Z was inherited from an AVID run."""
    if not float(keras.ops.convert_to_numpy(self.partition.value)) > 0:
      raise errors.InvalidValueError(_MISSING_PARTITION)

  def refresh_due(self, epoch):
    """Whether the positive sets must be recomputed at the start of `epoch`.

    True when they were never computed or were computed before the start
    of the current period [epoch - epoch % r, ...), r =
    resample_every_epochs; a run resumed inside a period keeps the sets of
    its checkpoint.

    Args:
      epoch: the global epoch index about to start.

    Returns:
      bool.
    """
    last = int(keras.ops.convert_to_numpy(self.positive_sets_epoch.value))
    if last < 0:
      return True
    if not self.resample_every_epochs:
      return False
    return last < epoch - epoch % self.resample_every_epochs

  def refresh_positive_sets(self, video_bank, audio_bank, epoch):
    """Recomputes the positive sets from the banks and stores them.

    Call it in the cross-replica context (eagerly, outside
    `strategy.run`): the assignment then writes the same sets to every
    replica's copy.

    Args:
      video_bank: the video MemoryBank (or its rows [N, D]).
      audio_bank: the audio MemoryBank (or its rows [N, D]).
      epoch: the epoch the sets are computed for (stored in
        `positive_sets_epoch`).

    Returns:
      The new positive sets, int32 [N, k].
    """
    sets = agreement_lib.positive_sets(
        video_bank, audio_bank, k=self.num_positives,
        agreement=self.agreement, block_size=self.block_size)
    self.positive_sets.assign(tf.cast(sets, tf.int32))
    self.positive_sets_epoch.assign(tf.constant(epoch, tf.int64))
    return sets

  def callbacks(self, run):
    return [PositiveSetRefresh(self, run.instance_labels)]


class PositiveSetRefresh(keras.callbacks.Callback):
  """Keeps a CMAObjective's positive sets current and reports their quality.

  At train begin it checks that Z was inherited (a clear error otherwise).
  At the start of every epoch for which `CMAObjective.refresh_due` holds
  (the first epoch of training, then every `resample_every_epochs` epochs by
  the global epoch index Keras passes) it recomputes the sets from the
  model's banks; a resumed run whose checkpoint already holds the sets of
  the current period keeps them, so resuming is exact. Callbacks run in
  the cross-replica context, so every replica gets the same sets.

  When the memory rows have labels, `positive_set_precision` (mean fraction
  of P_i sharing i's label) and `positive_set_precision_chance` (the same
  for random sets) are added to the logs of every `on_epoch_end`, for the
  sets used in that epoch; the run's logger writes them to TensorBoard.

  Attributes:
    history: (epoch, stats) for every refresh, stats being the two
      precision values (an empty dict without labels).

  Args:
    objective: the CMAObjective of the trained model.
    instance_labels: int [N] class of every memory row (-1 unknown), or
      None; with no labelled row the precision is not logged.
  """

  def __init__(self, objective, instance_labels=None):
    super().__init__()
    self._objective = objective
    if instance_labels is not None:
      instance_labels = np.asarray(instance_labels, np.int64)
      if not (instance_labels >= 0).any():
        instance_labels = None  # Precision is undefined without labels.
    self._labels = instance_labels
    self._stats = None
    self.history = []

  def _statistics(self):
    if self._labels is None:
      return {}
    sets = self._objective.positive_sets.value
    return {
        "positive_set_precision": float(
            agreement_lib.positive_set_precision(sets, self._labels)),
        "positive_set_precision_chance": float(
            agreement_lib.positive_set_precision_chance(
                self._labels, self._objective.num_positives)),
    }

  def on_train_begin(self, logs=None):
    self._objective.check_partition()
    # The sets may have been restored since the last fit.
    self._stats = None

  def on_epoch_begin(self, epoch, logs=None):
    if not self._objective.refresh_due(epoch):
      return
    self._objective.refresh_positive_sets(self.model.video_bank,
                                          self.model.audio_bank, epoch)
    self._stats = self._statistics()
    self.history.append((epoch, dict(self._stats)))

  def on_epoch_end(self, epoch, logs=None):
    if logs is None or self._labels is None:
      return
    if self._stats is None:
      self._stats = self._statistics()
    logs.update(self._stats)


@gin.configurable
def build_cma_objective(num_data, seed=0, num_positives=32,
                        num_negatives=1024, num_positive_set_negatives=64,
                        temperature=0.07, inst_x=1.0, inst_w=0.0, pos_x=0.0,
                        pos_w=1.0, agreement="consensus",
                        resample_every_epochs=5, block_size=None):
  """Returns the AVID+CMA objective (released InstX-N1024-PosW-N64-Top32).

  Args:
    num_data: N, rows of the memory banks (size of the positive sets).
    seed: seed of the negative draws.
    num_positives: k, positives per instance.
    num_negatives: K, negatives of the instance terms.
    num_positive_set_negatives: M, negatives of the positive-set terms.
    temperature: tau of the scores.
    inst_x: coefficient of the cross-modal instance terms.
    inst_w: coefficient of the within-modal instance terms.
    pos_x: coefficient of the cross-modal positive-set terms.
    pos_w: coefficient of the within-modal positive-set terms.
    agreement: "consensus", "union", "video" or "audio".
    resample_every_epochs: epochs between refreshes of the positive sets
      (5 on Kinetics, 10 on AudioSet; 0 computes them once).
    block_size: rows per square tile of the agreement search; None for
      the default (agreement.tile_size).
  """
  return CMAObjective(
      num_data, num_positives=num_positives, num_negatives=num_negatives,
      num_positive_set_negatives=num_positive_set_negatives,
      temperature=temperature, inst_x=inst_x, inst_w=inst_w, pos_x=pos_x,
      pos_w=pos_w, agreement=agreement,
      resample_every_epochs=resample_every_epochs, block_size=block_size,
      seed=seed)
