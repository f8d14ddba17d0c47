"""Gin-configurable builders of the audio-visual model and its encoders.

Gin binds these functions, never the Keras classes themselves (Keras records
constructor arguments before gin would inject them, so saved configs would
restore the wrong values).
"""

import gin

from avid_tf.losses import avid
from avid_tf.models import audio_cnn
from avid_tf.models import av_model
from avid_tf.models import heads
from avid_tf.models import r2plus1d


@gin.configurable
def build_encoders(video_depth=18, audio_depth=10, width_multiplier=1.0,
                   synchronized_bn=False):
  """Returns the (video, audio) encoders of ALGORITHMS.md §7.

  Args:
    video_depth: R(2+1)D depth, 10, 18 or 34.
    audio_depth: audio ConvNet depth (only 10 exists).
    width_multiplier: scales every channel count (1.0 = published widths).
    synchronized_bn: all-reduce batch-norm statistics across replicas.
  """
  video_encoder = r2plus1d.R2Plus1D(depth=video_depth,
                                    width_multiplier=width_multiplier,
                                    synchronized_bn=synchronized_bn,
                                    name="video_encoder")
  audio_encoder = audio_cnn.AudioConvNet(depth=audio_depth,
                                         width_multiplier=width_multiplier,
                                         synchronized_bn=synchronized_bn,
                                         name="audio_encoder")
  return video_encoder, audio_encoder


@gin.configurable
def build_av_model(num_data, seed=0, embedding_dim=128, head_hidden_dim=512,
                   head_hidden_layers=2, head_batch_norm=False,
                   num_negatives=1024, temperature=0.07,
                   bank_momentum=0.5, weight_decay=1e-5, cross_modal_weight=1.0,
                   within_modal_weight=0.0):
  """Returns an AVID model (Self/Cross/Joint by the two coefficients).

  Args:
    num_data: rows of each memory bank (training videos; the training loop
      reads it from the dataset metadata).
    seed: seed of bank initialisation and negative sampling.
    embedding_dim: width of the embeddings and memory rows.
    head_hidden_dim: width of the projection heads' hidden layers.
    head_hidden_layers: hidden layers of each projection head.
    head_batch_norm: BatchNorm after every Dense of the heads (not the
      published head; see avid_tf.models.heads).
    num_negatives: K negatives per anchor.
    temperature: tau of the scores.
    bank_momentum: mu of the memory update.
    weight_decay: coupled L2 coefficient (as PyTorch's Adam weight_decay).
    cross_modal_weight: c_x of the v2a/a2v terms (Cross-AVID: 1).
    within_modal_weight: c_w of the v2v/a2a terms (Self-AVID: 1, c_x 0).
  """
  video_encoder, audio_encoder = build_encoders()

  def head(name):
    return heads.ProjectionHead(hidden_dim=head_hidden_dim,
                                output_dim=embedding_dim,
                                num_hidden_layers=head_hidden_layers,
                                batch_norm=head_batch_norm, name=name)

  objective = avid.AVIDObjective(cross_modal_weight=cross_modal_weight,
                                 within_modal_weight=within_modal_weight,
                                 temperature=temperature)
  return av_model.AVModel(
      video_encoder, audio_encoder, head("video_head"), head("audio_head"),
      num_data=num_data, objective=objective, num_negatives=num_negatives,
      bank_momentum=bank_momentum, weight_decay=weight_decay,
      embedding_dim=embedding_dim, seed=seed)
