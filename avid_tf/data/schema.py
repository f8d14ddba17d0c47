"""On-disk dataset format shared by ingest (writer) and the input pipeline.

A dataset is a TFDS folder dataset, loadable with
`tfds.builder_from_directory(dataset_dir)`:

  <dataset_dir>/                       e.g. <output_dir>/<name>/1.0.0
    <name>-<split>.tfrecord-XXXXX-of-YYYYY
    dataset_info.json, features.json   (TFDS metadata; num_examples per split)
    avid_metadata.json                 (fps, sample rate, label names,
                                        log-spectrogram statistics)
    instances.npz                      (optional: per-split columns of the
                                        examples by index, e.g. train_label,
                                        train_faulty)

One example per video:
  video_id  text     path of the source file relative to the video folder
  frames    [T] JPEG bytes (tfds Image sequence; read with SkipDecoding)
  audio     [S] int16 mono PCM at `sample_rate` (empty when the video had no
            audio and the silence policy was used; the pipeline pads zeros)
  label     int64    class id, -1 when unknown
  index     int64    row of this video in its split, 0..num_examples-1 (the
            memory-bank row for the train split)
  duration  float32  seconds of video
"""

import contextlib
import dataclasses
import json
import os
import tempfile

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from avid_tf import errors
from avid_tf.data import audio_ops
from avid_tf.utils import files

METADATA_FILE = "avid_metadata.json"
INSTANCES_FILE = "instances.npz"
VERSION = "1.0.0"
# Keys every avid_metadata.json has; the input pipeline needs all of them.
_REQUIRED_METADATA = ("fps", "sample_rate", "spectrogram_mean",
                      "spectrogram_std")


def features():
  """Returns the `tfds.features.FeaturesDict` of one video example."""
  return tfds.features.FeaturesDict({
      "video_id": tfds.features.Text(),
      "frames": tfds.features.Sequence(
          tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg")),
      "audio": tfds.features.Tensor(shape=(None,), dtype=np.int16),
      "label": tfds.features.Scalar(dtype=np.int64),
      "index": tfds.features.Scalar(dtype=np.int64),
      "duration": tfds.features.Scalar(dtype=np.float32),
  })


_PARSER = None


def parse_example(serialized):
  """Parses a serialized example of `features()`, frames still JPEG bytes."""
  global _PARSER
  if _PARSER is None:
    _PARSER = tfds.core.example_parser.ExampleParser(
        features().get_serialized_info())
  return _PARSER.parse_example(serialized)


def dataset_dir(output_dir, name):
  """Returns the folder holding dataset `name` under `output_dir`."""
  return os.path.join(output_dir, name, VERSION)


def shard_path(directory, name, split, shard, num_shards):
  """Returns the TFDS file name of one shard."""
  return os.path.join(
      directory, f"{name}-{split}.tfrecord-{shard:05d}-of-{num_shards:05d}")


def write_shard(path, serialized_examples):
  """Writes serialized examples to a TFRecord file atomically."""
  with files.atomic_path(path) as tmp_path:
    with tf.io.TFRecordWriter(tmp_path) as writer:
      for record in serialized_examples:
        writer.write(record)


def write_dataset_info(directory, name, shard_lengths, metadata,
                       description="", instance_columns=None):
  """Writes the TFDS metadata and `avid_metadata.json` for written shards.

  Args:
    directory: the dataset folder holding the shards.
    name: dataset name used in the shard file names.
    shard_lengths: dict split name -> list of examples per shard.
    metadata: JSON-serialisable dict written to `avid_metadata.json`.
    description: free text stored in the TFDS dataset info.
    instance_columns: optional {split: {column: int array [num_examples]}}
      of per-example values by index (labels, faulty flags), written to
      `instances.npz` so that training can read them without reading the
      shards.
  """
  num_bytes = {split: sum(files.getsize(shard_path(directory, name, split, i,
                                                   len(lengths)))
                          for i in range(len(lengths)))
               for split, lengths in shard_lengths.items()}
  shard_names = [os.path.basename(shard_path(directory, name, split, i,
                                             len(lengths)))
                 for split, lengths in shard_lengths.items()
                 for i in range(len(lengths))]
  with _tfds_metadata_folder(directory, shard_names) as metadata_dir:
    template = tfds.core.ShardedFileTemplate(
        data_dir=metadata_dir,
        template="{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}",
        dataset_name=name, filetype_suffix="tfrecord")
    split_infos = [
        tfds.core.SplitInfo(name=split, shard_lengths=list(lengths),
                            num_bytes=num_bytes[split],
                            filename_template=template.replace(split=split))
        for split, lengths in shard_lengths.items()
    ]
    tfds.folder_dataset.write_metadata(
        data_dir=metadata_dir, features=features(), split_infos=split_infos,
        filename_template=template, check_data=False,
        description=description)
  columns = {f"{split}_{column}": np.asarray(values, np.int64)
             for split, split_columns in (instance_columns or {}).items()
             for column, values in split_columns.items()}
  instances_path = os.path.join(directory, INSTANCES_FILE)
  if columns:
    with files.atomic_path(instances_path, local=True) as tmp_path:
      with files.open_file(tmp_path, "wb") as f:
        np.savez(f, **columns)
  elif files.exists(instances_path):
    files.remove(instances_path)
  files.write_json(os.path.join(directory, METADATA_FILE), metadata)


@contextlib.contextmanager
def _tfds_metadata_folder(directory, shard_names=()):
  """The folder TFDS reads (or writes) a dataset's metadata files in.

  TFDS opens paths through etils, which knows local, gs:// and s3:// paths
  but not every file system `tf.io.gfile` does (ram://, hdfs://). For a URL
  the metadata files (the JSON files of the dataset folder) are staged in
  a local temporary folder: copied from `directory` before reading, or,
  when writing (`shard_names` given: empty stand-ins for TFDS to list),
  copied to `directory` after, each renamed into place.
  """
  if not files.is_url(directory):
    yield directory
    return
  with tempfile.TemporaryDirectory() as local:
    for path in files.glob(files.join(directory, "*.json")):
      tf.io.gfile.copy(path, os.path.join(local, os.path.basename(path)))
    for name in shard_names:
      open(os.path.join(local, name), "wb").close()
    yield local
    if shard_names:
      for name in sorted(set(os.listdir(local)) - set(shard_names)):
        files.upload(os.path.join(local, name), files.join(directory, name))


def load_builder(directory):
  """Returns the TFDS builder of a dataset folder, with a clear error.

  The builder's shard paths are those of a local copy of the metadata for
  a URL `directory`; `DatasetInfo.load` gives the real ones.
  """
  if not files.isfile(os.path.join(directory, "dataset_info.json")):
    raise FileNotFoundError(
        f"No dataset at {directory}: expected dataset_info.json (create one "
        "with scripts/prepare_data.py and pass its <output_dir>/<name>/1.0.0 "
        "folder).")
  with _tfds_metadata_folder(directory) as metadata_dir:
    return tfds.builder_from_directory(metadata_dir)


def read_metadata(directory):
  """Returns the dict stored in `avid_metadata.json` of a dataset folder."""
  path = os.path.join(directory, METADATA_FILE)
  if not files.isfile(path):
    raise FileNotFoundError(f"{path} is missing: the dataset was not written "
                            "by avid_tf's ingest or is incomplete.")
  with files.open_file(path) as f:
    return json.load(f)


def num_examples(directory, split="train"):
  """Returns the number of videos in a split (the memory-bank size)."""
  return DatasetInfo.load(directory).num_examples(split)


@dataclasses.dataclass(frozen=True)
class SplitInfo:
  """The shard files of one split.

  Attributes:
    name: split name.
    paths: shard file paths, in index order.
    lengths: examples per shard.
    num_bytes: total size of the shards.
    num_examples: examples in the split.
  """

  name: str
  paths: tuple
  lengths: tuple
  num_bytes: int
  num_examples: int


class DatasetInfo:
  """An ingested dataset's description, read once and shared.

  Training, evaluation, export and the benchmarks take one of these instead
  of re-reading the metadata files. Create it with `DatasetInfo.load`.

  Attributes:
    directory: the dataset folder.
    name: dataset name.
    splits: {split name: SplitInfo}.
    metadata: the dict of `avid_metadata.json`.
    fps: frame rate of the stored frames.
    sample_rate: sample rate of the stored audio.
    spectrogram_mean: float32 [257] log-spectrogram means.
    spectrogram_std: float32 [257] log-spectrogram standard deviations.
    label_names: class names by label id ([] when unlabelled).
  """

  def __init__(self, directory, name, splits, metadata, instance_columns):
    self.directory = directory
    self.name = name
    self.splits = dict(splits)
    self.metadata = dict(metadata)
    self._instance_columns = dict(instance_columns)
    path = os.path.join(directory, METADATA_FILE)
    for key in _REQUIRED_METADATA:
      if key not in metadata:
        raise errors.InvalidValueError(
            f"{path} has no '{key}': the dataset was not written "
            "by avid_tf's ingest or is incomplete.")
    self.fps = float(metadata["fps"])
    self.sample_rate = int(metadata["sample_rate"])
    self.spectrogram_mean = np.asarray(metadata["spectrogram_mean"],
                                       np.float32)
    self.spectrogram_std = np.asarray(metadata["spectrogram_std"], np.float32)
    for key in ("spectrogram_mean", "spectrogram_std"):
      if getattr(self, key).shape != (audio_ops.NUM_BINS,):
        raise errors.InvalidValueError(
            f"{path}: '{key}' must hold {audio_ops.NUM_BINS} "
            f"values, got {getattr(self, key).shape}.")
    self.label_names = list(metadata.get("label_names", []))

  @classmethod
  def load(cls, directory):
    """Reads a dataset folder's TFDS and avid_tf metadata.

    Raises:
      FileNotFoundError: no dataset (or no avid_tf metadata) at `directory`.
      ValueError: incomplete metadata.
    """
    directory = os.fspath(directory)
    builder = load_builder(directory)
    splits = {}
    for split, info in builder.info.splits.items():
      splits[split] = SplitInfo(
          name=split, paths=tuple(
              shard_path(directory, builder.info.name, split, i,
                         len(info.shard_lengths))
              for i in range(len(info.shard_lengths))),
          lengths=tuple(int(n) for n in info.shard_lengths),
          num_bytes=int(info.num_bytes),
          num_examples=int(info.num_examples))
    columns = {}
    instances_path = os.path.join(directory, INSTANCES_FILE)
    if files.isfile(instances_path):
      with files.open_file(instances_path, "rb") as f, np.load(f) as arrays:
        columns = {key: arrays[key] for key in arrays.files}
    return cls(directory, builder.info.name, splits,
               read_metadata(directory), columns)

  def split(self, name):
    """Returns the SplitInfo of a split, with a clear error if missing."""
    if name not in self.splits:
      raise errors.InvalidValueError(
          f"Dataset {self.directory} has no split '{name}'; it "
          f"has {sorted(self.splits)}.")
    return self.splits[name]

  def num_examples(self, split="train"):
    """Number of videos in a split (the memory-bank size for "train")."""
    return self.split(split).num_examples

  def instance_column(self, split, column):
    """Per-example values of a split by index (e.g. "label", "faulty").

    Returns:
      int64 [num_examples], or None when the dataset does not record it.
    """
    values = self._instance_columns.get(f"{split}_{column}")
    if values is None:
      return None
    if len(values) != self.num_examples(split):
      raise errors.InvalidValueError(
          f"{os.path.join(self.directory, INSTANCES_FILE)}: {split}_{column} "
          f"has {len(values)} values for {self.num_examples(split)} examples.")
    return values


def as_dataset_info(dataset):
  """Returns `dataset` as a DatasetInfo (loading it when given a folder)."""
  if isinstance(dataset, DatasetInfo):
    return dataset
  return DatasetInfo.load(dataset)
