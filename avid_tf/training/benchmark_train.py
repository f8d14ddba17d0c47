"""Throughput of one AVID training step on synthetic in-memory batches.

`benchmark_train_step` builds the encoders (avid_tf.models.builders), the
projection heads, the memory banks and the Cross-AVID objective at the
requested sizes, compiles Adam, and times `model.train_function` on one
random batch held in memory (tf.data from_tensors + repeat + prefetch, so
no input pipeline is measured). After `warmup_steps` untimed steps (tracing,
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

from avid_tf.losses import avid
from avid_tf.models import av_model
from avid_tf.models import builders
from avid_tf.models import flops
from avid_tf.models import heads
from avid_tf.training import strategy as strategy_lib

MIXED_PRECISION_POLICIES = ("none", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("default", "mirrored")
AUDIO_BINS = 257


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


def build_benchmark_model(num_data, video_depth=18, width_multiplier=1.0,
                          num_negatives=1024, seed=0):
  """The Cross-AVID model of the released configs at the given sizes.

  Same parts and defaults as `builders.build_av_model` (whose encoder sizes
  come from gin only), with the encoder depth and width given directly.

  Args:
    num_data: memory-bank rows.
    video_depth: R(2+1)D depth (10, 18 or 34).
    width_multiplier: encoder channel scale (1.0 = published widths).
    num_negatives: K negatives per anchor.
    seed: bank initialisation and negative sampling seed.

  Returns:
    An uncompiled `av_model.AVModel`.
  """
  video_encoder, audio_encoder = builders.build_encoders(
      video_depth=video_depth, audio_depth=10,
      width_multiplier=width_multiplier, synchronized_bn=False)
  objective = avid.AVIDObjective(cross_modal_weight=1.0,
                                 within_modal_weight=0.0, temperature=0.07)
  return av_model.AVModel(
      video_encoder, audio_encoder,
      heads.ProjectionHead(name="video_head"),
      heads.ProjectionHead(name="audio_head"),
      num_data=num_data, objective=objective, num_negatives=num_negatives,
      bank_momentum=0.5, weight_decay=1e-5, embedding_dim=128, seed=seed)


def synthetic_batch(batch_size, num_frames, crop_size, audio_frames,
                    num_data, seed=0):
  """One random batch in the DESIGN.md batch contract (NumPy arrays)."""
  rng = np.random.default_rng(seed)
  return {
      "video": rng.standard_normal(
          (batch_size, num_frames, crop_size, crop_size, 3), np.float32),
      "audio": rng.standard_normal(
          (batch_size, audio_frames, AUDIO_BINS, 1), np.float32),
      "index": rng.choice(num_data, size=batch_size,
                          replace=batch_size > num_data).astype(np.int32),
      "label": np.zeros((batch_size,), np.int32),
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


def benchmark_train_step(batch_size=8, num_frames=8, crop_size=112,
                         video_depth=18, audio_frames=200, num_data=10000,
                         num_negatives=1024, jit_compile=False,
                         mixed_precision="none", strategy="default",
                         steps=10, warmup_steps=3, width_multiplier=1.0,
                         seed=0):
  """Times the AVID training step and returns the measurements.

  Args:
    batch_size: global clips per step.
    num_frames: frames per clip.
    crop_size: frame height and width.
    video_depth: R(2+1)D depth (10, 18 or 34).
    audio_frames: spectrogram frames (200 = 2 s); 257 frequency bins.
    num_data: memory-bank rows.
    num_negatives: K negatives per anchor.
    jit_compile: compile the train step with XLA.
    mixed_precision: "none", "mixed_float16" or "mixed_bfloat16".
    strategy: "default" (one device) or "mirrored" (all local GPUs, else
      the CPU; the global batch is split over the replicas).
    steps: timed steps (>= 1).
    warmup_steps: untimed steps first (>= 1: the first step traces).
    width_multiplier: encoder channel scale (< 1 for smoke tests).
    seed: seed of weights, banks and the synthetic batch.

  Returns:
    dict: clips_per_second, step_seconds_median, gflop_per_clip,
    achieved_gflops, step_seconds_min/max, warmup_seconds (first step
    included), loss (last step), replicas, gpus (names; [] on CPU), onednn,
    cores, load_average (1-minute load before and after), tensorflow
    version and the settings.

  Raises:
    ValueError: for an unknown policy or strategy, non-positive sizes, or
      jit_compile with a strategy of several replicas (fails in Keras).
  """
  if mixed_precision not in MIXED_PRECISION_POLICIES:
    raise ValueError(f"mixed_precision must be one of "
                     f"{MIXED_PRECISION_POLICIES}, got '{mixed_precision}'")
  if strategy not in STRATEGIES:
    raise ValueError(f"strategy must be one of {STRATEGIES}, got "
                     f"'{strategy}'")
  if min(batch_size, num_frames, crop_size, audio_frames, num_data, steps,
         warmup_steps) < 1:
    raise ValueError("batch_size, num_frames, crop_size, audio_frames, "
                     "num_data, steps and warmup_steps must be >= 1")
  if num_data < 2:
    raise ValueError(f"num_data must be >= 2 (negatives exclude the anchor),"
                     f" got {num_data}")

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
      raise ValueError(
          f"jit_compile=True with strategy={strategy!r} on "
          f"{distribution.num_replicas_in_sync} replicas: Keras XLA-compiles "
          "the whole strategy.run, which fails on several devices ('Trying "
          "to access resource ... located in device'); use strategy="
          "'default' (one device) for XLA figures")
    if batch_size % distribution.num_replicas_in_sync:
      raise ValueError(
          f"batch_size {batch_size} does not split over "
          f"{distribution.num_replicas_in_sync} replicas")
    with distribution.scope():
      model = build_benchmark_model(
          num_data, video_depth=video_depth,
          width_multiplier=width_multiplier, num_negatives=num_negatives,
          seed=seed)
      optimizer = keras.optimizers.Adam(2e-4)
      model.compile(optimizer=optimizer, jit_compile=jit_compile)
    batch = synthetic_batch(batch_size, num_frames, crop_size, audio_frames,
                            num_data, seed)
    with distribution.scope():
      # Variables must exist before the step is traced (under a strategy or
      # XLA the step cannot create them).
      model({key: value[:1] for key, value in batch.items()}, training=False)
      optimizer.build(model.trainable_variables)
    dataset = _synthetic_dataset(batch, num_data)
    if strategy != "default":
      dataset = distribution.experimental_distribute_dataset(dataset)
    iterator = iter(dataset)
    model.make_train_function()

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
        model.video_encoder, model.audio_encoder,
        (num_frames, crop_size, crop_size, 3), (audio_frames, AUDIO_BINS, 1))
    median = statistics.median(step_seconds)
    clips_per_second = batch_size / median
    return {
        "clips_per_second": round(clips_per_second, 3),
        "step_seconds_median": round(median, 4),
        "step_seconds_min": round(min(step_seconds), 4),
        "step_seconds_max": round(max(step_seconds), 4),
        "gflop_per_clip": round(gflop_per_clip, 3),
        "achieved_gflops": round(gflop_per_clip * clips_per_second, 2),
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
        "crop_size": crop_size, "video_depth": video_depth,
        "audio_frames": audio_frames, "num_data": num_data,
        "num_negatives": num_negatives, "jit_compile": bool(jit_compile),
        "mixed_precision": mixed_precision, "strategy": strategy,
        "steps": steps, "warmup_steps": warmup_steps,
        "width_multiplier": width_multiplier,
    }
  finally:
    keras.mixed_precision.set_global_policy(previous_policy)
