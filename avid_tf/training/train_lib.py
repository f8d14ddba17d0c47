"""The one gin-configured training entry point of avid_tf."""

import contextlib
import dataclasses
import json
import os
import time
from typing import List, Optional, Tuple

from absl import logging
import gin
import keras
import numpy as np
import tensorflow as tf

from avid_tf import errors
from avid_tf.data import pipeline
from avid_tf.data import preprocessing as preprocessing_lib
from avid_tf.data import schema
from avid_tf.data import shard_check
from avid_tf.data import video_ops
from avid_tf.models import builders
from avid_tf.training import builder_args
from avid_tf.training import callbacks as callbacks_lib
from avid_tf.training import checkpointing
from avid_tf.training import gin_utils
from avid_tf.training import global_state
from avid_tf.training import interrupt
from avid_tf.training import optimizers
from avid_tf.training import run_info
from avid_tf.training import strategy as strategy_lib
from avid_tf.utils import checks
from avid_tf.utils import files

CHECKPOINT_SUBDIR = "checkpoints"
# The run's figures, rewritten at the end of every session of the run.
SUMMARY_FILE = "train_summary.json"
MIXED_PRECISION_POLICIES = (None, "mixed_float16", "mixed_bfloat16")
# `train`'s arguments a rerun may change: how long to train, where the
# dataset lies (its size is checked against the checkpoint) and what to
# log or keep. Any other change refuses to resume.
RESUMABLE_CHANGES = frozenset(f"train.{name}" for name in (
    "epochs", "max_steps", "dataset_dir", "verbose", "log_every_steps",
    "checkpoint_every_steps", "max_checkpoints", "callbacks"))


@dataclasses.dataclass(frozen=True)
class TrainSettings:
  """`train`'s arguments, checked: a wrong type or value is a `UserError`
  naming the binding (e.g. "train.epochs must be an integer >= 1, got -1").

  Attributes: as the arguments of `train`.
  """

  dataset_dir: str
  strategy: str
  batch_size: int
  epochs: int
  clips_per_video: int
  learning_rate: float
  lr_decay_epochs: Tuple[float, ...]
  lr_decay_factor: float
  checkpoint_every_steps: int
  max_checkpoints: int
  log_every_steps: int
  mixed_precision: Optional[str]
  jit_compile: bool
  seed: int
  max_steps: Optional[int]
  verbose: int

  def __post_init__(self):
    def check(name, checker, **kwargs):
      checks.field(self, "train", name, checker, **kwargs)

    if self.dataset_dir is None:
      raise errors.InvalidValueError(
          "No dataset: bind train.dataset_dir (scripts/train.py: "
          "--dataset_dir) to a folder of scripts/prepare_data.py")
    if not isinstance(self.dataset_dir, (str, os.PathLike)):
      raise errors.InvalidValueError(
          f"train.dataset_dir must be a folder, got {self.dataset_dir!r}")
    if not isinstance(self.lr_decay_epochs, (tuple, list)):
      raise errors.InvalidValueError(f"train.lr_decay_epochs must be a tuple of "
                                 f"epochs, got {self.lr_decay_epochs!r}")
    object.__setattr__(self, "lr_decay_epochs", tuple(
        checks.number("train.lr_decay_epochs", epoch, low=0)
        for epoch in self.lr_decay_epochs))
    check("strategy", checks.choice, choices=strategy_lib.STRATEGIES)
    for field in ("batch_size", "epochs", "clips_per_video",
                  "max_checkpoints", "log_every_steps"):
      check(field, checks.integer, minimum=1)
    check("checkpoint_every_steps", checks.integer, minimum=0)
    check("max_steps", checks.integer, minimum=1, optional=True)
    check("seed", checks.integer, minimum=0)
    check("verbose", checks.choice, choices=(0, 1, 2))
    check("learning_rate", checks.number, low=0, low_open=True)
    check("lr_decay_factor", checks.number, low=0, low_open=True)
    check("mixed_precision", checks.choice, choices=MIXED_PRECISION_POLICIES)
    check("jit_compile", checks.boolean)


def _learning_rate(learning_rate, decay_epochs, decay_factor, steps_per_epoch):
  if not decay_epochs or decay_factor == 1.0:
    return learning_rate
  boundaries = [int(e * steps_per_epoch) for e in decay_epochs]
  values = [learning_rate * decay_factor**i for i in range(len(boundaries) + 1)]
  return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def build_variables(model, preprocessing, optimizer=None):
  """Creates every model (and optimizer) variable so a restore can fill them.

  Args:
    model: an unbuilt AVModel.
    preprocessing: the run's `Preprocessing` (input shapes).
    optimizer: optional optimizer to build for the model's variables.
  """
  model(preprocessing.dummy_batch(), training=False)
  if optimizer is not None:
    optimizer.build(model.trainable_variables)


def _warn_if_crops_are_upsampled(dataset, preprocessing):
  """Warns when the crop is larger than the stored frames' short side.

  Every training crop is then upsampled (a small RandomResizedCrop about
  5x at 224 from 128), where the reference crops from the original frames.
  """
  short_side = dataset.metadata.get("short_side")
  if short_side is None or preprocessing.crop_size <= short_side:
    return
  logging.warning(
      "The crop size %d exceeds the short side %d of the frames stored in "
      "%s: every crop is upsampled. Ingest the videos with --short_side=%d "
      "(crop / %.3f) or more.", preprocessing.crop_size, short_side,
      dataset.directory,
      round(preprocessing.crop_size / video_ops.EVAL_CROP_FRACTION),
      video_ops.EVAL_CROP_FRACTION)


def _check_bn_groups(model, per_replica_batch):
  """Fails early when BN groups do not divide the per-replica batch."""
  for encoder in (model.video_encoder, model.audio_encoder):
    size = getattr(encoder, "bn_virtual_batch_size", None)
    if size and per_replica_batch % size:
      raise errors.InvalidValueError(
          f"The per-replica batch of {per_replica_batch} clips is not a "
          f"multiple of build_encoders.bn_virtual_batch_size = {size}; "
          "choose train.batch_size and the device count to make it one.")


def _instance_column(dataset, column):
  """A train-split column by memory row, or None when nothing is known."""
  values = dataset.instance_column("train", column)
  if values is None or not np.any(values >= 0):
    return None
  return values


def _adapt_for_multi_worker(model):
  """Works around Keras 3 `fit` failures under MultiWorkerMirroredStrategy.

  * Before training, `fit` averages one distributed input batch over the
    replicas to build the model; that reduce fails on dict batches
    (keras-team/keras#20329). `train` creates every model and optimizer
    variable beforehand, so this build is skipped.
  * `fit` averages each step's logs over the replicas with a reduce along
    axis 0, which fails on scalars; the logs get shape [1], so the reduce
    returns their mean over all workers as scalars.
  * The input tensors of a one-device worker carry no device, on which
    `ReplicaContext.all_gather` (the memory-bank update) fails with
    "destinations can not be empty"; `tf.identity` inside the replica
    places the batch on the replica's device.

  Args:
    model: the built AVModel, created under the strategy's scope.
  """
  train_step = model.train_step

  def train_step_with_placed_inputs_and_vector_logs(data):
    logs = train_step(tf.nest.map_structure(tf.identity, data))
    return {name: tf.reshape(value, [1]) for name, value in logs.items()}

  def skip_symbolic_build(iterator=None, data_batch=None):
    del iterator, data_batch

  model.train_step = train_step_with_placed_inputs_and_vector_logs
  # pylint: disable-next=protected-access
  model._maybe_symbolic_build = skip_symbolic_build


def _earlier_summary(model_dir, start_step, steps_per_epoch, resumed):
  """What the sessions before a resumed run recorded in train_summary.json.

  A rerun of a finished or interrupted run would otherwise report only its
  own part: no training seconds and no epoch-level values of the epochs it
  did not run.

  Returns:
    Dict with the earlier "train_seconds", "final_logs", "sessions" and the
    "epoch_logs" of the epochs completed before `start_step`; empty values
    for a fresh run or when there is no summary.
  """
  earlier = {"train_seconds": 0.0, "final_logs": {}, "epoch_logs": [],
             "sessions": []}
  path = os.path.join(model_dir, SUMMARY_FILE)
  if not resumed or not files.isfile(path):
    return earlier
  with files.open_file(path) as f:
    recorded = json.load(f)
  completed_epochs = start_step // steps_per_epoch
  return {"train_seconds": float(recorded.get("train_seconds", 0.0)),
          "final_logs": recorded.get("final_logs", {}),
          "epoch_logs": [(epoch, values) for epoch, values
                         in recorded.get("epoch_logs", [])
                         if epoch < completed_epochs],
          "sessions": recorded.get("sessions", [])}


def _check_unchanged_settings(model_dir):
  """Refuses to resume a run under settings it did not train with.

  The operative configuration so far (the model, optimizer, clip geometry
  and `train`'s arguments) and every explicit binding are compared with
  the run's config.gin; settings that only say how long to train, where
  the dataset lies and what to log may change.

  Raises:
    errors.InvalidValueError: naming each setting that differs.
  """
  path = os.path.join(model_dir, builder_args.CONFIG_FILE)
  if not files.isfile(path):
    return
  with files.open_file(path) as f:
    recorded = f.read()
  current = gin.operative_config_str() + "\n" + gin.config_str()
  changed = gin_utils.changed_bindings(recorded, current,
                                       ignore=RESUMABLE_CHANGES)
  if changed:
    raise errors.InvalidValueError(
        f"{model_dir} trained with other settings ({'; '.join(changed)}): "
        "rerun with the recorded ones to resume, or give a new --model_dir.")


@gin.configurable(denylist=["model_dir"])
def train(model_dir,
          dataset_dir=None,
          strategy="default",
          batch_size=32,
          epochs=1,
          clips_per_video=10,
          learning_rate=2e-4,
          lr_decay_epochs=(),
          lr_decay_factor=1.0,
          checkpoint_every_steps=1000,
          max_checkpoints=3,
          log_every_steps=10,
          mixed_precision=None,
          jit_compile=False,
          seed=0,
          max_steps=None,
          verbose=1,
          init_from=None,
          callbacks=()):
  """Pretrains an audio-visual model and checkpoints it in `model_dir`.

  The memory size is the number of training videos in the dataset metadata.
  A run resumes from the newest checkpoint in `model_dir/checkpoints` that
  reads completely (a damaged newer one is set aside with a warning, never
  deleted; see `checkpointing.restore_newest`); the input stream is
  deterministic per position, so a resumed run sees exactly the batches an
  uninterrupted run would have seen.

  Staged training (AVID+CMA): `init_from` names an earlier run. A new run
  (no checkpoint of its own yet) starts from that run's encoder and head
  weights, memory banks and the objective state the new objective declares
  it inherits (`Objective.inherited_state`, e.g. Z), with a fresh optimizer
  at step 0. Once the new run has checkpoints, rerunning resumes it from
  them and `init_from` is not read again.

  A rerun with settings other than those the run trained with (its
  config.gin) refuses to start, naming them; only `RESUMABLE_CHANGES` may
  differ. The run folder is created once the dataset, the model and any
  `init_from` check out. SIGINT or SIGTERM stop a session after its current
  step (`interrupt`): it saves a checkpoint and the summary, then raises
  `errors.Interrupted`.

  Under "multi_worker" every worker calls `train` with the same `model_dir`
  (a folder all of them can read); only the chief writes checkpoints,
  events, config.gin and train_summary.json there. The other workers take
  part in every save through a temporary folder of their own, deleted when
  they finish.

  Args:
    model_dir: folder for checkpoints, TensorBoard events and config.gin.
    dataset_dir: dataset folder written by ingest (`<output>/<name>/1.0.0`).
    strategy: "default", "mirrored" or "multi_worker".
    batch_size: global batch size (split across replicas).
    epochs: number of epochs; an epoch visits every training video
      `clips_per_video` times, less the visits that do not fill a whole
      last batch (`pipeline.steps_per_epoch`).
    clips_per_video: visits of each video per epoch.
    learning_rate: Adam learning rate (`optimizers.build_optimizer`).
    lr_decay_epochs: epochs at which the learning rate is multiplied by
      `lr_decay_factor` (the released configs keep it constant).
    lr_decay_factor: multiplicative decay at each of `lr_decay_epochs`.
    checkpoint_every_steps: also checkpoint every this many steps (0: only at
      epoch ends).
    max_checkpoints: checkpoints kept.
    log_every_steps: TensorBoard scalar frequency.
    mixed_precision: None, "mixed_float16" or "mixed_bfloat16".
    jit_compile: compile the train step with XLA.
    seed: seed of data order, augmentation, negatives and initialisation.
    max_steps: optional cap on total steps (smoke tests, benchmarks).
    verbose: Keras progress bar verbosity (0, 1 or 2).
    init_from: model_dir or checkpoint prefix of an earlier run to start
      from (see above); None starts from scratch.
    callbacks: extra Keras callbacks, run after the objective's own.

  Returns:
    Dict with "steps", "train_seconds" (over every session of the run),
    "final_logs" (last step's logs), "epoch_logs" (epoch-level values of the
    objective's callbacks, by epoch, earlier sessions included) and
    "history" (this session's (step, logs) every `log_every_steps`) and
    "sessions" (each session's "start_step", "end_step", "seconds" and
    whether a signal "interrupted" it). All but "history" are also written
    to `<model_dir>/train_summary.json`.

  Raises:
    checkpointing.CheckpointMismatchError: when resuming or initialising
      from an incompatible checkpoint.
    checkpointing.DamagedCheckpointError: when no checkpoint of the run (or
      of `init_from`) reads completely.
    callbacks_lib.NonFiniteLossError: when the loss becomes NaN or infinite.
    ValueError: a per-replica batch that is not a multiple of
      `build_encoders.bn_virtual_batch_size`.
    errors.InvalidValueError: an argument of the wrong type or out of range
      (a `UserError` naming the binding), or a rerun with other settings.
    errors.Interrupted: a signal stopped the session (its state saved).
  """
  settings = TrainSettings(
      dataset_dir=dataset_dir, strategy=strategy, batch_size=batch_size,
      epochs=epochs, clips_per_video=clips_per_video,
      learning_rate=learning_rate, lr_decay_epochs=lr_decay_epochs,
      lr_decay_factor=lr_decay_factor,
      checkpoint_every_steps=checkpoint_every_steps,
      max_checkpoints=max_checkpoints, log_every_steps=log_every_steps,
      mixed_precision=mixed_precision, jit_compile=jit_compile, seed=seed,
      max_steps=max_steps, verbose=verbose)
  with global_state.restored():
    return _train(model_dir, settings, init_from, list(callbacks))


def _train(model_dir, settings, init_from, extra_callbacks):
  """`train`'s phases: data, model, callbacks, fit, summary."""
  keras.mixed_precision.set_global_policy(settings.mixed_precision
                                          or "float32")
  # Makes weight initialisation (Keras' global seed) repeatable per seed.
  keras.utils.set_random_seed(settings.seed)
  distribution = strategy_lib.get_strategy(settings.strategy)
  data = _open_data(settings, distribution)
  with distribution.scope():
    state = _build_state(model_dir, settings, data, distribution, init_from)
  start_step = int(state.optimizer.iterations.numpy())
  earlier = _earlier_summary(model_dir, start_step, data.steps_per_epoch,
                             bool(state.restored))
  if state.restored:
    _check_unchanged_settings(model_dir)
    if start_step >= data.total_steps:
      print(f"The run finished at step {start_step}: nothing to train.")
      return _summary(start_step, earlier, None, [])
    print(f"Resuming from {state.restored} at step {start_step}.")
  is_chief = strategy_lib.is_chief(distribution)
  # The inputs checked out: only now does the run folder appear.
  files.makedirs(model_dir)
  run_callbacks = _make_callbacks(model_dir, settings, data, state,
                                  distribution, extra_callbacks)
  if is_chief and not state.restored:
    _write_run_files(model_dir, data.preprocessing)
  session = _Session(start_step)
  try:
    with _watching(run_callbacks.watch, distribution):
      session.end_step = _fit(state, settings, data, distribution,
                              start_step, run_callbacks)
  except interrupt.StopRequested as stop:
    session.end_step = int(state.optimizer.iterations.numpy())
    session.interrupted_by = stop.signal_number
    run_callbacks.checkpoints.save(session.end_step)
  finally:
    # Also after a NaN stop: nothing of a non-chief worker stays behind.
    checkpointing.remove_worker_directory(state.checkpoint_dir, distribution)
  summary = _summary(session.end_step, earlier, run_callbacks.logger,
                     [session.record()])
  if is_chief:
    # The configuration as this session trained (the input pipeline's
    # settings included); a rerun's check makes it the first session's.
    files.write_text(os.path.join(model_dir, builder_args.CONFIG_FILE),
                     gin.operative_config_str())
    files.write_json(
        os.path.join(model_dir, SUMMARY_FILE),
        {k: v for k, v in summary.items() if k != "history"})
  if session.interrupted_by is not None:
    raise errors.Interrupted(
        f"interrupted at step {session.end_step}; rerun the same command to "
        "resume", session.interrupted_by)
  return summary


class _Session:
  """One session of a run: the steps it trained and its wall time."""

  def __init__(self, start_step):
    self.start_step = start_step
    self.end_step = start_step
    self.interrupted_by = None
    self._start_time = time.time()

  def record(self):
    return {"start_step": self.start_step, "end_step": self.end_step,
            "seconds": time.time() - self._start_time,
            "interrupted": self.interrupted_by is not None}


@dataclasses.dataclass(frozen=True)
class _Data:
  """The training data of a run and its size in steps."""

  dataset: schema.DatasetInfo
  num_data: int
  preprocessing: preprocessing_lib.Preprocessing
  steps_per_epoch: int
  total_steps: int


def _open_data(settings, distribution):
  """Reads the dataset's metadata and the run's clip geometry."""
  dataset = schema.DatasetInfo.load(settings.dataset_dir)
  preprocessing = preprocessing_lib.clip_preprocessing(dataset)
  _warn_if_crops_are_upsampled(dataset, preprocessing)
  steps_per_epoch = pipeline.steps_per_epoch(
      dataset, settings.batch_size, settings.clips_per_video,
      num_input_pipelines=strategy_lib.num_input_pipelines(distribution))
  total_steps = settings.epochs * steps_per_epoch
  if settings.max_steps:
    total_steps = min(total_steps, settings.max_steps)
  return _Data(dataset, dataset.num_examples("train"), preprocessing,
               steps_per_epoch, total_steps)


@dataclasses.dataclass(frozen=True)
class _State:
  """The model, its optimizer and checkpoints, resumed or initialised."""

  model: keras.Model
  optimizer: keras.optimizers.Optimizer
  checkpoint_dir: str
  manager: tf.train.CheckpointManager
  restored: Optional[str]


def _build_state(model_dir, settings, data, distribution, init_from):
  """Builds the model and optimizer (under the strategy's scope) and
  restores the run's newest checkpoint, or starts from `init_from`."""
  model = builders.build_av_model(num_data=data.num_data, seed=settings.seed)
  _check_bn_groups(model,
                   settings.batch_size // distribution.num_replicas_in_sync)
  optimizer = optimizers.build_optimizer(
      _learning_rate(settings.learning_rate, settings.lr_decay_epochs,
                     settings.lr_decay_factor, data.steps_per_epoch))
  model.compile(optimizer=optimizer, jit_compile=settings.jit_compile)
  build_variables(model, data.preprocessing, optimizer)
  if isinstance(distribution, tf.distribute.MultiWorkerMirroredStrategy):
    _adapt_for_multi_worker(model)
  checkpoint = checkpointing.make_checkpoint(model, optimizer)
  checkpoint_dir = os.path.join(model_dir, CHECKPOINT_SUBDIR)
  # Left over by a worker that crashed.
  checkpointing.remove_worker_directory(checkpoint_dir, distribution)
  # Every worker of a multi-worker run restores from the chief's folder;
  # only the chief sets damaged checkpoints aside. The manager reads the
  # checkpoint state after that.
  restored = checkpointing.restore_newest(
      checkpoint, checkpoint_dir, model,
      set_aside_damaged=strategy_lib.is_chief(distribution))
  manager = tf.train.CheckpointManager(
      checkpoint, checkpointing.worker_directory(checkpoint_dir,
                                                 distribution),
      max_to_keep=settings.max_checkpoints)
  if not restored and init_from:
    initial = checkpointing.resolve_checkpoint(init_from, CHECKPOINT_SUBDIR)
    checkpointing.initialize_from(model, initial)
    print(f"Initialised from {initial} (weights, memory banks and "
          f"{list(model.objective.inherited_state) or 'no'} objective "
          "state); fresh optimizer.")
  return _State(model, optimizer, checkpoint_dir, manager, restored)


@dataclasses.dataclass(frozen=True)
class _Callbacks:
  """Every callback of a session's `fit`, and the ones `_train` reads."""

  all: List[keras.callbacks.Callback]
  logger: callbacks_lib.ScalarLogger
  checkpoints: callbacks_lib.CheckpointAndGuard
  watch: interrupt.InterruptWatch


def _make_callbacks(model_dir, settings, data, state, distribution,
                    extra_callbacks):
  """The run's logger and every callback of `fit`, in order."""
  is_chief = strategy_lib.is_chief(distribution)
  log_dir = os.path.join(model_dir, "train") if is_chief else None
  run = run_info.RunInfo(
      model_dir=model_dir, num_data=data.num_data,
      steps_per_epoch=data.steps_per_epoch, strategy=distribution,
      is_chief=is_chief, log_dir=log_dir,
      instance_labels=_instance_column(data.dataset, "label"),
      instance_faulty=_instance_column(data.dataset, "faulty"),
      dataset=data.dataset)
  logger = callbacks_lib.ScalarLogger(log_dir, settings.log_every_steps)
  checkpoints = callbacks_lib.CheckpointAndGuard(
      state.manager, settings.checkpoint_every_steps, state.checkpoint_dir)
  watch = interrupt.InterruptWatch(data.steps_per_epoch)
  # The objective's callbacks first: the logger writes what they add to the
  # epoch logs. The watch comes last, once the step is logged and saved.
  return _Callbacks(
      list(state.model.objective.callbacks(run)) + extra_callbacks
      + [checkpoints, logger, watch], logger, checkpoints, watch)


def _write_run_files(model_dir, preprocessing):
  """What a run folder holds before its first step: the operative config,
  the builders' arguments and the preprocessing record."""
  files.write_text(os.path.join(model_dir, builder_args.CONFIG_FILE),
                   gin.operative_config_str())
  builder_args.write(model_dir, builder_args.current())
  preprocessing.write(model_dir)


def _fit(state, settings, data, distribution, start_step, run_callbacks):
  """Trains from `start_step` to the run's last step; returns the step."""
  step = start_step
  steps_per_epoch, total_steps = data.steps_per_epoch, data.total_steps
  while step < total_steps:
    # Whole epochs run in one `fit` that keeps the infinite input iterator;
    # a partial epoch (resumed mid-epoch, or cut by max_steps) runs alone so
    # epochs stay aligned with multiples of steps_per_epoch.
    epoch = step // steps_per_epoch
    if step % steps_per_epoch == 0 and total_steps - step >= steps_per_epoch:
      num_epochs = (total_steps - step) // steps_per_epoch
      steps = steps_per_epoch
    else:
      num_epochs = 1
      steps = min(steps_per_epoch * (epoch + 1), total_steps) - step
    stream = distribution.distribute_datasets_from_function(
        lambda ctx, start=step: pipeline.make_train_dataset(
            data.dataset, batch_size=settings.batch_size,
            preprocessing=data.preprocessing, seed=settings.seed,
            start_step=start, clips_per_video=settings.clips_per_video,
            input_context=ctx, video_dtype=_batch_video_dtype()))
    try:
      state.model.fit(stream, initial_epoch=epoch, epochs=epoch + num_epochs,
                      steps_per_epoch=steps, callbacks=run_callbacks.all,
                      verbose=settings.verbose, shuffle=False)
    except tf.errors.DataLossError as error:
      # No checkpoint is saved after the failed step: the newest is kept.
      raise shard_check.damaged_shard_error(
          data.dataset, error,
          tf.train.latest_checkpoint(state.checkpoint_dir)) from None
    step = int(state.optimizer.iterations.numpy())
  return step


def _watching(watch, distribution):
  """Watches for signals, except in a multi-worker run.

  Every worker takes part in every save there, so one worker alone cannot
  stop and save; such a run resumes from its periodic checkpoints.
  """
  if isinstance(distribution, tf.distribute.MultiWorkerMirroredStrategy):
    return contextlib.nullcontext()
  return watch.watching()


def _summary(step, earlier, logger, sessions):
  """The run's figures over every session (see `train`'s return value).

  Args:
    step: the run's step now.
    earlier: `_earlier_summary`.
    logger: this session's `ScalarLogger`, or None when it trained nothing.
    sessions: this session's record, if it trained.

  Returns:
    See `train`.
  """
  history = logger.history if logger else []
  return {"steps": step,
          "train_seconds": earlier["train_seconds"] + sum(
              session["seconds"] for session in sessions),
          "final_logs": history[-1][1] if history else earlier["final_logs"],
          "epoch_logs": earlier["epoch_logs"] + (
              logger.epoch_history if logger else []),
          "sessions": earlier["sessions"] + sessions,
          "history": history}


def _batch_video_dtype():
  """uint8 video batches when the step runs on GPUs, float32 on CPUs.

  With uint8 batches the colour jitter and normalisation run in the model's
  step (`pipeline.finish_video`), off the host that feeds the GPUs; on a
  CPU the step would only take that work from the input pipeline's
  threads. Either way the step sees the same clips.
  """
  return "uint8" if tf.config.list_logical_devices("GPU") else "float32"
