"""The audio-visual model trained with memory banks (AVID and successors).

AVModel ties together the two encoders, their projection heads, one memory
bank per modality and an objective (avid_tf.losses.base.Objective). Its
`train_step` runs one step under any tf.distribute strategy and knows
nothing of the method: the objective draws its candidates, keeps its own
state and returns the loss. See docs/design.md, "Distribution", for how the
banks stay identical across replicas.
"""

import keras
import tensorflow as tf

from avid_tf import errors
from avid_tf.data import pipeline
from avid_tf.memory import memory_bank

VIDEO_BANK_NAME = "video_bank"
AUDIO_BANK_NAME = "audio_bank"


class AVModel(keras.Model):
  """Video and audio encoders trained by instance discrimination.

  Create it under the strategy scope it is trained with, with an objective
  created under the same scope. Batches are dicts {"video", "audio",
  "index", ...} (the batch contract of docs/design.md); "index" is the
  instance's memory row.

  One training step:
  1. embeddings v, a (float32, L2-normalised) from encoder + head;
  2. loss, logs = objective(embeddings, banks, indices, step): the
     objective draws its candidates and computes this replica's loss;
  3. gradients of (loss + weight decay) / num_replicas (the optimizer sums
     gradients over replicas), apply_gradients;
  4. bank update from embeddings and indices gathered from all replicas.

  Weight decay is coupled L2 as in PyTorch's Adam(weight_decay=wd), which
  the reference uses: the gradient of every trainable variable gets
  wd * w added before the optimizer sees it (implemented as
  0.5 * wd * ||w||^2 added to the loss). Do not also set the Keras
  optimizer's own (decoupled) `weight_decay`.

  Logged per step: loss (the objective, without weight decay), the
  objective's own logs, positive_agreement (mean over the global batch of
  v_bar_i^T a_bar_i of the rows *after* this step's update),
  embedding_similarity_video and embedding_similarity_audio (mean pairwise
  cosine of the global batch's embeddings; near 1 means the run collapsed)
  and learning_rate.

  Args:
    video_encoder: Keras layer/model, video [B, T, H, W, 3] -> features.
    audio_encoder: Keras layer/model, audio [B, 200, 257, 1] -> features.
    video_head: Keras layer, video features -> [B, embedding_dim].
    audio_head: Keras layer, audio features -> [B, embedding_dim].
    num_data: N, number of training instances (rows of each bank).
    objective: an `avid_tf.losses.base.Objective`.
    bank_momentum: mu of the bank update.
    weight_decay: coupled L2 coefficient.
    embedding_dim: width of the embeddings and bank rows.
    seed: seed of the bank initialisation.
    name: model name.
  """

  def __init__(self, video_encoder, audio_encoder, video_head, audio_head,
               num_data, objective, bank_momentum=0.5, weight_decay=1e-5,
               embedding_dim=128, seed=0, name="av_model", **kwargs):
    super().__init__(name=name, **kwargs)
    if weight_decay < 0:
      raise errors.InvalidValueError(
          f"weight_decay must be >= 0, got {weight_decay}")
    self.video_encoder = video_encoder
    self.audio_encoder = audio_encoder
    self.video_head = video_head
    self.audio_head = audio_head
    self.num_data = int(num_data)
    self.objective = objective
    self.weight_decay = float(weight_decay)
    self.seed = int(seed)
    self.video_bank = memory_bank.MemoryBank(
        self.num_data, embedding_dim, momentum=bank_momentum, seed=self.seed,
        name=VIDEO_BANK_NAME)
    self.audio_bank = memory_bank.MemoryBank(
        self.num_data, embedding_dim, momentum=bank_momentum,
        seed=self.seed + 1, name=AUDIO_BANK_NAME)

  @property
  def banks(self):
    return {"video": self.video_bank, "audio": self.audio_bank}

  def call(self, inputs, training=None):
    """Embeds a batch.

    Args:
      inputs: dict with "video" [B, T, H, W, 3] and "audio" [B, F, S, 1];
        other keys are ignored.
      training: Keras training flag.

    Returns:
      {"video": v, "audio": a}, float32 [B, embedding_dim], unit norm.
    """
    video = self.video_head(
        self.video_encoder(inputs["video"], training=training),
        training=training)
    audio = self.audio_head(
        self.audio_encoder(inputs["audio"], training=training),
        training=training)
    return {"video": _unit_float32(video), "audio": _unit_float32(audio)}

  def _weight_decay_loss(self):
    if not self.weight_decay or not self.trainable_variables:
      return tf.constant(0.0, tf.float32)
    squares = [tf.reduce_sum(tf.square(tf.cast(w, tf.float32)))
               for w in self.trainable_variables]
    return 0.5 * self.weight_decay * tf.add_n(squares)

  def train_step(self, data):
    data, _, _ = keras.utils.unpack_x_y_sample_weight(data)
    # uint8 batches get their colour jitter and normalisation here, on the
    # accelerator.
    data = pipeline.finish_video(data)
    indices = tf.cast(data["index"], tf.int32)
    _, num_replicas = memory_bank.replica_context_info()
    step = tf.convert_to_tensor(self.optimizer.iterations)
    learning_rate = tf.cast(
        tf.convert_to_tensor(self.optimizer.learning_rate), tf.float32)

    with tf.GradientTape() as tape:
      embeddings = self(data, training=True)
      # Read after the forward pass, which builds the model on first use.
      trainable_variables = self.trainable_variables
      loss, objective_logs = self.objective(embeddings, self.banks, indices,
                                            step, training=True)
      total_loss = (loss + self._weight_decay_loss()) / num_replicas
      scaled_loss = self.optimizer.scale_loss(total_loss)
    gradients = tape.gradient(scaled_loss, trainable_variables)
    self.optimizer.apply_gradients(
        [(g, w) for g, w in zip(gradients, trainable_variables)
         if g is not None])

    global_indices = memory_bank.all_gather_batch(indices)
    global_embeddings = {
        modality: memory_bank.all_gather_batch(tf.stop_gradient(value))
        for modality, value in embeddings.items()}
    video_rows = self.video_bank.update(global_indices,
                                        global_embeddings["video"])
    audio_rows = self.audio_bank.update(global_indices,
                                        global_embeddings["audio"])

    logs = {"loss": loss}
    logs.update(objective_logs)
    logs["positive_agreement"] = tf.reduce_mean(
        tf.reduce_sum(video_rows * audio_rows, axis=1))
    for modality, value in global_embeddings.items():
      logs[f"embedding_similarity_{modality}"] = mean_pairwise_cosine(value)
    logs["learning_rate"] = learning_rate
    return logs

  def test_step(self, data):
    raise NotImplementedError(
        "AVModel has no validation loss (validation videos have no memory "
        "rows); evaluate the encoders with avid_tf.eval instead")


def mean_pairwise_cosine(embeddings):
  """Mean cosine similarity over the distinct pairs of unit-norm rows.

  Near 1 when all embeddings point the same way (a collapsed run), near 0
  for well spread ones. Uses sum_{i != j} x_i.x_j = |sum_i x_i|^2 - n, so it
  costs O(n D), not O(n^2 D).

  Args:
    embeddings: float32 [n, D], unit-norm rows, n >= 2.

  Returns:
    float32 scalar.
  """
  count = tf.cast(tf.shape(embeddings)[0], tf.float32)
  total = tf.reduce_sum(tf.square(tf.reduce_sum(embeddings, axis=0)))
  return (total - count) / tf.maximum(count * (count - 1.0), 1.0)


def _unit_float32(embeddings):
  return tf.math.l2_normalize(tf.cast(embeddings, tf.float32), axis=-1)
