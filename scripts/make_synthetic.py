"""Generates the synthetic audio-visual dataset (mp4 files + labels.csv).

Example:
  python scripts/make_synthetic.py --output_dir=/tmp/synth --num_workers=2

Writes <output_dir>/videos/<class>/<video_id>.mp4 (H.264 + AAC) and
<output_dir>/labels.csv (path,label,split,faulty; paths relative to
<output_dir>); ingest them next with scripts/prepare_data.py
--video_dir=<output_dir> --labels_csv=<output_dir>/labels.csv.
"""

import collections
import csv
import time

from absl import flags

from avid_tf import cli
from avid_tf.data import synthetic

_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "Destination folder: receives videos/ and labels.csv.")
_NUM_CLASSES = flags.DEFINE_integer(
    "num_classes", 10,
    f"Number of classes (2..{synthetic.MAX_CLASSES}). The first 10 are "
    f"{', '.join(synthetic.CLASS_NAMES)}; more reuse their motions and "
    "timbres with other shapes, rhythms and pitch bands.")
_VIDEOS_PER_CLASS = flags.DEFINE_integer(
    "videos_per_class", 100, "Videos generated for each class.")
_DURATION = flags.DEFINE_float("duration", 3.0, "Length of each video in "
                               "seconds.")
_SIZE = flags.DEFINE_integer(
    "size", 128, "Frame width and height in pixels (even, for yuv420p).")
_FPS = flags.DEFINE_integer("fps", 25, "Video frame rate.")
_SAMPLE_RATE = flags.DEFINE_integer(
    "sample_rate", 48000,
    "Audio sample rate in Hz (48 kHz by default, so ingest must resample).")
_VAL_FRACTION = flags.DEFINE_float(
    "val_fraction", 0.2,
    "Fraction of each class put in the val split (stratified per class).")
_FAULTY_POSITIVE_RATE = flags.DEFINE_float(
    "faulty_positive_rate", 0.0,
    "Fraction of the videos of each split whose audio track is taken from a "
    "video of another class; they are marked faulty=1 in labels.csv.")
_SEED = flags.DEFINE_integer(
    "seed", 0, "Seed (>= 0); the same seed gives the same dataset.")
_NUM_WORKERS = flags.DEFINE_integer(
    "num_workers", None,
    "Processes rendering and encoding videos (default: all CPU cores).")
flags.mark_flag_as_required("output_dir")


def main(argv):
  del argv
  start = time.monotonic()
  labels_path = synthetic.generate_dataset(
      _OUTPUT_DIR.value, num_classes=_NUM_CLASSES.value,
      videos_per_class=_VIDEOS_PER_CLASS.value, duration=_DURATION.value,
      size=_SIZE.value, fps=_FPS.value, sample_rate=_SAMPLE_RATE.value,
      val_fraction=_VAL_FRACTION.value,
      faulty_positive_rate=_FAULTY_POSITIVE_RATE.value, seed=_SEED.value,
      num_workers=_NUM_WORKERS.value)
  elapsed = time.monotonic() - start
  with open(labels_path, newline="", encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
  splits = collections.Counter(row["split"] for row in rows)
  faulty = sum(int(row["faulty"]) for row in rows)
  print(f"Wrote {len(rows)} videos ({splits['train']} train, {splits['val']} "
        f"val, {faulty} faulty) to {labels_path} in {elapsed:.1f} s")


if __name__ == "__main__":
  cli.run(main)
