"""The GPU report: one JSON document that answers a GPU user's questions.

`gpu_report` runs six sections in turn and returns their results by name:

- devices: what TensorFlow sees and the CUDA/cuDNN versions of its build;
- train_step: clips/s of the AVID step (`train_step.benchmark_train_step`)
  for R(2+1)D-18 with 200x257 spectrograms, 1,024 negatives and Kinetics
  banks, at 8x112^2 (batch 64) and 8x224^2 (batch 32), in each precision
  policy with and without XLA, and the fraction of the GPU's peak dense
  throughput each achieves;
- gpu_vs_cpu: one step's loss and gradient norms on the GPU against the
  CPU from the same weights and batch, with TF32 on and off;
- mirrored: a few steps under MirroredStrategy over the GPUs present
  against the default strategy: losses and memory banks;
- cma_search: the CMA positive-set search (`cma_search.benchmark_cma_search`)
  at Kinetics' and AudioSet's N, with seconds and peak GPU memory;
- input_pipeline: clips/s of the training input pipeline
  (`input_pipeline.benchmark_input_pipeline`) with every core at 8x224^2
  from a 256-px store and 8x112^2 from 128 px, against the step's rate.

Each section has its own time limit. A section (or one measurement of a
section) that raises, or starts after its section's limit has passed,
reports {"status": "skipped", "reason": ...} and the report goes on: a
report with holes tells us more than a traceback. A measurement already
running is not interrupted, so a section may overrun its limit by one
measurement.

`TINY` runs every section on a CPU with tiny sizes (the report's test);
without a GPU it compares the CPU against itself in gpu_vs_cpu, which only
shows that the section runs.
"""

import dataclasses
import os
import platform
import tempfile
import time
import traceback

import keras
import numpy as np
import tensorflow as tf

from benchmarks import cma_search
from benchmarks import input_pipeline
from benchmarks import train_step

SKIPPED = "skipped"
OK = "ok"
_POLICY_NAMES = {"none": "float32", "mixed_float16": "mixed_float16",
                 "mixed_bfloat16": "mixed_bfloat16"}

# Peak dense (non-sparse) tensor throughput in TFLOP/s from the vendors'
# data sheets, by a substring of TensorFlow's device name (the first match
# wins, so specific names come first). float32 runs at the TF32 peak when
# TensorFlow's TF32 execution is on (its default) and the GPU has TF32.
_PEAK_TFLOPS = (
    ("H100 PCIe", {"float32": 51.0, "tf32": 378.0, "float16": 756.0,
                   "bfloat16": 756.0}),
    ("H100", {"float32": 67.0, "tf32": 494.5, "float16": 989.5,
              "bfloat16": 989.5}),
    ("A100", {"float32": 19.5, "tf32": 156.0, "float16": 312.0,
              "bfloat16": 312.0}),
    ("L40S", {"float32": 91.6, "tf32": 183.0, "float16": 362.0,
              "bfloat16": 362.0}),
    ("L4", {"float32": 30.3, "tf32": 60.0, "float16": 121.0,
            "bfloat16": 121.0}),
    ("A10", {"float32": 31.2, "tf32": 62.5, "float16": 125.0,
             "bfloat16": 125.0}),
    ("V100", {"float32": 15.7, "float16": 125.0}),
    ("T4", {"float32": 8.1, "float16": 65.0}),
)


@dataclasses.dataclass(frozen=True)
class Geometry:
  """One clip geometry of the report: frames, crop, batch, stored side."""
  num_frames: int
  crop_size: int
  batch_size: int
  short_side: int

  @property
  def name(self):
    return f"{self.num_frames}x{self.crop_size}x{self.crop_size}"


@dataclasses.dataclass(frozen=True)
class ReportSizes:
  """The sizes and time limits (seconds per section) of a report."""
  video_depth: int
  width_multiplier: float
  audio_seconds: float
  num_data: int
  num_negatives: int
  geometries: tuple
  precisions: tuple
  jit_compile: tuple
  steps: int
  warmup_steps: int
  comparison_batch_size: int
  cma_sizes: tuple
  num_videos: int
  video_seconds: float
  pipeline_batches: int
  time_limits: dict
  tiny: bool = False


FULL = ReportSizes(
    video_depth=18, width_multiplier=1.0, audio_seconds=2.0,
    num_data=232067, num_negatives=1024,
    geometries=(Geometry(8, 112, 64, 128), Geometry(8, 224, 32, 256)),
    precisions=("none", "mixed_bfloat16", "mixed_float16"),
    jit_compile=(False, True), steps=5, warmup_steps=2,
    comparison_batch_size=8, cma_sizes=(232067, 1784108), num_videos=64,
    video_seconds=4.0, pipeline_batches=10,
    # About 8 minutes in all; a measurement under way finishes past them.
    time_limits={"devices": 30, "train_step": 210, "gpu_vs_cpu": 60,
                 "mirrored": 60, "cma_search": 60, "input_pipeline": 60})

TINY = ReportSizes(
    video_depth=10, width_multiplier=0.125, audio_seconds=0.4,
    num_data=64, num_negatives=4,
    geometries=(Geometry(2, 32, 2, 40), Geometry(2, 48, 2, 56)),
    precisions=("none",), jit_compile=(False,), steps=1, warmup_steps=1,
    comparison_batch_size=2, cma_sizes=(500, 1500), num_videos=2,
    video_seconds=1.0, pipeline_batches=2,
    # Generous: the test asserts that every section ran, on a shared CPU.
    time_limits={"devices": 60, "train_step": 120, "gpu_vs_cpu": 120,
                 "mirrored": 120, "cma_search": 120, "input_pipeline": 120},
    tiny=True)


class Skipped(Exception):
  """A section or measurement that cannot run here; the message says why."""


class _Deadline:
  """The end of a section's time limit."""

  def __init__(self, seconds):
    self.seconds = seconds
    self._end = time.monotonic() + seconds

  def check(self):
    if time.monotonic() > self._end:
      raise Skipped(f"time limit of {self.seconds:g} s reached")


def _skipped(error):
  if isinstance(error, Skipped):
    return {"status": SKIPPED, "reason": str(error)}
  message = (str(error).strip().splitlines() or [""])[0][:300]
  return {"status": SKIPPED, "reason": f"{type(error).__name__}: {message}",
          "where": traceback.extract_tb(error.__traceback__)[-1].name}


def _measure(deadline, function, *args, **kwargs):
  """`function(*args, **kwargs)` with a status, or why it was skipped."""
  try:
    deadline.check()
    return {"status": OK, **function(*args, **kwargs)}
  except Exception as error:  # pylint: disable=broad-except
    return _skipped(error)


def _gpu_names():
  return [tf.config.experimental.get_device_details(gpu).get(
      "device_name", gpu.name)
          for gpu in tf.config.list_physical_devices("GPU")]


def _model_sizes(sizes):
  return {"video_depth": sizes.video_depth,
          "width_multiplier": sizes.width_multiplier,
          "num_negatives": sizes.num_negatives}


def devices_section(sizes, deadline, results):
  """The devices TensorFlow sees and its build's CUDA/cuDNN versions."""
  del sizes, deadline, results
  build = tf.sysconfig.get_build_info()
  gpus = []
  for gpu in tf.config.list_physical_devices("GPU"):
    details = tf.config.experimental.get_device_details(gpu)
    gpus.append({"name": gpu.name,
                 "device_name": details.get("device_name"),
                 "compute_capability": details.get("compute_capability")})
  return {
      "tensorflow": tf.__version__, "keras": keras.__version__,
      "numpy": np.__version__, "python": platform.python_version(),
      "cuda_build": bool(build.get("is_cuda_build", False)),
      "cuda_version": build.get("cuda_version"),
      "cudnn_version": build.get("cudnn_version"),
      "gpus": gpus,
      "devices": [d.name for d in tf.config.list_physical_devices()],
      "tensor_float_32": (
          tf.config.experimental.tensor_float_32_execution_enabled()),
      "onednn": train_step.onednn_enabled(),
      "cpu_cores": os.cpu_count(),
      "load_average": [round(x, 2) for x in os.getloadavg()],
  }


def peak_tflops(device_name, precision):
  """The GPU's peak dense TFLOP/s for a policy, or None when unknown."""
  for key, peaks in _PEAK_TFLOPS:
    if key in (device_name or ""):
      if precision == "none":
        tf32 = tf.config.experimental.tensor_float_32_execution_enabled()
        return peaks.get("tf32") if tf32 and "tf32" in peaks else peaks[
            "float32"]
      return peaks.get(precision.replace("mixed_", ""))
  return None


def _one_train_step_benchmark(sizes, geometry, precision, jit_compile):
  result = train_step.benchmark_train_step(
      batch_size=geometry.batch_size, num_frames=geometry.num_frames,
      crop_size=geometry.crop_size, audio_seconds=sizes.audio_seconds,
      num_data=sizes.num_data, jit_compile=jit_compile,
      mixed_precision=precision, steps=sizes.steps,
      warmup_steps=sizes.warmup_steps, **_model_sizes(sizes))
  gpus = _gpu_names()
  peak = peak_tflops(gpus[0], precision) if gpus else None
  keep = ("clips_per_second", "step_seconds_median", "gflop_per_clip",
          "achieved_gflops", "warmup_seconds", "loss", "audio_frames")
  return {**{key: result[key] for key in keep},
          "peak_tflops": peak,
          "fraction_of_peak": (None if peak is None else round(
              result["achieved_gflops"] / (peak * 1e3), 4))}


def train_step_section(sizes, deadline, results):
  """Train-step clips/s per geometry, precision policy and XLA setting."""
  del results
  runs = []
  for geometry in sizes.geometries:
    for precision in sizes.precisions:
      for jit_compile in sizes.jit_compile:
        runs.append({
            "geometry": geometry.name, "batch_size": geometry.batch_size,
            "precision": _POLICY_NAMES[precision],
            "jit_compile": jit_compile,
            **_measure(deadline, _one_train_step_benchmark, sizes, geometry,
                       precision, jit_compile)})
  return {"runs": runs, "video_depth": sizes.video_depth,
          "num_data": sizes.num_data, "num_negatives": sizes.num_negatives,
          "loss_scaling": "mixed_float16 runs scale the loss (Keras "
                          "LossScaleOptimizer)"}


def _loss_and_gradient_norms(model, batch, device):
  """One step's loss and per-variable gradient norms, without an update.

  The forward pass and objective are called as `AVModel.train_step` calls
  them at step 0 (the negatives are drawn from the step's stateless seed).
  """
  with tf.device(device):
    inputs = {key: tf.constant(value) for key, value in batch.items()}
    with tf.GradientTape() as tape:
      embeddings = model(inputs, training=True)
      loss, _ = model.objective(embeddings, model.banks, inputs["index"],
                                tf.constant(0, tf.int64), training=True)
    gradients = tape.gradient(loss, model.trainable_variables)
  return float(loss), np.array([0.0 if g is None else float(tf.norm(g))
                                for g in gradients])


def _compare_devices(models, batch, devices):
  (loss, norms), (reference_loss, reference_norms) = (
      _loss_and_gradient_norms(model, batch, device)
      for model, device in zip(models, devices))
  relative = np.abs(norms - reference_norms) / np.maximum(
      reference_norms, 1e-30)
  return {
      "loss": loss, "loss_cpu": reference_loss,
      "loss_relative_difference": abs(loss - reference_loss) / max(
          abs(reference_loss), 1e-30),
      "gradient_global_norm": float(np.linalg.norm(norms)),
      "gradient_global_norm_cpu": float(np.linalg.norm(reference_norms)),
      "gradient_norm_max_relative_difference": float(relative.max()),
      "gradient_norm_median_relative_difference": float(np.median(relative)),
  }


def gpu_vs_cpu_section(sizes, deadline, results, devices=None):
  """One step on the GPU against the CPU, with TF32 on and off.

  Args:
    sizes: the `ReportSizes`.
    deadline: the section's `_Deadline`.
    results: the sections so far (unused).
    devices: (device under test, reference device); None takes the first
      GPU against the first CPU (in a tiny report without a GPU, the CPU
      against itself).

  Returns:
    dict of the devices and, for "tf32_on" and "tf32_off", the losses,
    gradient global norms and the relative differences of the per-variable
    gradient norms.
  """
  del results
  cpu = tf.config.list_logical_devices("CPU")[0].name
  if devices is None:
    gpus = tf.config.list_logical_devices("GPU")
    if not gpus and not sizes.tiny:
      raise Skipped("no GPU visible to TensorFlow")
    devices = (gpus[0].name if gpus else cpu, cpu)
  geometry = sizes.geometries[0]
  preprocessing = train_step.clip_geometry(
      geometry.num_frames, geometry.crop_size, sizes.audio_seconds)
  batch = train_step.synthetic_batch(
      preprocessing, sizes.comparison_batch_size, sizes.num_data)
  models = []
  for device in devices:
    with tf.device(device):
      model = train_step.build_benchmark_model(sizes.num_data,
                                               **_model_sizes(sizes))
      model(preprocessing.dummy_batch(), training=False)
    if models:
      model.set_weights(models[0].get_weights())
    models.append(model)
  tf32_before = tf.config.experimental.tensor_float_32_execution_enabled()
  report = {"device": devices[0], "reference_device": devices[1],
            "batch_size": sizes.comparison_batch_size,
            "geometry": geometry.name}
  try:
    for tf32 in (True, False):
      tf.config.experimental.enable_tensor_float_32_execution(tf32)
      report["tf32_on" if tf32 else "tf32_off"] = _measure(
          deadline, _compare_devices, models, batch, devices)
  finally:
    tf.config.experimental.enable_tensor_float_32_execution(tf32_before)
  return report


def _train_and_read_banks(distribution, sizes, preprocessing, batch_size,
                          steps, initial_weights=None):
  """Losses and banks of `steps` steps, and the weights they started from."""
  keras.utils.set_random_seed(0)
  # Per-replica batch statistics would differ from the global batch's.
  model, iterator = train_step.compiled_model_and_batches(
      distribution, preprocessing, batch_size, sizes.num_data,
      gin_bindings=["build_encoders.synchronized_bn = True"],
      **_model_sizes(sizes))
  if initial_weights is not None:
    model.set_weights(initial_weights)
  initial_weights = model.get_weights()
  losses = [float(model.train_function(iterator)["loss"])
            for _ in range(steps)]
  banks = {name: bank.bank.numpy() for name, bank in model.banks.items()}
  return losses, banks, initial_weights


def mirrored_section(sizes, deadline, results):
  """MirroredStrategy over the local GPUs against the default strategy."""
  del results
  gpus = tf.config.list_logical_devices("GPU")
  if not gpus and not sizes.tiny:
    raise Skipped("no GPU visible to TensorFlow")
  mirrored = tf.distribute.MirroredStrategy(
      [gpu.name for gpu in gpus] or None)
  replicas = mirrored.num_replicas_in_sync
  batch_size = sizes.comparison_batch_size * replicas
  geometry = sizes.geometries[0]
  preprocessing = train_step.clip_geometry(
      geometry.num_frames, geometry.crop_size, sizes.audio_seconds)
  steps = 2
  default_losses, default_banks, initial_weights = _train_and_read_banks(
      tf.distribute.get_strategy(), sizes, preprocessing, batch_size, steps)
  deadline.check()
  mirrored_losses, mirrored_banks, _ = _train_and_read_banks(
      mirrored, sizes, preprocessing, batch_size, steps, initial_weights)
  return {
      "replicas": replicas, "global_batch_size": batch_size,
      "geometry": geometry.name, "steps": steps, "synchronized_bn": True,
      "losses_default": default_losses, "losses_mirrored": mirrored_losses,
      # The first step starts from the same weights; later steps also
      # show how far the all-reduced updates drift apart.
      "loss_abs_differences": np.abs(np.subtract(
          default_losses, mirrored_losses)).tolist(),
      "bank_max_abs_difference": {
          name: float(np.max(np.abs(default_banks[name]
                                    - mirrored_banks[name])))
          for name in default_banks},
  }


def _one_cma_search(num_data):
  result = cma_search.benchmark_cma_search(num_data=num_data)
  keep = ("seconds", "warmup_seconds", "peak_memory_bytes",
          "memory_measure", "tile", "device", "achieved_gflops")
  return {key: result[key] for key in keep}


def cma_search_section(sizes, deadline, results):
  """The CMA positive-set search at each N: seconds and peak memory."""
  del results
  return {"runs": [{"num_data": num_data,
                    **_measure(deadline, _one_cma_search, num_data)}
                   for num_data in sizes.cma_sizes]}


def _fastest_step_rate(results, geometry):
  runs = results.get("train_step", {}).get("runs", [])
  rates = [run["clips_per_second"] for run in runs
           if run["geometry"] == geometry.name and run["status"] == OK]
  return max(rates) if rates else None


def _one_pipeline(sizes, geometry, results, work_dir):
  dataset_dir, _ = input_pipeline.make_synthetic_dataset(
      os.path.join(work_dir, geometry.name), sizes.num_videos,
      size=geometry.short_side, duration=sizes.video_seconds)
  result = input_pipeline.benchmark_input_pipeline(
      dataset_dir=dataset_dir, batch_size=geometry.batch_size,
      num_frames=geometry.num_frames, crop_size=geometry.crop_size,
      audio_seconds=sizes.audio_seconds,
      num_batches=sizes.pipeline_batches, warmup_batches=1,
      baseline_batches=0)
  step_rate = _fastest_step_rate(results, geometry)
  rate = result["clips_per_second"]
  return {
      "clips_per_second": rate, "cores": result["cores"],
      "clips_per_cpu_second": result["clips_per_cpu_second"],
      "short_side": geometry.short_side,
      "fastest_step_clips_per_second": step_rate,
      "pipeline_over_step": (None if step_rate is None
                             else round(rate / step_rate, 3)),
      "host_keeps_up": None if step_rate is None else rate >= step_rate,
  }


def input_pipeline_section(sizes, deadline, results):
  """Input-pipeline clips/s per geometry against the fastest step's rate."""
  with tempfile.TemporaryDirectory() as work_dir:
    return {"runs": [{"geometry": geometry.name,
                      "batch_size": geometry.batch_size,
                      **_measure(deadline, _one_pipeline, sizes, geometry,
                                 results, work_dir)}
                     for geometry in sizes.geometries]}


SECTIONS = {
    "devices": devices_section,
    "train_step": train_step_section,
    "gpu_vs_cpu": gpu_vs_cpu_section,
    "mirrored": mirrored_section,
    "cma_search": cma_search_section,
    "input_pipeline": input_pipeline_section,
}


def gpu_report(sizes=FULL, sections=None):
  """Runs the report's sections in order.

  Args:
    sizes: `FULL` (the report for a GPU) or `TINY` (a CPU smoke run).
    sections: names of the sections to run; None runs all of `SECTIONS`.

  Returns:
    dict: "tiny", "seconds" (the whole report) and one entry per section,
    each with "status" ("ok" or "skipped", with a "reason"), "seconds"
    and "time_limit_seconds".
  """
  start = time.perf_counter()
  report = {"tiny": sizes.tiny}
  for name in sections or SECTIONS:
    limit = sizes.time_limits[name]
    section_start = time.perf_counter()
    deadline = _Deadline(limit)
    report[name] = {
        **_measure(deadline, SECTIONS[name], sizes, deadline, report),
        "seconds": round(time.perf_counter() - section_start, 2),
        "time_limit_seconds": limit}
  report["seconds"] = round(time.perf_counter() - start, 2)
  return report
