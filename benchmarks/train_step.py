"""Throughput of one AVID training step on synthetic in-memory batches.

`benchmark_train_step` builds the model the way training does: the released
recipe `gin/base.gin` (Cross-AVID) through `builders.build_av_model`, with
the benchmark's sizes and any extra gin files or bindings on top, and its
variables from the clip geometry (`preprocessing.Preprocessing`). It
compiles Adam and times `model.train_function` on one random batch of that
geometry held in memory (tf.data from_tensors + repeat + prefetch, so no
input pipeline is measured). After `warmup_steps` untimed steps (tracing,
XLA compilation, oneDNN primitive caches) every timed step is synchronised
by reading its loss back to the host, and the median step time is reported.

Reported FLOPs use avid_tf.models.flops: gflop_per_clip is 3 x the forward
FLOPs (2 x multiply-adds of the convolutions) of both encoders, and
achieved_gflops = gflop_per_clip x clips_per_second.

oneDNN: TF enables its oneDNN CPU kernels by default only on CPUs with
AVX-512 VNNI/BF16 or AMX; elsewhere (e.g. AVX2-only AMD EPYC) a training
step is ~1.35x slower without them (2.28 s vs 1.69 s at batch 8, 8x112x112
on 2 cores). TF_ENABLE_ONEDNN_OPTS=1 must be in the environment before
TensorFlow is imported (set later, the kernels switch on but the step is
still ~30% slower: 2.27 s); scripts/benchmark.py sets it. The result
reports whether oneDNN is on.
"""

import os
import statistics
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from avid_tf import errors
from avid_tf.data import audio_ops
from avid_tf.data import preprocessing as preprocessing_lib
from avid_tf.models import builders
from avid_tf.models import flops
from avid_tf.training import gin_utils
from avid_tf.training import optimizers
from avid_tf.training import strategy as strategy_lib
from avid_tf.training import train_lib

MIXED_PRECISION_POLICIES = ("none", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("default", "mirrored")
# Rates and spectrogram statistics do not change the step, only shapes do;
# these are ingest's defaults.
_FRAME_RATE = 16.0
_SAMPLE_RATE = 24000


def _log(message):
  print(message, file=sys.stderr, flush=True)


def onednn_enabled():
  """Whether TF runs its oneDNN CPU kernels in this process."""
  from tensorflow.python.util import _pywrap_util_port  # pylint: disable=g-import-not-at-top
  return bool(_pywrap_util_port.IsMklEnabled())


def _gpu_names():
  gpus = tf.config.list_physical_devices("GPU")
  return [tf.config.experimental.get_device_details(gpu).get(
      "device_name", gpu.name) for gpu in gpus]


def build_benchmark_model(num_data, video_depth=None, width_multiplier=None,
                          num_negatives=None, gin_files=(), gin_bindings=(),
                          seed=0):
  """The training model of gin/base.gin, resized for the benchmark.

  Parses `gin/base.gin`, then `gin_files`, then bindings of the sizes that
  are given, then `gin_bindings`, and calls `builders.build_av_model`; the
  caller's gin configuration is left as it was.

  Args:
    num_data: memory-bank rows.
    video_depth: R(2+1)D depth (10, 18 or 34); None keeps the configured
      one.
    width_multiplier: encoder channel scale (1.0 = published widths); None
      keeps the configured one.
    num_negatives: K negatives per anchor of the AVID objective; None keeps
      the configured one.
    gin_files: experiment files applied after gin/base.gin.
    gin_bindings: bindings applied last.
    seed: bank initialisation and negative sampling seed.

  Returns:
    An uncompiled, unbuilt `av_model.AVModel`.

  Raises:
    gin_utils.GinConfigError: for a missing file or a bad binding.
  """
  sizes = {"build_encoders.video_depth": video_depth,
           "build_encoders.width_multiplier": width_multiplier,
           "build_avid_objective.num_negatives": num_negatives}
  bindings = [f"{name} = {value!r}" for name, value in sizes.items()
              if value is not None]
  with gin_utils.isolated_config():
    gin_utils.parse_gin(
        [os.path.join(gin_utils.GIN_ROOT, "base.gin"), *gin_files],
        bindings + list(gin_bindings))
    return builders.build_av_model(num_data=num_data, seed=seed)


def clip_geometry(num_frames, crop_size, audio_seconds):
  """The `Preprocessing` of the benchmark's batches (unit statistics)."""
  return preprocessing_lib.Preprocessing(
      num_frames=num_frames, crop_size=crop_size, frame_rate=_FRAME_RATE,
      audio_seconds=audio_seconds, sample_rate=_SAMPLE_RATE,
      spectrogram_mean=[0.0] * audio_ops.NUM_BINS,
      spectrogram_std=[1.0] * audio_ops.NUM_BINS)


def synthetic_batch(preprocessing, batch_size, num_data, seed=0):
  """One random batch of `preprocessing.element_spec` (NumPy arrays).

  Memory rows are distinct, as in a training batch, when num_data allows.
  """
  rng = np.random.default_rng(seed)
  spec = preprocessing.element_spec(batch_size)
  return {
      "video": rng.standard_normal(spec["video"].shape, np.float32),
      "audio": rng.standard_normal(spec["audio"].shape, np.float32),
      "index": rng.choice(num_data, size=batch_size,
                          replace=batch_size > num_data).astype(np.int32),
      "label": np.zeros(spec["label"].shape, np.int32),
  }


def _synthetic_dataset(batch, num_data):
  """The batch repeated forever, memory rows shifted every step."""
  batch_size = batch["index"].shape[0]

  def shift_rows(step, element):
    element = dict(element)
    offset = tf.cast((step * batch_size) % num_data, tf.int32)
    element["index"] = (element["index"] + offset) % num_data
    return element

  dataset = tf.data.Dataset.from_tensors(batch).repeat()
  dataset = tf.data.Dataset.zip(tf.data.Dataset.counter(), dataset)
  return dataset.map(shift_rows).prefetch(2)


def compiled_model_and_batches(distribution, preprocessing, batch_size,
                               num_data, jit_compile=False, seed=0,
                               **model_sizes):
  """The compiled training model and an iterator over its random batches.

  Args:
    distribution: the `tf.distribute.Strategy` to build and train under.
    preprocessing: the clip geometry (`clip_geometry`).
    batch_size: global clips per step.
    num_data: memory-bank rows.
    jit_compile: compile the train step with XLA.
    seed: seed of the batch (weights and banks follow Keras' global seed).
    **model_sizes: keyword arguments of `build_benchmark_model`.

  Returns:
    (model with its train_function made, iterator of `model.train_function`).
  """
  with distribution.scope():
    model = build_benchmark_model(num_data, seed=seed, **model_sizes)
    optimizer = optimizers.build_optimizer(2e-4)
    model.compile(optimizer=optimizer, jit_compile=jit_compile)
    # Under a strategy or XLA the traced step cannot create variables.
    train_lib.build_variables(model, preprocessing, optimizer)
  dataset = _synthetic_dataset(
      synthetic_batch(preprocessing, batch_size, num_data, seed), num_data)
  if distribution is not tf.distribute.get_strategy():
    dataset = distribution.experimental_distribute_dataset(dataset)
  model.make_train_function()
  return model, iter(dataset)


def benchmark_train_step(batch_size=8, num_frames=8, crop_size=112,
                         video_depth=None, audio_seconds=2.0, num_data=10000,
                         num_negatives=None, jit_compile=False,
                         mixed_precision="none", strategy="default",
                         steps=10, warmup_steps=3, width_multiplier=None,
                         gin_files=(), gin_bindings=(), seed=0):
  """Times the AVID training step and returns the measurements.

  Args:
    batch_size: global clips per step.
    num_frames: frames per clip.
    crop_size: frame height and width.
    video_depth: R(2+1)D depth (10, 18 or 34); None keeps the configured
      one (18 in gin/base.gin).
    audio_seconds: audio clip length; the spectrogram has 100 frames per
      second and 257 frequency bins.
    num_data: memory-bank rows.
    num_negatives: K negatives per anchor; None keeps the configured one
      (1024 in gin/base.gin).
    jit_compile: compile the train step with XLA.
    mixed_precision: "none", "mixed_float16" or "mixed_bfloat16".
    strategy: "default" (one device) or "mirrored" (all local GPUs, else
      the CPU; the global batch is split over the replicas).
    steps: timed steps (>= 1).
    warmup_steps: untimed steps first (>= 1: the first step traces).
    width_multiplier: encoder channel scale (< 1 for smoke tests); None
      keeps the configured one (1.0 in gin/base.gin).
    gin_files: experiment files applied after gin/base.gin (e.g.
      gin/avid/kinetics_self.gin), to benchmark another configuration.
    gin_bindings: gin bindings applied last.
    seed: seed of weights, banks and the synthetic batch.

  Returns:
    dict: clips_per_second, step_seconds_median, gflop_per_clip,
    achieved_gflops, step_seconds_min/max, warmup_seconds (first step
    included), loss (last step), replicas, gpus (names; [] on CPU), onednn,
    cores, load_average (1-minute load before and after), tensorflow
    version, the settings and the sizes of the model built (video_depth,
    width_multiplier, num_negatives, audio_frames).

  Raises:
    ValueError: for an unknown policy or strategy, non-positive sizes, or
      jit_compile with a strategy of several replicas (fails in Keras).
    gin_utils.GinConfigError: for a missing gin file or a bad binding.
  """
  if mixed_precision not in MIXED_PRECISION_POLICIES:
    raise errors.InvalidValueError(
        f"mixed_precision must be one of "
        f"{MIXED_PRECISION_POLICIES}, got '{mixed_precision}'")
  if strategy not in STRATEGIES:
    raise errors.InvalidValueError(f"strategy must be one of {STRATEGIES}, got "
                                   f"'{strategy}'")
  if min(batch_size, num_frames, crop_size, num_data, steps,
         warmup_steps) < 1 or audio_seconds <= 0:
    raise errors.InvalidValueError(
        "batch_size, num_frames, crop_size, num_data, steps "
        "and warmup_steps must be >= 1 and audio_seconds > 0")
  if num_data < 2:
    raise errors.InvalidValueError(
        f"num_data must be >= 2 (negatives exclude the anchor),"
        f" got {num_data}")
  preprocessing = clip_geometry(num_frames, crop_size, audio_seconds)

  if not tf.config.list_physical_devices("GPU") and not onednn_enabled():
    _log("benchmark_train_step: oneDNN is off; on CPUs without AVX-512 "
         "set TF_ENABLE_ONEDNN_OPTS=1 before TensorFlow is imported")
  load_before = os.getloadavg()[0]
  previous_policy = keras.mixed_precision.global_policy()
  keras.mixed_precision.set_global_policy(
      "float32" if mixed_precision == "none" else mixed_precision)
  try:
    keras.utils.set_random_seed(seed)
    distribution = strategy_lib.get_strategy(strategy)
    if jit_compile and distribution.num_replicas_in_sync > 1:
      raise errors.InvalidValueError(
          f"jit_compile=True with strategy={strategy!r} on "
          f"{distribution.num_replicas_in_sync} replicas: Keras XLA-compiles "
          "the whole strategy.run, which fails on several devices ('Trying "
          "to access resource ... located in device'); use strategy="
          "'default' (one device) for XLA figures")
    if batch_size % distribution.num_replicas_in_sync:
      raise errors.InvalidValueError(
          f"batch_size {batch_size} does not split over "
          f"{distribution.num_replicas_in_sync} replicas")
    model, iterator = compiled_model_and_batches(
        distribution, preprocessing, batch_size, num_data,
        jit_compile=jit_compile, seed=seed, video_depth=video_depth,
        width_multiplier=width_multiplier, num_negatives=num_negatives,
        gin_files=gin_files, gin_bindings=gin_bindings)

    def run_step():
      logs = model.train_function(iterator)
      return float(logs["loss"])  # Waits for the step to finish.

    _log(f"benchmark_train_step: warming up ({warmup_steps} steps)")
    start = time.perf_counter()
    for _ in range(warmup_steps):
      run_step()
    warmup_seconds = time.perf_counter() - start
    step_seconds = []
    loss = None
    for step in range(steps):
      start = time.perf_counter()
      loss = run_step()
      step_seconds.append(time.perf_counter() - start)
      _log(f"benchmark_train_step: step {step + 1}/{steps} "
           f"{step_seconds[-1]:.3f} s")

    gflop_per_clip = flops.train_step_gflop_per_clip(
        model.video_encoder, model.audio_encoder, preprocessing.video_shape,
        preprocessing.audio_shape)
    median = statistics.median(step_seconds)
    clips_per_second = batch_size / median
    return {
        "clips_per_second": round(clips_per_second, 3),
        "step_seconds_median": round(median, 4),
        "step_seconds_min": round(min(step_seconds), 4),
        "step_seconds_max": round(max(step_seconds), 4),
        # Significant digits: a tiny model on a loaded machine rounds to 0
        # at a fixed number of decimals.
        "gflop_per_clip": float(f"{gflop_per_clip:.4g}"),
        "achieved_gflops": float(f"{gflop_per_clip * clips_per_second:.4g}"),
        "warmup_seconds": round(warmup_seconds, 2),
        "loss": loss,
        "replicas": distribution.num_replicas_in_sync,
        "gpus": _gpu_names(),
        "onednn": onednn_enabled(),
        "cores": os.cpu_count(),
        "load_average": [round(load_before, 2),
                         round(os.getloadavg()[0], 2)],
        "tensorflow": tf.__version__,
        "batch_size": batch_size, "num_frames": num_frames,
        "crop_size": crop_size, "video_depth": model.video_encoder.depth,
        "audio_seconds": audio_seconds,
        "audio_frames": preprocessing.spectrogram_frames,
        "num_data": num_data,
        # Another objective (chosen in a gin file) may have no negatives.
        "num_negatives": getattr(model.objective, "num_negatives", None),
        "jit_compile": bool(jit_compile),
        "mixed_precision": mixed_precision, "strategy": strategy,
        "steps": steps, "warmup_steps": warmup_steps,
        "width_multiplier": model.video_encoder.width_multiplier,
        "gin_files": list(gin_files), "gin_bindings": list(gin_bindings),
    }
  finally:
    keras.mixed_precision.set_global_policy(previous_policy)
