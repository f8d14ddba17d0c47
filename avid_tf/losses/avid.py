"""Audio-Visual Instance Discrimination objectives (docs/methods.md, "AVID").

Terms (each an NCE term, avid_tf.losses.nce):
  v2a: L(v_i; positive a_bar_i, negatives a_bar_j)   cross-modal
  a2v: L(a_i; positive v_bar_i, negatives v_bar_j)   cross-modal
  v2v: L(v_i; positive v_bar_i, negatives v_bar_j)   within-modal
  a2a: L(a_i; positive a_bar_i, negatives a_bar_j)   within-modal
  L = c_x * (v2a + a2v) / 2 + c_w * (v2v + a2a) / 2, c_x + c_w = 1.
Self-AVID = (0, 1), Cross-AVID = (1, 0), Joint-AVID = (1, 1) -> (1/2, 1/2).
Every term of an anchor uses the same negative indices; terms whose
coefficient is zero are not computed.
"""

import gin
import tensorflow as tf

from avid_tf import errors
from avid_tf.losses import base
from avid_tf.losses import nce

# term -> (anchor modality, memory modality), in evaluation order.
TERMS = {
    "v2a": ("video", "audio"),
    "a2v": ("audio", "video"),
    "v2v": ("video", "video"),
    "a2a": ("audio", "audio"),
}


def memory_logits(anchors, rows, temperature):
  """Scores anchors against memory rows: x^T m / tau.

  Computed as an elementwise product and sum in float32 (exact float32, no
  reduced-precision matmul).

  Args:
    anchors: float [B, D].
    rows: float [B, M, D], M memory rows per anchor.
    temperature: tau.

  Returns:
    float32 [B, M].
  """
  anchors = tf.cast(anchors, tf.float32)
  rows = tf.cast(rows, tf.float32)
  return tf.reduce_sum(anchors[:, None, :] * rows, axis=-1) / temperature


class AVIDObjective(base.Objective):
  """Self / Cross / Joint AVID with general coefficients.

  State: `partition`, the NCE partition estimate Z (0 until the first step
  estimates it from the first term's negatives, averaged over replicas;
  frozen afterwards). A run started from another NCE run
  (`train(init_from=...)`, e.g. AVID continued with a fresh optimizer)
  keeps that run's Z.

  Logs: loss_<term> for every computed term and partition.

  Args:
    cross_modal_weight: c_x before normalisation (>= 0).
    within_modal_weight: c_w before normalisation (>= 0).
    temperature: tau of the scores x^T m / tau.
    num_negatives: K negatives per anchor, shared by every term.
    seed: seed of the negative draws (with the step).
    name: layer name.

  Raises:
    ValueError: for negative coefficients, both zero, tau <= 0 or K < 1.
  """

  inherited_state = ("partition",)

  def __init__(self, cross_modal_weight=1.0, within_modal_weight=0.0,
               temperature=0.07, num_negatives=1024, seed=0,
               name=base.OBJECTIVE_NAME, **kwargs):
    super().__init__(name=name, **kwargs)
    if cross_modal_weight < 0 or within_modal_weight < 0:
      raise errors.InvalidValueError(
          f"AVID coefficients must be >= 0, got cross_modal_weight="
          f"{cross_modal_weight}, within_modal_weight={within_modal_weight}")
    total = float(cross_modal_weight) + float(within_modal_weight)
    if total <= 0:
      raise errors.InvalidValueError("AVID coefficients cross_modal_weight and "
                                     "within_modal_weight cannot both be 0")
    if temperature <= 0:
      raise errors.InvalidValueError(
          f"temperature must be > 0, got {temperature}")
    if num_negatives < 1:
      raise errors.InvalidValueError(
          f"num_negatives must be >= 1, got {num_negatives}")
    self.cross_modal_weight = cross_modal_weight / total
    self.within_modal_weight = within_modal_weight / total
    self.temperature = float(temperature)
    self.num_negatives = int(num_negatives)
    self.seed = int(seed)
    weights = {"v2a": self.cross_modal_weight / 2,
               "a2v": self.cross_modal_weight / 2,
               "v2v": self.within_modal_weight / 2,
               "a2a": self.within_modal_weight / 2}
    self.term_weights = {t: w for t, w in weights.items() if w > 0}
    self.partition = self.add_state("partition", ())

  @property
  def term_names(self):
    """Names of the computed terms, in evaluation order."""
    return list(self.term_weights)

  def scores(self, embeddings, banks, indices, negatives):
    """Positive and negative logits of every computed term.

    Args:
      embeddings: {"video": v [B, D], "audio": a [B, D]}, unit norm.
      banks: {"video": MemoryBank, "audio": MemoryBank}.
      indices: int [B], the anchors' instance indices (positives).
      negatives: int [B, K], negative indices shared by all terms.

    Returns:
      {term: (positive_logits [B, 1], negative_logits [B, K])}, float32, in
      evaluation order.
    """
    positive_rows, negative_rows = {}, {}
    scores = {}
    for term in self.term_names:
      anchor_modality, memory_modality = TERMS[term]
      if memory_modality not in positive_rows:
        bank = banks[memory_modality]
        positive_rows[memory_modality] = bank.gather(indices)[:, None, :]
        negative_rows[memory_modality] = bank.gather(negatives)
      anchors = embeddings[anchor_modality]
      scores[term] = (
          memory_logits(anchors, positive_rows[memory_modality],
                        self.temperature),
          memory_logits(anchors, negative_rows[memory_modality],
                        self.temperature))
    return scores

  def loss(self, scores, partition):
    """Weighted sum of the NCE terms (see `nce.weighted_nce_loss`)."""
    return nce.weighted_nce_loss(scores, self.term_weights, partition)

  def call(self, embeddings, banks, indices, step, training=True):
    del training
    negatives = banks["video"].sample_negatives(
        indices, self.num_negatives, self.seed, step)
    scores = self.scores(embeddings, banks, indices, negatives)
    first_negative_logits = next(iter(scores.values()))[1]
    partition = nce.resolve_partition(self.partition, first_negative_logits)
    loss, term_losses = self.loss(scores, partition)
    logs = {f"loss_{term}": value for term, value in term_losses.items()}
    logs["partition"] = partition
    return loss, logs


@gin.configurable
def build_avid_objective(num_data, seed=0, cross_modal_weight=1.0,
                         within_modal_weight=0.0, temperature=0.07,
                         num_negatives=1024):
  """Returns the AVID objective (Self/Cross/Joint by the two coefficients).

  Args:
    num_data: rows of the memory banks (unused: AVID's state is only Z).
    seed: seed of the negative draws.
    cross_modal_weight: c_x of the v2a/a2v terms (Cross-AVID: 1).
    within_modal_weight: c_w of the v2v/a2a terms (Self-AVID: 1, c_x 0).
    temperature: tau of the scores.
    num_negatives: K negatives per anchor.
  """
  del num_data
  return AVIDObjective(cross_modal_weight=cross_modal_weight,
                       within_modal_weight=within_modal_weight,
                       temperature=temperature, num_negatives=num_negatives,
                       seed=seed)
