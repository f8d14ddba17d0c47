"""Audio-Visual Instance Discrimination objectives (ALGORITHMS.md §4).

Terms (each an NCE term, avid_tf.losses.nce):
  v2a: L(v_i; positive a_bar_i, negatives a_bar_j)   cross-modal
  a2v: L(a_i; positive v_bar_i, negatives v_bar_j)   cross-modal
  v2v: L(v_i; positive v_bar_i, negatives v_bar_j)   within-modal
  a2a: L(a_i; positive a_bar_i, negatives a_bar_j)   within-modal
  L = c_x * (v2a + a2v) / 2 + c_w * (v2v + a2a) / 2, c_x + c_w = 1.
Self-AVID = (0, 1), Cross-AVID = (1, 0), Joint-AVID = (1, 1) -> (1/2, 1/2).
Every term of an anchor uses the same negative indices; terms whose
coefficient is zero are not computed.

Objective interface (AVModel relies only on this, so CMA and Robust xID
objectives can plug in):
  objective.scores(embeddings, banks, indices, negatives)
      -> {term: (positive_logits [B, P], negative_logits [B, K])}, in
         evaluation order (the first term's negatives estimate Z);
  objective.loss(scores, partition) -> (loss, {term: term_loss}).
embeddings and banks are dicts keyed by "video" and "audio".
"""

import tensorflow as tf

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


class AVIDObjective:
  """Self / Cross / Joint AVID with general coefficients.

  Args:
    cross_modal_weight: c_x before normalisation (>= 0).
    within_modal_weight: c_w before normalisation (>= 0).
    temperature: tau of the scores x^T m / tau.

  Raises:
    ValueError: for negative coefficients, both zero, or tau <= 0.
  """

  def __init__(self, cross_modal_weight=1.0, within_modal_weight=0.0,
               temperature=0.07):
    if cross_modal_weight < 0 or within_modal_weight < 0:
      raise ValueError(
          f"AVID coefficients must be >= 0, got cross_modal_weight="
          f"{cross_modal_weight}, within_modal_weight={within_modal_weight}")
    total = float(cross_modal_weight) + float(within_modal_weight)
    if total <= 0:
      raise ValueError("AVID coefficients cross_modal_weight and "
                       "within_modal_weight cannot both be 0")
    if temperature <= 0:
      raise ValueError(f"temperature must be > 0, got {temperature}")
    self.cross_modal_weight = cross_modal_weight / total
    self.within_modal_weight = within_modal_weight / total
    self.temperature = float(temperature)
    weights = {"v2a": self.cross_modal_weight / 2,
               "a2v": self.cross_modal_weight / 2,
               "v2v": self.within_modal_weight / 2,
               "a2a": self.within_modal_weight / 2}
    self.term_weights = {t: w for t, w in weights.items() if w > 0}

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
      {term: (positive_logits [B, 1], negative_logits [B, K])}, float32.
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
    """Weighted sum of the NCE terms.

    Args:
      scores: the output of `scores`.
      partition: Z > 0, shared by all terms.

    Returns:
      (loss, {term: term_loss}), float32 scalars.
    """
    term_losses = {term: nce.nce_loss(positive, negative, partition)
                   for term, (positive, negative) in scores.items()}
    loss = tf.add_n([self.term_weights[term] * value
                     for term, value in term_losses.items()])
    return loss, term_losses
