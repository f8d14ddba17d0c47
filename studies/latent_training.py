"""Training on the latent benchmark with the production model and objectives.

Only the encoders (small MLPs) and the input (in-memory observations with
noise redrawn per visit) are the benchmark's own. The projection heads,
memory banks, objectives, optimizer, `AVModel.train_step`, the objectives'
callbacks and staged initialisation (`checkpointing.initialize_from`, as
`train(init_from=...)` does) are the library's, configured by gin.
"""

import dataclasses
import os
import time

import gin
import keras
import numpy as np
import tensorflow as tf

from avid_tf.models import builders
from avid_tf.training import checkpointing
from avid_tf.training import gin_utils
from avid_tf.training import global_state
from avid_tf.training import optimizers
from avid_tf.training import run_info
from avid_tf.utils import files

CHECKPOINT_NAME = "model"


@gin.configurable
def build_mlp_encoders(input_dim, hidden_dim=256, feature_dim=128,
                       num_layers=2):
  """Returns (video, audio) MLP encoders of the latent benchmark.

  Each is `num_layers` blocks of Dense -> BatchNorm -> ReLU; the last
  block's width is `feature_dim`, the frozen features the evaluation reads.

  Args:
    input_dim: width of an observation.
    hidden_dim: width of the blocks before the last.
    feature_dim: width of the features.
    num_layers: blocks per encoder (>= 1).
  """
  if num_layers < 1:
    raise ValueError(f"build_mlp_encoders.num_layers must be >= 1, got "
                     f"{num_layers}")

  def encoder(name):
    # Named layers: checkpoint paths must not depend on how many models the
    # process built before (staged runs restore by path).
    layers = [keras.Input((input_dim,))]
    for n in range(num_layers):
      width = feature_dim if n == num_layers - 1 else hidden_dim
      layers += [
          keras.layers.Dense(width, use_bias=False, name=f"{name}_dense{n}"),
          keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5,
                                          name=f"{name}_norm{n}"),
          keras.layers.ReLU(name=f"{name}_relu{n}")]
    return keras.Sequential(layers, name=name)

  return encoder("video_encoder"), encoder("audio_encoder")


@gin.configurable
def latent_training(epochs=20, batch_size=256, learning_rate=1e-3,
                    jit_compile=True):
  """The benchmark's schedule (a gin entry point).

  Args:
    epochs: passes over the training instances, one visit each.
    batch_size: instances per step.
    learning_rate: Adam learning rate.
    jit_compile: compile the train step with XLA.

  Returns:
    A `Schedule`.
  """
  return Schedule(epochs=epochs, batch_size=batch_size,
                  learning_rate=learning_rate, jit_compile=jit_compile)


@dataclasses.dataclass(frozen=True)
class Schedule:
  """How long and how fast a run trains (see `latent_training`)."""

  epochs: int = 20
  batch_size: int = 256
  learning_rate: float = 1e-3
  jit_compile: bool = True

  def __post_init__(self):
    if self.epochs < 1 or self.batch_size < 2:
      raise ValueError(f"latent_training needs epochs >= 1 and batch_size "
                       f">= 2, got {self.epochs} and {self.batch_size}")


def steps_per_epoch(num_train, batch_size):
  """Whole batches per epoch (the last partial batch is dropped)."""
  steps = num_train // batch_size
  if steps < 1:
    raise ValueError(f"{num_train} training instances do not fill one batch "
                     f"of {batch_size}")
  return steps


def visit_stream(data, batch_size, seed):
  """The training batches: a pure function of (seed, step).

  Epoch e visits every instance once in a permutation keyed by (seed, e),
  drawn once per epoch; each visit adds fresh Gaussian noise keyed by
  (seed, step).

  Args:
    data: a `latent_data.LatentData`.
    batch_size: instances per batch.
    seed: the run's seed.

  Returns:
    An infinite `tf.data.Dataset` of {"video", "audio", "index"}.
  """
  train = data.train
  num_train = len(train)
  per_epoch = steps_per_epoch(num_train, batch_size)
  observations = {"video": tf.constant(train.video),
                  "audio": tf.constant(train.audio)}
  noise_std = dict(zip(("video", "audio"), data.noise_std))
  seed = tf.constant(seed, tf.int64)

  def epoch_batches(epoch):
    order = tf.random.experimental.stateless_shuffle(
        tf.range(num_train), seed=tf.stack([seed, epoch]))
    return tf.data.Dataset.from_tensor_slices(
        tf.reshape(order[:per_epoch * batch_size], [per_epoch, batch_size]))

  def noisy_batch(step, index):
    out = {"index": index}
    for n, modality in enumerate(("video", "audio")):
      rows = tf.gather(observations[modality], index)
      noise = tf.random.stateless_normal(
          tf.shape(rows), seed=tf.stack([2 * step + n, seed]))
      out[modality] = rows + noise_std[modality] * noise
    return out

  indices = tf.data.Dataset.counter().flat_map(epoch_batches)
  return (tf.data.Dataset.zip((tf.data.Dataset.counter(), indices))
          .map(noisy_batch, num_parallel_calls=tf.data.AUTOTUNE,
               deterministic=True)
          .prefetch(4))


def encoder_features(model, split, batch_size=1024):
  """Frozen features {"video", "audio"} [n, feature_dim] of a split."""
  features = {}
  for modality in ("video", "audio"):
    encoder = getattr(model, f"{modality}_encoder")
    inputs = getattr(split, modality)
    features[modality] = np.concatenate([
        np.asarray(encoder(inputs[i:i + batch_size], training=False))
        for i in range(0, len(inputs), batch_size)])
  return features


def build_model(data, seed):
  """The AVModel of the parsed gin configuration, built, with its optimizer.

  Keras' global seed is set to `seed` first, so variants of a seed start
  from the same weights and banks.

  Returns:
    (model, optimizer, schedule).
  """
  schedule = latent_training()
  keras.utils.set_random_seed(seed)
  encoders = build_mlp_encoders(input_dim=data.config.observation_dim)
  model = builders.build_av_model(num_data=len(data.train), seed=seed,
                                  encoders=encoders)
  optimizer = optimizers.build_optimizer(schedule.learning_rate)
  model.compile(optimizer=optimizer, jit_compile=schedule.jit_compile)
  width = data.config.observation_dim
  model({"video": tf.zeros([2, width]), "audio": tf.zeros([2, width])},
        training=False)
  optimizer.build(model.trainable_variables)
  return model, optimizer, schedule


def save_model(model, run_dir):
  """Writes the model's checkpoint; returns its prefix."""
  files.makedirs(run_dir)
  # `save`, as training's checkpoint manager does: staged initialisation
  # expects its save counter.
  return checkpointing.make_checkpoint(model).save(
      os.path.join(run_dir, CHECKPOINT_NAME))


@dataclasses.dataclass
class ConfiguredRun:
  """A run built from its gin configuration, ready to train.

  Attributes:
    model: the built AVModel.
    optimizer: its built optimizer.
    schedule: the `Schedule`.
    operative_config: gin's operative configuration of the build (every
      parameter the builders used, defaults included): what makes two runs
      the same.
  """

  model: keras.Model
  optimizer: keras.optimizers.Optimizer
  schedule: Schedule
  operative_config: str


def configure_run(data, seed, gin_files=(), gin_bindings=(), init_from=None):
  """Builds a run from gin files and bindings parsed in isolation.

  Args:
    data: a `latent_data.LatentData`.
    seed: seed of initialisation, data order, noise and negatives.
    gin_files: gin files of the run.
    gin_bindings: bindings applied after them.
    init_from: optional checkpoint prefix of an earlier run (staged
      training: weights, banks and the inherited objective state).

  Returns:
    A `ConfiguredRun`.
  """
  # build_model reseeds Keras; the caller's random state is put back.
  with gin_utils.isolated_config(), global_state.restored():
    gin_utils.parse_gin(gin_files, gin_bindings)
    model, optimizer, schedule = build_model(data, seed)
    operative_config = gin.operative_config_str()
  if init_from:
    checkpointing.initialize_from(model, init_from)
  return ConfiguredRun(model, optimizer, schedule, operative_config)


def fit_run(run, data, seed, epochs=None):
  """Trains a configured run.

  Args:
    run: a `ConfiguredRun`.
    data: its `latent_data.LatentData`.
    seed: the seed it was configured with.
    epochs: overrides the schedule's epochs when given.

  Returns:
    Dict of "seconds" (tracing included), "steps" and "logs" ({name: value
    at each epoch end}, the objective callbacks' epoch-level values
    included).
  """
  start = time.time()
  per_epoch = steps_per_epoch(len(data.train), run.schedule.batch_size)
  facts = run_info.RunInfo(
      model_dir="", num_data=len(data.train), steps_per_epoch=per_epoch,
      strategy=tf.distribute.get_strategy(), log_dir=None,
      instance_labels=data.train.labels,
      instance_faulty=(data.train.fault > 0).astype(np.int64))
  history = run.model.fit(
      visit_stream(data, run.schedule.batch_size, seed),
      epochs=epochs or run.schedule.epochs, steps_per_epoch=per_epoch,
      verbose=0, shuffle=False,
      callbacks=run.model.objective.callbacks(facts))
  # History also holds what the objective's callbacks add at epoch ends.
  return {"seconds": time.time() - start,
          "steps": int(run.optimizer.iterations.numpy()),
          "logs": {k: [float(x) for x in v]
                   for k, v in history.history.items()}}
