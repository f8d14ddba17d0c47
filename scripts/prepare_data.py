r"""Ingests a folder of videos into an avid_tf dataset (TFDS on disk).

Decodes every video with PyAV (frames at --fps, short side --short_side,
JPEG; audio mono int16 at --sample_rate), writes the dataset to
<output_dir>/<name>/1.0.0 with the log-spectrogram statistics of the train
split, and ingest_report.json listing every input file with its status.
Bad files are skipped and reported; an interrupted run resumes when rerun
with the same flags, and a rerun with other settings refuses unless
--overwrite. Exits non-zero only when no video could be ingested.

Examples:
  python scripts/prepare_data.py --video_dir=/data/kinetics/videos \
    --labels_csv=/data/kinetics/labels.csv --output_dir=/data/avid \
    --name=kinetics

  # A folder of class/video.mp4 without a CSV, a fifth of it held out:
  python scripts/prepare_data.py --video_dir=/data/mine \
    --output_dir=/data/avid --name=mine --val_fraction=0.2
"""

import time

from absl import flags

from avid_tf import cli
from avid_tf.data import ingest

_VIDEO_DIR = flags.DEFINE_string(
    "video_dir", None, "Folder of the video files (searched recursively "
    "when no --labels_csv is given).")
_LABELS_CSV = flags.DEFINE_string(
    "labels_csv", None,
    "Optional CSV with columns path,label[,split][,faulty]: path relative "
    "to --video_dir or, for a file not found there, to the CSV's own folder "
    "(so make_synthetic.py's labels.csv works with --video_dir set to its "
    "--output_dir or to the videos/ folder inside), label a class name (ids "
    "follow the sorted names), split e.g. train/val (train when absent). "
    "Other columns are ignored. Without it every file under --video_dir "
    "goes to the train split, labelled by the name of its folder "
    "(class/video.mp4, Kinetics' layout; -1 for a file at the top).")
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None,
    "The dataset is written to <output_dir>/<name>/1.0.0 (the folder that "
    "training takes as dataset_dir).")
_NAME = flags.DEFINE_string("name", "videos", "Dataset name.")
_FPS = flags.DEFINE_integer(
    "fps", 16, "Frame rate of the stored frames (each output frame is the "
    "decoded frame nearest before its time).")
_SHORT_SIDE = flags.DEFINE_integer(
    "short_side", 128, "Shorter side of the stored frames in pixels "
    "(aspect ratio kept). At least the training crop / 0.875 (256 for the "
    "released 224 crops, 128 for 112), or every crop is upsampled.")
_SAMPLE_RATE = flags.DEFINE_integer(
    "sample_rate", 24000, "Sample rate in Hz of the stored mono int16 audio.")
_JPEG_QUALITY = flags.DEFINE_integer(
    "jpeg_quality", 90, "JPEG quality (1..100) of the stored frames.")
_NUM_WORKERS = flags.DEFINE_integer(
    "num_workers", None, "Decoding processes (default: the number of CPUs; "
    "1 decodes in this process).")
_MISSING_AUDIO = flags.DEFINE_enum(
    "missing_audio", "skip", list(ingest.MISSING_AUDIO_POLICIES),
    "Videos without an audio stream: 'skip' leaves them out (the reference "
    "cannot load them either), 'silence' ingests them with empty audio "
    "(zeros at training time: every such clip has the same spectrogram). "
    "Either way they are counted in the report.")
_MIN_DURATION = flags.DEFINE_float(
    "min_duration", 0.5, "Videos shorter than this many seconds (one clip "
    "is 8 frames at 16 fps = 0.5 s) are skipped.")
_SHUFFLE_SEED = flags.DEFINE_integer(
    "shuffle_seed", 0,
    "Seed of each split's random record order across the shards; a video's "
    "memory index is its position in that order. Any contiguous run of "
    "records is then a uniform sample of the split even when the folder is "
    "sorted by class. A negative value keeps the sorted path order.")
_VAL_FRACTION = flags.DEFINE_float(
    "val_fraction", 0.0,
    "Moves this fraction of each class's train videos to a 'val' split "
    "(seeded by --shuffle_seed), e.g. 0.2 for a folder without a CSV; the "
    "probes and the quickstart's evaluation need one. 0 keeps the splits "
    "as listed.")
_OVERWRITE = flags.DEFINE_bool(
    "overwrite", False,
    "Rebuild a dataset already in place although it was ingested with other "
    "settings (without it such a rerun refuses, naming them: runs may have "
    "trained on it). A rerun with the same settings always resumes.")
_PROGRESS = flags.DEFINE_bool(
    "progress", True, "Show a progress bar (--noprogress hides it).")
flags.mark_flags_as_required(["video_dir", "output_dir"])


def main(argv):
  del argv
  start = time.time()
  report = ingest.ingest(
      _VIDEO_DIR.value, _OUTPUT_DIR.value, _NAME.value,
      labels_csv=_LABELS_CSV.value, fps=_FPS.value,
      short_side=_SHORT_SIDE.value, sample_rate=_SAMPLE_RATE.value,
      jpeg_quality=_JPEG_QUALITY.value, num_workers=_NUM_WORKERS.value,
      missing_audio=_MISSING_AUDIO.value, min_duration=_MIN_DURATION.value,
      shuffle_seed=_SHUFFLE_SEED.value if _SHUFFLE_SEED.value >= 0 else None,
      show_progress=_PROGRESS.value, val_fraction=_VAL_FRACTION.value,
      overwrite=_OVERWRITE.value)
  print("\n".join(ingest.summarize(report)))
  print(f"Elapsed: {time.time() - start:.1f} s")


if __name__ == "__main__":
  cli.run(main)
