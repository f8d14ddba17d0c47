"""Benchmarks a part of avid_tf and prints one JSON line of measurements.

Example:
  python scripts/benchmark.py --what=input_pipeline
  python scripts/benchmark.py --what=input_pipeline \
    --dataset_dir=/data/kinetics/1.0.0 --video_dir=/data/kinetics/videos
  python scripts/benchmark.py --what=train_step --batch_size=8 --steps=10
"""

import json
import os

# Before TensorFlow loads: TF turns its oneDNN CPU kernels on by default only
# on AVX-512/AMX CPUs; without them a 2-core AVX2 CPU trains ~1.35x slower,
# and enabling them after the import recovers little of that.
# TF_ENABLE_ONEDNN_OPTS=0 in the environment still turns them off.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from avid_tf.data import benchmark_input  # pylint: disable=g-import-not-at-top,wrong-import-position

_WHAT = flags.DEFINE_enum(
    "what", "input_pipeline", ["input_pipeline", "train_step"],
    "What to measure. input_pipeline: training clips/s of the tf.data "
    "pipeline (and of decoding the .mp4 files with PyAV inside tf.data). "
    "train_step: clips/s, median step time and GFLOP/s of the AVID training "
    "step on random in-memory batches (no input pipeline).")
_DATASET_DIR = flags.DEFINE_string(
    "dataset_dir", None,
    "avid_tf dataset folder (<output_dir>/<name>/1.0.0) to read; unset "
    "writes a small synthetic dataset in a temporary folder.")
_VIDEO_DIR = flags.DEFINE_string(
    "video_dir", None,
    "Folder of the source videos of --dataset_dir, for the direct-decode "
    "baseline; unset with --dataset_dir skips the baseline.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Clips per batch.")
_FRAMES = flags.DEFINE_integer("frames", 8, "Frames per clip.")
_CROP = flags.DEFINE_integer("crop", 112, "Frame height/width in pixels.")
_AUDIO_SECONDS = flags.DEFINE_float("audio_seconds", 2.0,
                                    "Audio clip length in seconds.")
_NUM_BATCHES = flags.DEFINE_integer(
    "num_batches", 20, "Timed batches of the input pipeline.")
_WARMUP_BATCHES = flags.DEFINE_integer(
    "warmup_batches", 5, "Untimed batches before timing (tracing, autotune).")
_BASELINE_BATCHES = flags.DEFINE_integer(
    "baseline_batches", 5,
    "Timed batches of the direct-decode baseline; 0 skips it.")
_NUM_VIDEOS = flags.DEFINE_integer(
    "num_videos", 32, "Videos in the synthetic dataset (without "
    "--dataset_dir).")


def _input_pipeline():
  return benchmark_input.benchmark_input_pipeline(
      dataset_dir=_DATASET_DIR.value, video_dir=_VIDEO_DIR.value,
      batch_size=_BATCH_SIZE.value, num_frames=_FRAMES.value,
      crop_size=_CROP.value, audio_seconds=_AUDIO_SECONDS.value,
      num_batches=_NUM_BATCHES.value, warmup_batches=_WARMUP_BATCHES.value,
      baseline_batches=_BASELINE_BATCHES.value, num_videos=_NUM_VIDEOS.value)


# --what=train_step (avid_tf.training.benchmark_train); --batch_size,
# --frames and --crop are shared.
_VIDEO_DEPTH = flags.DEFINE_enum(
    "video_depth", "18", ["10", "18", "34"], "train_step: R(2+1)D depth.")
_NUM_DATA = flags.DEFINE_integer(
    "num_data", 10000, "train_step: memory-bank rows (training videos).")
_NUM_NEGATIVES = flags.DEFINE_integer(
    "num_negatives", 1024, "train_step: negatives per anchor.")
_JIT_COMPILE = flags.DEFINE_boolean(
    "jit_compile", False, "train_step: compile the step with XLA (one "
    "replica only: Keras fails with XLA on several mirrored devices).")
_MIXED_PRECISION = flags.DEFINE_enum(
    "mixed_precision", "none", ["none", "mixed_float16", "mixed_bfloat16"],
    "train_step: Keras mixed-precision policy.")
_STRATEGY = flags.DEFINE_enum(
    "strategy", "default", ["default", "mirrored"],
    "train_step: default (one device) or mirrored (all local GPUs; the "
    "global --batch_size is split over them).")
_STEPS = flags.DEFINE_integer(
    "steps", 10, "train_step: timed steps (median reported), after 3 "
    "untimed warm-up steps.")


def _train_step():
  from avid_tf.training import benchmark_train  # pylint: disable=g-import-not-at-top
  return benchmark_train.benchmark_train_step(
      batch_size=_BATCH_SIZE.value, num_frames=_FRAMES.value,
      crop_size=_CROP.value, video_depth=int(_VIDEO_DEPTH.value),
      num_data=_NUM_DATA.value, num_negatives=_NUM_NEGATIVES.value,
      jit_compile=_JIT_COMPILE.value,
      mixed_precision=_MIXED_PRECISION.value, strategy=_STRATEGY.value,
      steps=_STEPS.value)


_BENCHMARKS = {"input_pipeline": _input_pipeline, "train_step": _train_step}


def main(argv):
  del argv
  print(json.dumps(_BENCHMARKS[_WHAT.value](), sort_keys=True))


if __name__ == "__main__":
  app.run(main)
