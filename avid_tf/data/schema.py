"""On-disk dataset format shared by ingest (writer) and the input pipeline.

A dataset is a TFDS folder dataset, loadable with
`tfds.builder_from_directory(dataset_dir)`:

  <dataset_dir>/                       e.g. <output_dir>/<name>/1.0.0
    <name>-<split>.tfrecord-XXXXX-of-YYYYY
    dataset_info.json, features.json   (TFDS metadata; num_examples per split)
    avid_metadata.json                 (fps, sample rate, label names,
                                        log-spectrogram statistics)

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

import json
import os

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

METADATA_FILE = "avid_metadata.json"
VERSION = "1.0.0"


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


def dataset_dir(output_dir, name):
  """Returns the folder holding dataset `name` under `output_dir`."""
  return os.path.join(output_dir, name, VERSION)


def shard_path(directory, name, split, shard, num_shards):
  """Returns the TFDS file name of one shard."""
  return os.path.join(
      directory, f"{name}-{split}.tfrecord-{shard:05d}-of-{num_shards:05d}")


def write_shard(path, serialized_examples):
  """Writes serialized examples to a TFRecord file atomically."""
  tmp_path = path + ".tmp"
  with tf.io.TFRecordWriter(tmp_path) as writer:
    for record in serialized_examples:
      writer.write(record)
  os.replace(tmp_path, path)


def write_dataset_info(directory, name, shard_lengths, metadata,
                       description=""):
  """Writes the TFDS metadata and `avid_metadata.json` for written shards.

  Args:
    directory: the dataset folder holding the shards.
    name: dataset name used in the shard file names.
    shard_lengths: dict split name -> list of examples per shard.
    metadata: JSON-serialisable dict written to `avid_metadata.json`.
    description: free text stored in the TFDS dataset info.
  """
  template = tfds.core.ShardedFileTemplate(
      data_dir=directory, template="{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}",
      dataset_name=name, filetype_suffix="tfrecord")
  split_infos = [
      tfds.core.SplitInfo(name=split, shard_lengths=list(lengths),
                          num_bytes=sum(
                              os.path.getsize(shard_path(directory, name, split,
                                                         i, len(lengths)))
                              for i in range(len(lengths))),
                          filename_template=template.replace(split=split))
      for split, lengths in shard_lengths.items()
  ]
  tfds.folder_dataset.write_metadata(
      data_dir=directory, features=features(), split_infos=split_infos,
      filename_template=template, check_data=False, description=description)
  tmp_path = os.path.join(directory, METADATA_FILE + ".tmp")
  with open(tmp_path, "w") as f:
    json.dump(metadata, f, indent=1)
  os.replace(tmp_path, os.path.join(directory, METADATA_FILE))


def load_builder(directory):
  """Returns the TFDS builder of a dataset folder, with a clear error."""
  if not os.path.isfile(os.path.join(directory, "dataset_info.json")):
    raise FileNotFoundError(
        f"No dataset at {directory}: expected dataset_info.json (create one "
        "with scripts/prepare_data.py and pass its <output_dir>/<name>/1.0.0 "
        "folder).")
  return tfds.builder_from_directory(directory)


def read_metadata(directory):
  """Returns the dict stored in `avid_metadata.json` of a dataset folder."""
  path = os.path.join(directory, METADATA_FILE)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path} is missing: the dataset was not written "
                            "by avid_tf's ingest or is incomplete.")
  with open(path) as f:
    return json.load(f)


def num_examples(directory, split="train"):
  """Returns the number of videos in a split (the memory-bank size)."""
  builder = load_builder(directory)
  if split not in builder.info.splits:
    raise ValueError(f"Dataset {directory} has no split '{split}'; it has "
                     f"{sorted(builder.info.splits.keys())}.")
  return builder.info.splits[split].num_examples
