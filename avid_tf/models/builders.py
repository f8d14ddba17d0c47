"""Gin-configurable builders of the audio-visual model and its encoders.

Gin binds these functions, never the Keras classes themselves (Keras records
constructor arguments before gin would inject them, so saved configs would
restore the wrong values).
"""

import gin

from avid_tf import errors
from avid_tf.losses import avid
from avid_tf.losses import cma
from avid_tf.losses import robust_xid
from avid_tf.models import audio_cnn
from avid_tf.models import av_model
from avid_tf.models import heads
from avid_tf.models import r2plus1d


@gin.configurable
def build_encoders(video_depth=18, audio_depth=10, width_multiplier=1.0,
                   synchronized_bn=False, bn_virtual_batch_size=None):
  """Returns the (video, audio) encoders (docs/methods.md, "Architectures").

  Args:
    video_depth: R(2+1)D depth, 10, 18 or 34.
    audio_depth: audio ConvNet depth (only 10 exists).
    width_multiplier: scales every channel count (1.0 = published widths).
    synchronized_bn: all-reduce batch-norm statistics across replicas.
    bn_virtual_batch_size: batch-norm training statistics over groups of
      this many consecutive clips, whatever the device count (the
      reference's per-GPU batch: 32 on Kinetics, 20 on AudioSet); the
      per-replica batch must be a multiple of it. None normalises over the
      whole per-replica batch. Excludes `synchronized_bn`.
  """
  video_encoder = r2plus1d.R2Plus1D(
      depth=video_depth, width_multiplier=width_multiplier,
      synchronized_bn=synchronized_bn,
      bn_virtual_batch_size=bn_virtual_batch_size, name="video_encoder")
  audio_encoder = audio_cnn.AudioConvNet(
      depth=audio_depth, width_multiplier=width_multiplier,
      synchronized_bn=synchronized_bn,
      bn_virtual_batch_size=bn_virtual_batch_size, name="audio_encoder")
  return video_encoder, audio_encoder


# Objective builders by `build_objective.name`; each takes (num_data, seed)
# and is gin-configurable in its own module.
OBJECTIVES = {
    "avid": avid.build_avid_objective,
    "cma": cma.build_cma_objective,
    "robust_xid": robust_xid.build_robust_xid_objective,
}


@gin.configurable
def build_objective(num_data, seed=0, name="avid"):
  """Returns the training objective chosen by `name`.

  Args:
    num_data: rows of the memory banks.
    seed: seed of the objective's draws.
    name: one of OBJECTIVES ("avid", "cma", "robust_xid"); the chosen
      builder's own bindings configure it (e.g.
      `build_avid_objective.temperature`, `build_cma_objective.agreement`).

  Raises:
    ValueError: for an unknown name.
  """
  if name not in OBJECTIVES:
    raise errors.InvalidValueError(
        f"Unknown objective '{name}' (build_objective.name); "
        f"choose one of {sorted(OBJECTIVES)}.")
  return OBJECTIVES[name](num_data=num_data, seed=seed)


@gin.configurable
def build_av_model(num_data, seed=0, objective=None, encoders=None,
                   embedding_dim=128, head_hidden_dim=512,
                   head_hidden_layers=2, head_batch_norm=False,
                   bank_momentum=0.5, weight_decay=1e-5):
  """Returns the audio-visual model: encoders, heads, banks, objective.

  Args:
    num_data: rows of each memory bank (training videos; the training loop
      reads it from the dataset metadata).
    seed: seed of bank initialisation and of the objective's draws.
    objective: an `avid_tf.losses.base.Objective`; None builds the one
      `build_objective` configures.
    encoders: (video, audio) encoders, any Keras layers mapping a batch's
      "video" and "audio" to features; None builds the ones
      `build_encoders` configures.
    embedding_dim: width of the embeddings and memory rows.
    head_hidden_dim: width of the projection heads' hidden layers.
    head_hidden_layers: hidden layers of each projection head.
    head_batch_norm: BatchNorm after every Dense of the heads (not the
      published head; see avid_tf.models.heads).
    bank_momentum: mu of the memory update.
    weight_decay: coupled L2 coefficient (as PyTorch's Adam weight_decay).
  """
  video_encoder, audio_encoder = encoders or build_encoders()

  def head(name):
    return heads.ProjectionHead(hidden_dim=head_hidden_dim,
                                output_dim=embedding_dim,
                                num_hidden_layers=head_hidden_layers,
                                batch_norm=head_batch_norm, name=name)

  if objective is None:
    objective = build_objective(num_data=num_data, seed=seed)
  return av_model.AVModel(
      video_encoder, audio_encoder, head("video_head"), head("audio_head"),
      num_data=num_data, objective=objective, bank_momentum=bank_momentum,
      weight_decay=weight_decay, embedding_dim=embedding_dim, seed=seed)
