r"""Benchmarks a part of avid_tf and prints one JSON line of measurements.

Example:
  python scripts/benchmark.py --what=input_pipeline
  python scripts/benchmark.py --what=input_pipeline \
    --dataset_dir=/data/kinetics/1.0.0 --video_dir=/data/kinetics/videos
  python scripts/benchmark.py --what=input_pipeline --geometries=128:112,256:224
  python scripts/benchmark.py --what=train_step --batch_size=8 --steps=10
  python scripts/benchmark.py --what=train_step \
    --gin_file=gin/avid/kinetics_self.gin --batch_size=8
  python scripts/benchmark.py --what=cma_search --num_data=100000
  python scripts/benchmark.py --what=memory_bank
  python scripts/benchmark.py --what=pytorch_pairs \
    --pytorch_python=/path/to/venv_with_torch/bin/python --pairs=3
  python scripts/benchmark.py --what=gpu_report > gpu_report.json
"""

# studies/ and benchmarks/ live beside the installed package, in the clone:
# put the clone's root first on the path so this script finds them.
import pathlib, sys  # pylint: disable=g-multiple-import
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import json  # pylint: disable=g-import-not-at-top,wrong-import-position
import os  # pylint: disable=g-import-not-at-top,wrong-import-position

# Before TensorFlow loads: TF turns its oneDNN CPU kernels on by default only
# on AVX-512/AMX CPUs; without them a 2-core AVX2 CPU trains ~1.35x slower,
# and enabling them after the import recovers little of that.
# TF_ENABLE_ONEDNN_OPTS=0 in the environment still turns them off.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from avid_tf import cli  # pylint: disable=g-import-not-at-top,wrong-import-position

_WHAT = flags.DEFINE_enum(
    "what", "input_pipeline",
    ["input_pipeline", "train_step", "cma_search", "memory_bank",
     "pytorch_pairs", "gpu_report"],
    "What to measure. input_pipeline: training clips/s of the tf.data "
    "pipeline (and of decoding the .mp4 files with PyAV inside tf.data). "
    "train_step: clips/s, median step time and GFLOP/s of the AVID training "
    "step on random in-memory batches (no input pipeline). cma_search: the "
    "cross-modal agreement (CMA) positive-set search over memory banks. "
    "memory_bank: bytes of the banks and gathered negatives and seconds of "
    "each bank operation of a Cross-AVID step (Kinetics sizes by default). "
    "pytorch_pairs: train_step and benchmarks/pytorch_reference_step.py "
    "alternated in fresh processes, with the medians and their ratio. "
    "gpu_report: the report to send us from a GPU machine (devices, step "
    "throughput per precision and XLA, GPU against CPU, MirroredStrategy, "
    "CMA search, input pipeline; docs/training.md, \"The GPU report\"); "
    "its sizes are fixed, and the other flags do not apply.")

# --what=input_pipeline (benchmarks.input_pipeline).
_DATASET_DIR = flags.DEFINE_string(
    "dataset_dir", None,
    "input_pipeline: avid_tf dataset folder (<output_dir>/<name>/1.0.0) to "
    "read; unset generates and ingests a small synthetic dataset in a "
    "temporary folder.")
_VIDEO_DIR = flags.DEFINE_string(
    "video_dir", None,
    "input_pipeline: folder of the source videos of --dataset_dir, for the "
    "direct-decode baseline; unset with --dataset_dir skips the baseline.")
_NUM_BATCHES = flags.DEFINE_integer(
    "num_batches", 20, "input_pipeline: timed batches of the pipeline.")
_WARMUP_BATCHES = flags.DEFINE_integer(
    "warmup_batches", 5,
    "input_pipeline: untimed batches before timing (tracing, autotune).")
_BASELINE_BATCHES = flags.DEFINE_integer(
    "baseline_batches", 5,
    "input_pipeline: timed batches of the direct-decode baseline; 0 skips "
    "it.")
_VIDEO_DTYPE = flags.DEFINE_enum(
    "video_dtype", "uint8", ["uint8", "float32"],
    "input_pipeline: video batches as training reads them (uint8: colour "
    "jitter and normalisation left to the model's step on the accelerator) "
    "or float32 (every phase on the host).")
_GEOMETRIES = flags.DEFINE_list(
    "geometries", None,
    "input_pipeline: stored_side:crop pairs, e.g. 128:112,256:224, measured "
    "in one run on synthetic sets ingested at each side (both video dtypes, "
    "ratios to the first pair); --frames, --audio_seconds, --batch_size, "
    "--num_batches, --warmup_batches and --num_videos apply.")
_NUM_VIDEOS = flags.DEFINE_integer(
    "num_videos", 32,
    "input_pipeline: videos in the synthetic dataset (without "
    "--dataset_dir), rounded up to even.")

# Shared by several benchmarks.
_BATCH_SIZE = flags.DEFINE_integer(
    "batch_size", 32,
    "Clips per batch. Unset: 32 for input_pipeline and train_step, 8 for "
    "pytorch_pairs, and the global batch 1024 for memory_bank.")
_FRAMES = flags.DEFINE_integer("frames", 8, "Frames per clip.")
_CROP = flags.DEFINE_integer("crop", 112, "Frame height/width in pixels.")
_AUDIO_SECONDS = flags.DEFINE_float(
    "audio_seconds", 2.0,
    "Audio clip length in seconds (the spectrogram has 100 frames per "
    "second).")

# --what=train_step (benchmarks.train_step).
_GIN_FILE = flags.DEFINE_multi_string(
    "gin_file", [],
    "train_step: experiment file(s) applied after gin/base.gin, in order, "
    "e.g. gin/avid/kinetics_self.gin.")
_GIN_BINDINGS = flags.DEFINE_multi_string(
    "gin_bindings", [],
    "train_step: gin bindings applied last, e.g. "
    "\"build_encoders.width_multiplier = 0.5\".")
_VIDEO_DEPTH = flags.DEFINE_enum(
    "video_depth", None, ["10", "18", "34"],
    "train_step: R(2+1)D depth; unset keeps the gin configuration's (18 in "
    "gin/base.gin).")
_NUM_NEGATIVES = flags.DEFINE_integer(
    "num_negatives", None,
    "train_step: negatives per anchor; unset keeps the gin configuration's "
    "(1024 in gin/base.gin). memory_bank: K, 1024 unless set.")
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
    "steps", 10, "train_step, pytorch_pairs: timed steps (median "
    "reported), after 3 untimed warm-up steps. memory_bank: timed runs of "
    "each operation, after one untimed run.")

# Shared by train_step and cma_search.
_NUM_DATA = flags.DEFINE_integer(
    "num_data", 10000, "train_step, cma_search, memory_bank: memory-bank "
    "rows (training videos); memory_bank uses Kinetics-400's 232067 unless "
    "set.")
_SEED = flags.DEFINE_integer(
    "seed", 0, "train_step, cma_search, memory_bank: seed of weights, banks "
    "and draws.")

# --what=cma_search (benchmarks.cma_search).
_DIM = flags.DEFINE_integer(
    "dim", 128, "cma_search, memory_bank: embedding width of the banks.")
_NUM_POSITIVES = flags.DEFINE_integer(
    "num_positives", 32, "cma_search: positives kept per instance (k).")
_AGREEMENT = flags.DEFINE_string(
    "agreement", "consensus",
    "cma_search: how the positive sets are ranked: consensus, union, video "
    "or audio.")
_BLOCK_SIZE = flags.DEFINE_integer(
    "block_size", None,
    "cma_search: bank rows ranked per block (bounds memory); unset keeps "
    "the module's default.")

# --what=memory_bank (benchmarks.memory_bank).
_REPLICAS = flags.DEFINE_integer(
    "replicas", 8,
    "memory_bank: replicas the global batch would be split over, for the "
    "per-replica bytes (everything runs on this one device).")

# --what=pytorch_pairs (benchmarks.pytorch_pairs).
_PAIRS = flags.DEFINE_integer(
    "pairs", 3, "pytorch_pairs: avid_tf-then-PyTorch pairs of runs.")
_PYTORCH_PYTHON = flags.DEFINE_string(
    "pytorch_python", sys.executable,
    "pytorch_pairs: Python interpreter that has torch, to run "
    "benchmarks/pytorch_reference_step.py; the avid_tf side always runs "
    "with the interpreter running this script (the default).")

# --what=gpu_report (benchmarks.gpu_report).
_TINY = flags.DEFINE_boolean(
    "tiny", False,
    "gpu_report: tiny sizes that run on a CPU in under 2 minutes (a smoke "
    "test of the report, not a measurement).")

_DEFAULT_MEMORY_BANK_SIZES = {"num_data": 232067, "batch_size": 1024,
                              "num_negatives": 1024}
# The reference step's shapes are fixed (benchmarks.pytorch_pairs).
_PYTORCH_PAIRS_FIXED_FLAGS = ("frames", "crop", "audio_seconds",
                              "video_depth", "num_data", "num_negatives",
                              "gin_file", "gin_bindings", "strategy")


def _value_or_default(flag, default):
  return flag.value if flags.FLAGS[flag.name].present else default


def _input_pipeline():
  from benchmarks import input_pipeline  # pylint: disable=g-import-not-at-top
  if _GEOMETRIES.value:
    return input_pipeline.benchmark_geometries(
        [tuple(int(size) for size in pair.split(":"))
         for pair in _GEOMETRIES.value], num_videos=_NUM_VIDEOS.value,
        batch_size=_BATCH_SIZE.value, num_frames=_FRAMES.value,
        audio_seconds=_AUDIO_SECONDS.value, num_batches=_NUM_BATCHES.value,
        warmup_batches=_WARMUP_BATCHES.value)
  return input_pipeline.benchmark_input_pipeline(
      dataset_dir=_DATASET_DIR.value, video_dir=_VIDEO_DIR.value,
      batch_size=_BATCH_SIZE.value, num_frames=_FRAMES.value,
      crop_size=_CROP.value, audio_seconds=_AUDIO_SECONDS.value,
      num_batches=_NUM_BATCHES.value, warmup_batches=_WARMUP_BATCHES.value,
      baseline_batches=_BASELINE_BATCHES.value, num_videos=_NUM_VIDEOS.value,
      video_dtype=_VIDEO_DTYPE.value)


def _train_step():
  from benchmarks import train_step  # pylint: disable=g-import-not-at-top
  return train_step.benchmark_train_step(
      batch_size=_BATCH_SIZE.value, num_frames=_FRAMES.value,
      crop_size=_CROP.value, audio_seconds=_AUDIO_SECONDS.value,
      video_depth=(None if _VIDEO_DEPTH.value is None
                   else int(_VIDEO_DEPTH.value)),
      num_data=_NUM_DATA.value, num_negatives=_NUM_NEGATIVES.value,
      jit_compile=_JIT_COMPILE.value,
      mixed_precision=_MIXED_PRECISION.value, strategy=_STRATEGY.value,
      steps=_STEPS.value, gin_files=_GIN_FILE.value,
      gin_bindings=_GIN_BINDINGS.value, seed=_SEED.value)


def _cma_search():
  from benchmarks import cma_search  # pylint: disable=g-import-not-at-top
  block_size = {} if _BLOCK_SIZE.value is None else {
      "block_size": _BLOCK_SIZE.value}
  return cma_search.benchmark_cma_search(
      num_data=_NUM_DATA.value, dim=_DIM.value, k=_NUM_POSITIVES.value,
      agreement=_AGREEMENT.value, seed=_SEED.value, **block_size)


def _memory_bank():
  from benchmarks import memory_bank  # pylint: disable=g-import-not-at-top
  defaults = _DEFAULT_MEMORY_BANK_SIZES
  return memory_bank.benchmark_memory_bank(
      num_data=_value_or_default(_NUM_DATA, defaults["num_data"]),
      dim=_DIM.value,
      num_negatives=_value_or_default(_NUM_NEGATIVES,
                                      defaults["num_negatives"]),
      batch_size=_value_or_default(_BATCH_SIZE, defaults["batch_size"]),
      replicas=_REPLICAS.value, steps=_STEPS.value, seed=_SEED.value)


def _pytorch_pairs():
  from avid_tf import errors  # pylint: disable=g-import-not-at-top
  from benchmarks import pytorch_pairs  # pylint: disable=g-import-not-at-top
  fixed = [name for name in _PYTORCH_PAIRS_FIXED_FLAGS
           if flags.FLAGS[name].present]
  if fixed:
    raise errors.UserError(
        f"--what=pytorch_pairs runs at the PyTorch reference's fixed shapes;"
        f" drop {', '.join('--' + name for name in fixed)}")
  if _PAIRS.value < 1:
    raise errors.UserError(f"--pairs must be >= 1, got {_PAIRS.value}")
  pytorch_pairs.check_importable(_PYTORCH_PYTHON.value, "torch")
  tensorflow_command, tensorflow_env, pytorch_command, pytorch_env = (
      pytorch_pairs.reference_commands(
          os.path.abspath(__file__), _PYTORCH_PYTHON.value,
          batch_size=_value_or_default(_BATCH_SIZE, 8), steps=_STEPS.value,
          mixed_precision=_MIXED_PRECISION.value,
          jit_compile=_JIT_COMPILE.value))
  return pytorch_pairs.alternate_pairs(
      tensorflow_command, pytorch_command, pairs=_PAIRS.value,
      tensorflow_env=tensorflow_env, pytorch_env=pytorch_env)


def _gpu_report():
  from benchmarks import gpu_report  # pylint: disable=g-import-not-at-top
  return gpu_report.gpu_report(gpu_report.TINY if _TINY.value
                               else gpu_report.FULL)


_BENCHMARKS = {"input_pipeline": _input_pipeline, "train_step": _train_step,
               "cma_search": _cma_search, "memory_bank": _memory_bank,
               "pytorch_pairs": _pytorch_pairs, "gpu_report": _gpu_report}


def main(argv):
  del argv
  print(json.dumps(_BENCHMARKS[_WHAT.value](), sort_keys=True))


if __name__ == "__main__":
  cli.run(main)
