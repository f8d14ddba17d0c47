"""Video clips of labelled datasets per fold, for fine-tuning and its test.

Sources (`video_source`):
  * a dataset written by scripts/prepare_data.py (`dataset_dir`):
    - with `split_csv_dir`: the official fold lists as CSVs
      `trainlist01.csv`, `testlist01.csv`, ... (fold k: `trainlist{k:02d}`,
      `testlist{k:02d}`), columns `path,label` (header row; label an integer
      class id). `path` is matched to the ingested `video_id` (the video's
      path relative to prepare_data's --video_dir), ignoring the file
      extension and a leading "./"; every split of the dataset is searched.
      A listed video the dataset lacks is an error.
    - without: fold k reads the splits `train{k}` / `test{k}` when the
      dataset has them, else the only fold (1) is `train` / `val`.
  * a TFDS video dataset by name (`tfds_name`, e.g. "ucf101"): fold k is the
    builder config `tfds_config_template.format(name=..., fold=k)`
    ("ucf101_1", "ucf101_2", "ucf101_3"), splits train / test; a name with
    a config ("ucf101/ucf101_1_256") is one fold.

Train clips (`train_clips`): each video visited `clips_per_video` times per
epoch in a shuffled order, one clip of `num_frames` at `frame_rate` from a
uniformly random start, RandomResizedCrop (area `crop_scale`), flip, colour
jitter, ImageNet normalisation; all randomness stateless from (seed, epoch,
position), so an epoch is the same whether it runs first or after a resume.
Test clips (`test_clips`): `num_clips` clips uniformly spaced over the whole
video, short side resized to crop_size / 0.875 (256 for 224), centre crop.
"""

import csv
import dataclasses
import os
import re
from typing import Any, Optional

import gin
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from avid_tf import errors
from avid_tf.data import augmentation
from avid_tf.data import schema
from avid_tf.data import video_ops
from avid_tf.utils import checks
from avid_tf.utils import files

AUTOTUNE = tf.data.AUTOTUNE
_plain = tf.autograph.experimental.do_not_convert
_TRAIN_SALT = 0x46494E45  # "FINE"


class FinetuneDataError(errors.UserError, ValueError):
  """A dataset, split list or fold that cannot be used for fine-tuning."""


@dataclasses.dataclass
class FoldData:
  """The videos of one fold.

  Attributes:
    fold: fold number.
    train: function returning a finite `tf.data.Dataset` of
      {"frames", "label"} (one element per training video).
    test: the same for the test videos.
    num_train: training videos.
    num_test: test videos.
  """

  fold: int
  train: Any
  test: Any
  num_train: int
  num_test: int


@dataclasses.dataclass
class VideoSource:
  """A labelled video dataset, split into folds.

  Attributes:
    name: for reports.
    num_classes: classes of the labels.
    fps: rate of the stored frames.
    encoded: True when "frames" holds JPEG strings [T], False for uint8
      [T, H, W, 3] frames.
    fold_data: function fold -> `FoldData`.
  """

  name: str
  num_classes: int
  fps: float
  encoded: bool
  fold_data: Any


def split_csv_paths(split_csv_dir, fold):
  """The (train, test) CSV paths of a fold."""
  return (os.path.join(split_csv_dir, f"trainlist{fold:02d}.csv"),
          os.path.join(split_csv_dir, f"testlist{fold:02d}.csv"))


def _normalise_id(path):
  path = path.strip().replace("\\", "/")
  path = re.sub(r"^\./", "", path)
  return re.sub(r"\.[^./]*$", "", path)


def read_split_csv(path):
  """Returns {normalised video path: label} of a fold list CSV."""
  if not files.isfile(path):
    raise FinetuneDataError(f"Split list {path} not found (expected columns "
                            "path,label)")
  with files.open_file(path, newline="", encoding="utf-8-sig") as f:
    reader = csv.DictReader(f)
    missing = {"path", "label"} - set(reader.fieldnames or ())
    if missing:
      raise FinetuneDataError(f"{path} lacks column(s) {sorted(missing)} "
                              "(expected path,label)")
    rows = {}
    for line, row in enumerate(reader, start=2):
      try:
        rows[_normalise_id(row["path"])] = int(row["label"])
      except ValueError:
        raise FinetuneDataError(f"{path} line {line}: label "
                                f"{row['label']!r} is not an integer") from None
  if not rows:
    raise FinetuneDataError(f"{path} lists no videos")
  return rows


def _parse_ingested(serialized):
  parsed = tf.io.parse_single_example(serialized, {
      "video_id": tf.io.FixedLenFeature([], tf.string),
      "frames": tf.io.VarLenFeature(tf.string),
      "label": tf.io.FixedLenFeature([], tf.int64)})
  parsed["frames"] = tf.sparse.to_dense(parsed["frames"])
  return parsed


def _ingested_ids(paths):
  """Video ids of every record (a pass reading only the ids)."""
  records = tf.data.TFRecordDataset(list(paths))
  ids = records.map(_plain(lambda s: tf.io.parse_single_example(
      s, {"video_id": tf.io.FixedLenFeature([], tf.string)})["video_id"]),
                    num_parallel_calls=AUTOTUNE)
  return [_normalise_id(i.decode("utf-8")) for i in ids.as_numpy_iterator()]


def _ingested_source(dataset_dir, split_csv_dir, name=None):
  info = schema.as_dataset_info(dataset_dir)
  num_labels = len(info.label_names)

  def examples(paths, labels_by_id=None):
    def make():
      dataset = tf.data.TFRecordDataset(list(paths)).map(
          _plain(_parse_ingested), num_parallel_calls=AUTOTUNE)
      if labels_by_id is None:
        return dataset.map(_plain(lambda e: {
            "frames": e["frames"], "label": tf.cast(e["label"], tf.int32)}))
      table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
          list(labels_by_id), np.asarray(list(labels_by_id.values()),
                                         np.int32)), -1)
      def relabel(e):
        video_id = tf.strings.regex_replace(
            tf.strings.regex_replace(e["video_id"], r"^\./", ""),
            r"\.[^./]*$", "")
        return {"frames": e["frames"], "label": table.lookup(video_id)}
      return dataset.map(_plain(relabel)).filter(
          _plain(lambda e: e["label"] >= 0))
    return make

  if split_csv_dir is not None:
    all_paths = [p for s in info.splits.values() for p in s.paths]
    available = None

    def fold_data(fold):
      nonlocal available
      train_csv, test_csv = split_csv_paths(split_csv_dir, fold)
      train_ids, test_ids = read_split_csv(train_csv), read_split_csv(test_csv)
      if available is None:
        available = set(_ingested_ids(all_paths))
      for path, ids in ((train_csv, train_ids), (test_csv, test_ids)):
        lacking = sorted(set(ids) - available)
        if lacking:
          raise FinetuneDataError(
              f"{len(lacking)} video(s) of {path} are not in {dataset_dir}, "
              f"e.g. {lacking[:3]}")
      return FoldData(fold, examples(all_paths, train_ids),
                      examples(all_paths, test_ids), len(train_ids),
                      len(test_ids))

    lists = sorted(files.glob(os.path.join(split_csv_dir, "*list*.csv")))
    if not lists:
      raise FinetuneDataError(f"No trainlistNN.csv / testlistNN.csv in "
                              f"{split_csv_dir}")
    max_label = max(max(read_split_csv(p).values()) for p in lists)
    num_classes = max(num_labels, max_label + 1)
  else:

    def fold_data(fold):
      if f"train{fold}" in info.splits and f"test{fold}" in info.splits:
        train, test = f"train{fold}", f"test{fold}"
      elif fold == 1 and "train" in info.splits and "val" in info.splits:
        train, test = "train", "val"
      else:
        raise FinetuneDataError(
            f"{dataset_dir} has no splits train{fold}/test{fold}"
            f"{' or train/val' if fold == 1 else ''} for fold {fold} (its "
            f"splits: {sorted(info.splits)}); pass --split_csv_dir")
      return FoldData(fold, examples(info.split(train).paths),
                      examples(info.split(test).paths),
                      info.num_examples(train), info.num_examples(test))

    num_classes = num_labels
    if not num_classes:
      labels = info.instance_column("train", "label")
      num_classes = int(labels.max()) + 1 if labels is not None else 0
  if num_classes < 2:
    raise FinetuneDataError(f"{dataset_dir} has no class labels (ingest it "
                            "with a --labels_csv, or pass --split_csv_dir)")
  return VideoSource(name or info.name, num_classes, info.fps, True,
                     fold_data)


def _tfds_source(tfds_name, config_template, data_dir, fps):
  def builder(fold):
    if "/" in tfds_name:
      if fold != 1:
        raise FinetuneDataError(f"--tfds_name={tfds_name} names one config: "
                                "only fold 1 (use the bare name for folds)")
      full_name = tfds_name
    else:
      full_name = f"{tfds_name}/" + config_template.format(name=tfds_name,
                                                           fold=fold)
    try:
      return tfds.builder(full_name, data_dir=data_dir)
    except Exception as error:  # pylint: disable=broad-except
      raise FinetuneDataError(f"TFDS dataset {full_name}: "
                              f"{str(error).splitlines()[0]}") from None

  def fold_data(fold):
    fold_builder = builder(fold)
    splits = fold_builder.info.splits

    def examples(split):
      def make():
        dataset = fold_builder.as_dataset(split=split, shuffle_files=False)
        return dataset.map(_plain(lambda e: {
            "frames": e["video"], "label": tf.cast(e["label"], tf.int32)}))
      return make
    def count(split):
      if split in splits:
        return splits[split].num_examples
      # Builders without split metadata (tfds.testing.mock_data): count.
      return int(examples(split)().reduce(0, lambda n, _: n + 1))
    return FoldData(fold, examples("train"), examples("test"), count("train"),
                    count("test"))

  num_classes = builder(1).info.features["label"].num_classes
  return VideoSource(tfds_name, num_classes, float(fps), False, fold_data)


def video_source(dataset_dir=None, tfds_name=None, split_csv_dir=None,
                 tfds_config_template="{name}_{fold}", tfds_data_dir=None,
                 tfds_fps=25.0):
  """Returns the `VideoSource` of an ingested dataset or a TFDS dataset.

  Args:
    dataset_dir: folder written by prepare_data.py (<output_dir>/<name>/1.0.0).
    tfds_name: TFDS video dataset name (with an optional "/config").
    split_csv_dir: folder of trainlistNN.csv / testlistNN.csv (path,label)
      fold lists matched to the ingested videos (dataset_dir only).
    tfds_config_template: builder config of fold k.
    tfds_data_dir: TFDS data folder (None: TFDS's default).
    tfds_fps: frame rate of the TFDS dataset's frames (UCF-101: 25).

  Raises:
    FinetuneDataError: neither or both sources, or an unusable one.
  """
  if (dataset_dir is None) == (tfds_name is None):
    raise FinetuneDataError("Give exactly one of --dataset_dir and "
                            "--tfds_name")
  if tfds_name is not None:
    if split_csv_dir is not None:
      raise FinetuneDataError("--split_csv_dir applies to --dataset_dir, not "
                              "to --tfds_name (TFDS configs are the folds)")
    return _tfds_source(tfds_name, tfds_config_template, tfds_data_dir,
                        tfds_fps)
  return _ingested_source(dataset_dir, split_csv_dir)


def _gather_frames(frames, indices, encoded, crop_window=None):
  """uint8 frames at `indices`, (JPEG: decoded only in `crop_window`)."""
  if encoded:
    return video_ops.decode_jpeg_frames(tf.gather(frames, indices),
                                        crop_window)
  frames = tf.gather(frames, indices)
  if crop_window is None:
    return frames
  y, x, h, w = tf.unstack(crop_window)
  return frames[:, y:y + h, x:x + w, :]


def _frame_shape(frames, encoded):
  if encoded:
    shape = tf.image.extract_jpeg_shape(frames[0])
    return shape[0], shape[1]
  shape = tf.shape(frames)
  return shape[1], shape[2]


@dataclasses.dataclass(frozen=True)
class ClipSettings(augmentation.VideoAugmentation):
  """Geometry and augmentation of fine-tuning clips (see `finetune_clips`).

  Values are checked when it is made: a wrong type or a value out of range
  is a `errors.InvalidValueError` naming the `finetune_clips` binding.
  """

  num_frames: int
  crop_size: int
  frame_rate: float

  def __post_init__(self):
    builder = "finetune_clips"
    checks.field(self, builder, "num_frames", checks.integer, minimum=1)
    checks.field(self, builder, "crop_size", checks.integer, minimum=1)
    checks.field(self, builder, "frame_rate", checks.number, low=0,
                 low_open=True)
    self.check_video_augmentation(builder)

  @property
  def clip_seconds(self):
    return self.num_frames / self.frame_rate


@gin.configurable
def finetune_clips(num_frames=8, crop_size=224, frame_rate=16.0,
                   crop_scale=(0.08, 1.0), crop_ratio=(3.0 / 4.0, 4.0 / 3.0),
                   flip_probability=0.5, brightness=0.4, contrast=0.4,
                   saturation=0.4, hue=0.2):
  """The clips of fine-tuning (gin/eval/*.gin bind these).

  Args:
    num_frames: frames per clip (8 or 32 in the protocol).
    crop_size: side of the clips (224).
    frame_rate: rate the clip frames are sampled at (16 fps).
    crop_scale: RandomResizedCrop area range.
    crop_ratio: RandomResizedCrop aspect-ratio range.
    flip_probability: horizontal flip probability.
    brightness: colour jitter (0.4 UCF, 1.0 HMDB).
    contrast: colour jitter (0.4 UCF, 1.0 HMDB).
    saturation: colour jitter (0.4 UCF, 1.0 HMDB).
    hue: colour jitter in turns (0.2).

  Returns:
    A `ClipSettings`.
  """
  return ClipSettings(
      num_frames=num_frames, crop_size=crop_size, frame_rate=frame_rate,
      crop_scale=crop_scale, crop_ratio=crop_ratio,
      flip_probability=flip_probability, brightness=brightness,
      contrast=contrast, saturation=saturation, hue=hue)


def train_clips(source, examples, settings, batch_size, clips_per_video,
                seed, epoch, shuffle_buffer=256):
  """One epoch of augmented (video, label) batches, remainder dropped.

  Args:
    source: the `VideoSource` (frame rate, encoding).
    examples: function returning the fold's training examples.
    settings: `ClipSettings`.
    batch_size: clips per batch.
    clips_per_video: visits of each video in the epoch.
    seed: seed of the run.
    epoch: epoch index (with `seed`, fixes order and augmentation).
    shuffle_buffer: videos held for shuffling.

  Returns:
    `tf.data.Dataset` of (float32 [B, T, S, S, 3], int32 [B]).
  """
  epoch_key = tf.random.experimental.stateless_fold_in(
      tf.constant([seed, _TRAIN_SALT], tf.int64), epoch)
  order_seed = int(seed) * 100003 + int(epoch)

  def clip(position, example):
    seeds = tf.random.experimental.stateless_split(
        tf.random.experimental.stateless_fold_in(epoch_key, position), 3)
    frames = example["frames"]
    num_stored = tf.shape(frames)[0]
    video_seconds = tf.cast(num_stored, tf.float32) / source.fps
    start = tf.random.stateless_uniform([], seeds[0]) * tf.maximum(
        video_seconds - settings.clip_seconds, 0.0)
    indices = video_ops.frame_indices(start, settings.num_frames,
                                      settings.frame_rate, source.fps,
                                      num_stored)
    height, width = _frame_shape(frames, source.encoded)
    window = video_ops.random_resized_crop_window(
        seeds[1], height, width, settings.crop_scale, settings.crop_ratio)
    cropped = _gather_frames(frames, indices, source.encoded, window)
    video = video_ops.augment_clip(
        cropped, seeds[2], settings.crop_size, settings.flip_probability,
        settings.brightness, settings.contrast, settings.saturation,
        settings.hue)
    video = tf.ensure_shape(video, (settings.num_frames, settings.crop_size,
                                    settings.crop_size, 3))
    return video, example["label"]

  dataset = examples().repeat(clips_per_video).shuffle(
      shuffle_buffer, seed=order_seed, reshuffle_each_iteration=False)
  dataset = dataset.enumerate().map(_plain(clip), num_parallel_calls=AUTOTUNE,
                                    deterministic=True)
  return dataset.batch(batch_size, drop_remainder=True).prefetch(AUTOTUNE)


def test_clips(source, examples, settings, num_clips, batch_size):
  """`num_clips` uniformly spaced centre-cropped clips per video, in order.

  Returns:
    `tf.data.Dataset` of (float32 [B, T, S, S, 3] clips, int32 [B] label,
    int32 [B] video position): the clips of video v are consecutive; the
    last batch may be smaller.
  """
  def clips(position, example):
    frames = example["frames"]
    num_stored = tf.shape(frames)[0]
    video_seconds = tf.cast(num_stored, tf.float32) / source.fps
    starts, _ = video_ops.uniform_clip_offsets(
        num_clips, video_seconds, 0.0, settings.clip_seconds,
        settings.clip_seconds)
    indices = video_ops.frame_indices(starts, settings.num_frames,
                                      settings.frame_rate, source.fps,
                                      num_stored)
    flat = _gather_frames(frames, tf.reshape(indices, [-1]), source.encoded)
    flat = video_ops.eval_resize_and_center_crop(flat, settings.crop_size)
    video = video_ops.scale_and_normalize(flat)
    video = tf.reshape(video, [num_clips, settings.num_frames,
                               settings.crop_size, settings.crop_size, 3])
    repeat = lambda value: tf.fill([num_clips], tf.cast(value, tf.int32))
    return video, repeat(example["label"]), repeat(position)

  dataset = examples().enumerate().map(_plain(clips),
                                       num_parallel_calls=AUTOTUNE,
                                       deterministic=True)
  return dataset.unbatch().batch(batch_size).prefetch(AUTOTUNE)


def resolve_num_classes(source: VideoSource, num_classes: Optional[int]):
  """The classifier's width: the source's unless given."""
  return int(num_classes or source.num_classes)
