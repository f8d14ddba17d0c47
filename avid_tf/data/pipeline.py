"""tf.data input pipelines: pretraining clips and multi-clip evaluation.

Phases (DMVR-style), all TensorFlow ops after the cheap visit stream:
  visit stream -> read records -> parse -> sample AV offsets (synchronised)
  -> decode only the sampled JPEG frames (only the crop window in training)
  -> video augment -> audio crop -> gain -> log-spectrogram -> normalise
  -> batch -> prefetch -> {"video", "audio", "index", "label"}
A training clip's phases are the methods of `TrainClipPhases`; with uint8
video batches its colour jitter and normalisation run in the model's step
instead (`finish_video`).

Training stream (`make_train_dataset`)
--------------------------------------
Infinite, and a pure function of (seed, element position): the same seed
gives the same batches whatever `num_parallel_calls` is, and `start_step`
resumes exactly where an uninterrupted run would be.

* The stream is a sequence of *rounds*; each round visits every video of the
  split (of this input pipeline, see sharding) exactly once, so one video
  rarely appears twice in a batch. With `clips_per_video` = c, epoch e is
  the whole batches of rounds e*c .. (e+1)*c - 1: the visits that do not
  fill a last batch are skipped (the reference's `drop_last`), every epoch
  starts on a round boundary and visits each video c times, bar those
  fewer-than-a-batch skipped visits of its last round.
* Random access into TFRecord files does not exist in tf.data, and a real
  dataset (hundreds of GB of JPEG frames) does not fit in memory. A round is
  therefore read as *groups* of shard files: round r permutes the shard
  files with a stateless shuffle seeded by (seed, r), cuts the permutation
  into groups of `shards_per_group` files, loads one group's serialized
  records into memory and visits them in a stateless permutation seeded by
  (seed, r, group). The shuffle window is thus a group (about
  `shuffle_window_bytes` of records, the whole split for small datasets)
  plus the random order of the groups — the trade-off against a global
  shuffle, which would need the whole dataset in memory. Up to about three
  groups are in memory at once (one being visited, one prefetched, one
  loading); a split that fits in one group is read once and kept.
* Resume: group sizes are known from the dataset metadata, so skipping
  `start_step * batch` elements needs no I/O: whole rounds are skipped by
  arithmetic and the first group starts at an offset into its permutation.
* All randomness of a visit (AV offsets, crop, flip, colour jitter, gain)
  comes from stateless ops seeded by (seed, round, video index).
* Multi-worker (`input_context`): input pipeline j of P owns every P-th shard
  file when the shard count is a multiple of P (each worker reads only its
  files), otherwise every P-th record of every file (each worker reads all
  files but keeps its records). The pipelines' video sets are disjoint and
  each pipeline's stream is built as above over its own videos.

Evaluation (`make_eval_dataset`) reads the split once in file order, with
`num_clips` clips uniformly spaced over each whole video and deterministic
centre crops. Audio-only folders (ESC-50) have their own reader,
`avid_tf.data.audio_folder`.
"""


import gin
import numpy as np
import tensorflow as tf

from avid_tf import errors
from avid_tf.data import audio_ops
from avid_tf.data import augmentation as augmentation_lib
from avid_tf.data import preprocessing as preprocessing_lib
from avid_tf.data import schema
from avid_tf.data import video_ops

AUTOTUNE = tf.data.AUTOTUNE
# The map functions have no Python control flow on tensors; skipping
# AutoGraph's source conversion makes building a dataset much faster.
_plain = tf.autograph.experimental.do_not_convert
_SEED_SALT = 0x41564944  # "AVID": separates clip seeds from order seeds.
_ORDER_SALT = 0x4F524452  # "ORDR"
VIDEO_DTYPES = ("float32", "uint8")
# Keys of a uint8 training batch: each clip's colour jitter parameters
# (`video_ops.color_jitter_params`), applied by `finish_video`.
VIDEO_JITTER = "video_jitter"
VIDEO_JITTER_ORDER = "video_jitter_order"


# ---------------------------------------------------------------------------
# Dataset description (Python, once per pipeline).
# ---------------------------------------------------------------------------


def _pipeline_shard(input_context):
  """Returns (num_input_pipelines, input_pipeline_id)."""
  if input_context is None:
    return 1, 0
  return input_context.num_input_pipelines, input_context.input_pipeline_id


def _per_pipeline_batch(batch_size, input_context):
  """Per-replica batch, and elements one pipeline consumes per global step."""
  if input_context is None:
    return batch_size, batch_size
  per_replica = input_context.get_per_replica_batch_size(batch_size)
  replicas_per_pipeline = max(
      1, input_context.num_replicas_in_sync //
      input_context.num_input_pipelines)
  return per_replica, per_replica * replicas_per_pipeline


def steps_per_epoch(dataset, batch_size, clips_per_video, split="train",
                    num_input_pipelines=1):
  """Returns the whole batches of one epoch: floor(N * clips_per_video / B).

  An epoch visits every video `clips_per_video` times; the visits left over
  after the last whole batch are dropped (the reference's `drop_last`), so
  every epoch starts on a visit-round boundary (see `make_train_dataset`).
  With several input pipelines, each owns a share of the videos and
  consumes batch_size / num_input_pipelines elements per step: the epoch is
  the smallest share's whole batches.

  Args:
    dataset: dataset folder or `schema.DatasetInfo`.
    batch_size: global batch size.
    clips_per_video: visits of each video per epoch.
    split: split trained on.
    num_input_pipelines: input pipelines the batch is split over (workers
      of a multi-worker run).

  Raises:
    ValueError: when one epoch's visits do not fill a single batch.
  """
  return _steps_per_epoch(schema.as_dataset_info(dataset).split(split),
                          batch_size, clips_per_video, num_input_pipelines)


def _steps_per_epoch(split_info, batch_size, clips_per_video,
                     num_input_pipelines):
  per_pipeline_batch = batch_size // num_input_pipelines
  steps = min(
      int(clips_per_video) * _VideoOwnership(
          split_info, num_input_pipelines, j).num_owned // per_pipeline_batch
      for j in range(num_input_pipelines))
  if steps < 1:
    raise errors.InvalidValueError(
        f"Split '{split_info.name}' has {split_info.num_examples} videos: "
        f"{clips_per_video} visits per video do not fill one batch of "
        f"{batch_size}; lower the batch size or raise clips_per_video.")
  return steps


# ---------------------------------------------------------------------------
# The training visit stream.
# ---------------------------------------------------------------------------


class _VideoOwnership:
  """Which records of a split one input pipeline owns (see module doc).

  Attributes:
    paths: shard files the pipeline reads.
    lengths: records per file read.
    offsets: global position of each read file's first record.
    owned_counts: records of each read file owned by the pipeline.
    num_owned: videos the pipeline owns.
    record_sharding: whether ownership is by record rather than by file.
  """

  def __init__(self, split_info, num_pipelines, pipeline_id):
    paths = list(split_info.paths)
    lengths = np.asarray(split_info.lengths, np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    self.record_sharding = False
    if num_pipelines > 1 and len(paths) % num_pipelines == 0:
      paths = paths[pipeline_id::num_pipelines]
      lengths = lengths[pipeline_id::num_pipelines]
      offsets = offsets[pipeline_id::num_pipelines]
      owned = lengths
    elif num_pipelines > 1:
      self.record_sharding = True
      # Records at global positions p with p % P == id, per file.
      first = (pipeline_id - offsets) % num_pipelines
      owned = np.maximum(0, (lengths - first + num_pipelines - 1) //
                         num_pipelines)
    else:
      owned = lengths
    self.paths = paths
    self.lengths = lengths
    self.offsets = offsets
    self.owned_counts = owned.astype(np.int64)
    self.num_owned = int(owned.sum())


class _VisitPlan(_VideoOwnership):
  """Which records an input pipeline visits, in which order (see module doc).

  A round visits each of the `num_owned` videos once.
  """

  def __init__(self, split_info, seed, num_pipelines, pipeline_id,
               shuffle_window_bytes, shards_per_group):
    super().__init__(split_info, num_pipelines, pipeline_id)
    if self.num_owned == 0:
      raise errors.InvalidValueError(
          f"Input pipeline {pipeline_id} of {num_pipelines} owns no videos: "
          f"the split has only {split_info.num_examples}.")
    self.num_pipelines = num_pipelines
    self.pipeline_id = pipeline_id
    if shards_per_group is None:
      bytes_per_shard = max(1, split_info.num_bytes // len(split_info.paths))
      shards_per_group = max(1, shuffle_window_bytes // bytes_per_shard)
    self.shards_per_group = int(min(max(1, shards_per_group),
                                    len(self.paths)))
    self.num_groups = -(-len(self.paths) // self.shards_per_group)
    self.seed = int(seed)

  def _order_seed(self, *values):
    key = tf.constant([self.seed, _ORDER_SALT], tf.int64)
    for value in values:
      key = tf.random.experimental.stateless_fold_in(key, value)
    return key

  def round_groups(self, round_index):
    """File ids [num_groups, shards_per_group] (-1 padded) and group sizes."""
    order = tf.random.experimental.stateless_shuffle(
        tf.range(len(self.paths), dtype=tf.int64),
        self._order_seed(round_index))
    padding = self.num_groups * self.shards_per_group - len(self.paths)
    order = tf.concat([order, tf.fill([padding], tf.constant(-1, tf.int64))],
                      0)
    groups = tf.reshape(order, [self.num_groups, self.shards_per_group])
    counts = tf.constant(self.owned_counts, tf.int64)
    sizes = tf.reduce_sum(
        tf.where(groups >= 0, tf.gather(counts, tf.maximum(groups, 0)), 0),
        axis=1)
    return groups, sizes

  def start_position(self, skip):
    """(round, group, offset) of the element `skip` elements in."""
    round_index, offset = divmod(int(skip), self.num_owned)
    _, sizes = self.round_groups(tf.constant(round_index, tf.int64))
    ends = np.cumsum(sizes.numpy())
    group = int(np.searchsorted(ends, offset, side="right"))
    begin = 0 if group == 0 else int(ends[group - 1])
    return round_index, group, offset - begin

  def _group_file_ids(self, round_index, group):
    """Sorted file ids of a group: its records are read in file order."""
    groups, _ = self.round_groups(round_index)
    file_ids = groups[group]
    return tf.sort(tf.boolean_mask(file_ids, file_ids >= 0))

  def _read_files(self, file_ids):
    paths = tf.gather(tf.constant(self.paths), file_ids)
    return tf.data.TFRecordDataset(paths).batch(2**31 - 1)

  def _visit_order(self, records, file_ids, round_index, group, start):
    """This pipeline's records of a group and their visit order from `start`."""
    if self.record_sharding:
      begins = tf.gather(tf.constant(self.offsets, tf.int64), file_ids)
      ends = begins + tf.gather(tf.constant(self.lengths, tf.int64), file_ids)
      positions = tf.ragged.range(begins, ends).flat_values
      records = tf.boolean_mask(
          records, positions % self.num_pipelines == self.pipeline_id)
    order = tf.random.experimental.stateless_shuffle(
        tf.range(tf.size(records, out_type=tf.int64)),
        self._order_seed(round_index, group))
    return records, order[start:], round_index

  def dataset(self, skip):
    """Infinite dataset of (serialized record, round index)."""
    round0, group0, offset0 = self.start_position(skip)
    first = round0 * self.num_groups + group0

    def group_meta(flat_group):
      round_index = flat_group // self.num_groups
      group = flat_group % self.num_groups
      _, sizes = self.round_groups(round_index)
      start = tf.where(flat_group == first, tf.constant(offset0, tf.int64),
                       tf.constant(0, tf.int64))
      return round_index, group, start, sizes[group]

    groups = tf.data.Dataset.counter(first).map(_plain(group_meta))
    groups = groups.filter(_plain(lambda r, g, start, size: size > start))
    if self.num_groups == 1:
      # Everything fits in one group: read the records once and keep them
      # (the same tensor every round; no I/O per round).
      all_files = tf.range(len(self.paths), dtype=tf.int64)
      records = self._read_files(all_files).cache().repeat()
      groups = tf.data.Dataset.zip(records, groups).map(_plain(
          lambda records, meta: self._visit_order(
              records, all_files, *meta[:3])))
    else:
      groups = groups.map(_plain(
          lambda r, g, start, size: self._visit_order(
              self._read_files(self._group_file_ids(r, g)
                               ).get_single_element(),
              self._group_file_ids(r, g), r, g, start)))

    def visits(records, order, round_index):
      # Indexing the group's records per visit copies each record once.
      return tf.data.Dataset.from_tensor_slices(order).map(
          _plain(lambda i: (records[i], round_index)))

    return groups.prefetch(1).flat_map(_plain(visits))


# ---------------------------------------------------------------------------
# Per-example processing.
# ---------------------------------------------------------------------------


def _clip_seed(seed, round_index, video_index):
  key = tf.constant([seed, _SEED_SALT], tf.int64)
  key = tf.random.experimental.stateless_fold_in(key, round_index)
  return tf.random.experimental.stateless_fold_in(key, video_index)


class _ClipConfig:
  """Static parameters of clip extraction shared by train and eval."""

  def __init__(self, dataset, preprocessing):
    if preprocessing.sample_rate != dataset.sample_rate:
      raise errors.InvalidValueError(
          f"Dataset {dataset.directory} stores audio at "
          f"{dataset.sample_rate} Hz but the run's preprocessing expects "
          f"{preprocessing.sample_rate} Hz; ingest it with --sample_rate="
          f"{preprocessing.sample_rate}.")
    self.num_frames = preprocessing.num_frames
    self.crop_size = preprocessing.crop_size
    self.stored_fps = dataset.fps
    self.frame_rate = preprocessing.frame_rate
    self.sample_rate = preprocessing.sample_rate
    self.video_seconds = preprocessing.clip_seconds
    self.audio_seconds = preprocessing.audio_seconds
    self.audio_samples = preprocessing.audio_samples
    self.spectrogram_frames = preprocessing.spectrogram_frames
    self.mean = np.asarray(preprocessing.spectrogram_mean, np.float32)
    self.std = np.asarray(preprocessing.spectrogram_std, np.float32)

  def lengths(self, example):
    num_stored = tf.size(example["frames"])
    video_len = tf.cast(num_stored, tf.float32) / self.stored_fps
    audio_len = tf.cast(tf.size(example["audio"]),
                        tf.float32) / self.sample_rate
    return num_stored, video_len, audio_len

  def spectrogram(self, waveforms):
    spec = audio_ops.log_spectrogram(waveforms, self.sample_rate,
                                     num_frames=self.spectrogram_frames)
    spec = audio_ops.normalize_spectrogram(spec, self.mean, self.std)
    return spec[..., tf.newaxis]


def _check_not_empty(example):
  return tf.debugging.assert_positive(
      tf.size(example["frames"]),
      message="A video in the dataset has no frames")


class TrainClipPhases:
  """The phases of one training clip (see the module docstring).

  Each phase maps the dict of parts the one before made;
  `make_train_dataset` chains them in one map function and
  benchmarks/input_pipeline.py times them one by one. With uint8 video the
  colour jitter and normalisation phases are left to the model's step
  (`finish_video`).

  Args:
    clip: the `_ClipConfig`.
    seed: the stream's seed.
    augment: the `augmentation.ClipAugmentation`.
    video_dtype: "float32" or "uint8" (see `make_train_dataset`).
  """

  def __init__(self, clip, seed, augment, video_dtype):
    if video_dtype not in VIDEO_DTYPES:
      raise errors.InvalidValueError(
          f"make_train_dataset.video_dtype must be one of {VIDEO_DTYPES}, "
          f"got {video_dtype!r}")
    self.clip = clip
    self.seed = int(seed)
    self.augment = augment
    self.video_dtype = video_dtype

  def sample(self, serialized, round_index):
    """Parses a record; draws the AV offsets, crop window and jitter; picks
    the clip's JPEG frames and audio samples."""
    clip, augment = self.clip, self.augment
    example = schema.parse_example(serialized)
    with tf.control_dependencies([_check_not_empty(example)]):
      num_stored, video_len, audio_len = clip.lengths(example)
    seeds = tf.random.experimental.stateless_split(
        _clip_seed(self.seed, round_index, example["index"]), 4)
    video_start, audio_start = video_ops.sample_av_offsets(
        seeds[0], video_len, audio_len, clip.video_seconds,
        clip.audio_seconds, augment.max_offsync)
    indices = video_ops.frame_indices(video_start, clip.num_frames,
                                      clip.frame_rate, clip.stored_fps,
                                      num_stored)
    jpegs = tf.gather(example["frames"], indices)
    jpegs.set_shape([clip.num_frames])
    image_shape = tf.image.extract_jpeg_shape(jpegs[0])
    window = video_ops.random_resized_crop_window(
        seeds[1], image_shape[0], image_shape[1], augment.crop_scale,
        augment.crop_ratio)
    flip_seed, jitter_seed = tf.unstack(
        tf.random.experimental.stateless_split(seeds[2], 2))
    factors, order = video_ops.color_jitter_params(
        jitter_seed, augment.brightness, augment.contrast,
        augment.saturation, augment.hue)
    start_sample = tf.cast(tf.round(audio_start * clip.sample_rate),
                           tf.int32)
    waveform = audio_ops.crop_waveform(example["audio"], start_sample,
                                       clip.audio_samples)
    return {"jpegs": jpegs, "window": window, "flip_seed": flip_seed,
            "jitter": factors, "jitter_order": order, "waveform": waveform,
            "gain_seed": seeds[3],
            "index": tf.cast(example["index"], tf.int32),
            "label": tf.cast(example["label"], tf.int32)}

  def decode(self, parts):
    """Decodes only the crop window of the clip's JPEG frames."""
    parts = dict(parts)
    parts["frames"] = video_ops.decode_jpeg_frames(parts.pop("jpegs"),
                                                   parts.pop("window"))
    return parts

  def resize(self, parts):
    """Flip and resize to the crop size, uint8."""
    parts = dict(parts)
    parts["frames"] = video_ops.resize_clip(
        parts["frames"], parts.pop("flip_seed"), self.clip.crop_size,
        self.augment.flip_probability, self.augment.antialias)
    return parts

  def jitter(self, parts):
    """Scaling to [0, 1] and colour jitter, on planes."""
    parts = dict(parts)
    augment = self.augment
    parts["frames"] = video_ops.jitter_clip(
        parts["frames"], parts.pop("jitter"), parts.pop("jitter_order"),
        video_ops.jitter_enabled(augment.brightness, augment.contrast,
                                 augment.saturation, augment.hue))
    return parts

  def normalise(self, parts):
    """ImageNet normalisation of the planes into float32 [T, H, W, 3]."""
    parts = dict(parts)
    parts["frames"] = video_ops.normalize_imagenet(parts["frames"])
    return parts

  def spectrogram(self, parts):
    """Gain jitter, log-spectrogram and its normalisation."""
    parts = dict(parts)
    waveform = audio_ops.random_gain(parts.pop("waveform"),
                                     parts.pop("gain_seed"),
                                     *self.augment.gain_range)
    parts["audio"] = self.clip.spectrogram(waveform)
    return parts

  def phases(self):
    """(name, phase) after `sample`, in order, for this video dtype."""
    phases = [("jpeg_decode", self.decode), ("crop_and_resize", self.resize)]
    if self.video_dtype == "float32":
      phases += [("colour_jitter", self.jitter),
                 ("normalisation", self.normalise)]
    return phases + [("spectrogram", self.spectrogram)]

  def element(self, parts):
    """The batch element made of the last phase's parts."""
    element = {"video": parts["frames"], "audio": parts["audio"],
               "index": parts["index"], "label": parts["label"]}
    if self.video_dtype == "uint8":
      element[VIDEO_JITTER] = parts["jitter"]
      element[VIDEO_JITTER_ORDER] = parts["jitter_order"]
    return element

  def example(self, serialized, round_index):
    """Every phase of one clip: the map function of the training stream."""
    parts = self.sample(serialized, round_index)
    for _, phase in self.phases():
      parts = phase(parts)
    return self.element(parts)


def finish_video(batch):
  """Turns a uint8 training batch into the float32 batch contract.

  Called first thing in the model's training step, so that the colour
  jitter and normalisation run on the accelerator; a float32 batch is
  returned unchanged.

  Args:
    batch: a dict of `make_train_dataset`.

  Returns:
    The batch with float32 normalised "video" and without the jitter keys.
  """
  if batch["video"].dtype != tf.uint8:
    return batch
  batch = dict(batch)
  batch["video"] = video_ops.finish_batch(
      batch["video"], batch.pop(VIDEO_JITTER), batch.pop(VIDEO_JITTER_ORDER))
  return batch


def _eval_example(serialized, clip, num_clips):
  """`num_clips` aligned clips uniformly spaced over one whole video."""
  example = schema.parse_example(serialized)
  with tf.control_dependencies([_check_not_empty(example)]):
    num_stored, video_len, audio_len = clip.lengths(example)
  video_starts, audio_starts = video_ops.uniform_clip_offsets(
      num_clips, video_len, audio_len, clip.video_seconds, clip.audio_seconds)
  indices = video_ops.frame_indices(video_starts, clip.num_frames,
                                    clip.frame_rate, clip.stored_fps,
                                    num_stored)
  jpegs = tf.gather(example["frames"], tf.reshape(indices, [-1]))
  jpegs.set_shape([num_clips * clip.num_frames])
  frames = video_ops.decode_jpeg_frames(jpegs)
  frames = video_ops.eval_resize_and_center_crop(frames, clip.crop_size)
  video = video_ops.scale_and_normalize(frames)
  video = tf.reshape(video, [num_clips, clip.num_frames, clip.crop_size,
                             clip.crop_size, 3])

  start_samples = tf.cast(tf.round(audio_starts * clip.sample_rate), tf.int32)
  waveforms = tf.stack([
      audio_ops.crop_waveform(example["audio"], start_samples[c],
                              clip.audio_samples) for c in range(num_clips)])
  return {
      "video": video,
      "audio": clip.spectrogram(waveforms),
      "index": tf.cast(example["index"], tf.int32),
      "label": tf.cast(example["label"], tf.int32),
  }


def deterministic_options():
  """Options of every finite or infinite stream here: a fixed element order."""
  options = tf.data.Options()
  options.deterministic = True
  options.experimental_optimization.map_parallelization = True
  return options


# ---------------------------------------------------------------------------
# Builders.
# ---------------------------------------------------------------------------


def _exact_epochs(plan, split_info, batch_size, clips_per_video,
                  num_pipelines, elements_per_step, start_step):
  """The visit stream cut into epochs that each start on a round boundary."""
  epoch_steps = _steps_per_epoch(split_info, batch_size, clips_per_video,
                                 num_pipelines)
  kept = epoch_steps * elements_per_step
  span = int(clips_per_video) * plan.num_owned
  epoch, step_in_epoch = divmod(start_step, epoch_steps)
  first = epoch * span + step_in_epoch * elements_per_step
  positions = tf.data.Dataset.counter(first)
  visits = tf.data.Dataset.zip(positions, plan.dataset(first))
  visits = visits.filter(_plain(
      lambda position, visit: position % span < kept))
  return visits.map(_plain(lambda position, visit: visit))


def train_clip_phases(dataset, preprocessing=None, seed=0,
                      augmentation=None, video_dtype="float32"):
  """The `TrainClipPhases` of `make_train_dataset` with these arguments."""
  dataset = schema.as_dataset_info(dataset)
  if preprocessing is None:
    preprocessing = preprocessing_lib.clip_preprocessing(dataset)
  return TrainClipPhases(
      _ClipConfig(dataset, preprocessing), seed,
      augmentation or augmentation_lib.clip_augmentation(), video_dtype)


def _split_and_geometry(dataset, split, preprocessing):
  """Resolves the dataset description, a non-empty split and the geometry."""
  dataset = schema.as_dataset_info(dataset)
  split_info = dataset.split(split)
  if split_info.num_examples == 0:
    raise errors.InvalidValueError(
        f"Split '{split}' of {dataset.directory} is empty.")
  if preprocessing is None:
    preprocessing = preprocessing_lib.clip_preprocessing(dataset)
  return dataset, split_info, _ClipConfig(dataset, preprocessing)


@gin.configurable
def make_train_dataset(dataset, batch_size, preprocessing=None, split="train",
                       seed=0, start_step=0, clips_per_video=None,
                       input_context=None, augmentation=None,
                       shuffle_window_bytes=512 * 2**20,
                       shards_per_group=None, num_parallel_calls=AUTOTUNE,
                       video_dtype="float32"):
  """Infinite, deterministic pretraining dataset (see the module docstring).

  Args:
    dataset: dataset folder (`<output_dir>/<name>/1.0.0`) or
      `schema.DatasetInfo`.
    batch_size: global batch size; with `input_context` each pipeline yields
      the per-replica batch size.
    preprocessing: the clip geometry (`preprocessing.Preprocessing`); None
      takes `preprocessing.clip_preprocessing(dataset)`.
    split: split to read.
    seed: seed of the visit order and of every augmentation.
    start_step: global steps already consumed; the stream starts where an
      uninterrupted stream with the same seed would be after them.
    clips_per_video: visits of each video per epoch. When set, the stream is
      cut into exact epochs: epoch e is the first `steps_per_epoch` whole
      batches of visit rounds e*c .. (e+1)*c - 1, and the visits left over
      after them are skipped, so every epoch starts on a round boundary.
      None streams the rounds back to back.
    input_context: optional `tf.distribute.InputContext` (multi-worker): this
      pipeline's share of the videos and the per-replica batch size.
    augmentation: the `augmentation.ClipAugmentation` of every clip; None
      takes `augmentation.clip_augmentation()` as gin configures it.
    shuffle_window_bytes: approximate bytes of records held in memory for
      shuffling (one group of shard files).
    shards_per_group: overrides `shuffle_window_bytes` with a file count.
    num_parallel_calls: parallelism of the per-clip map; does not change the
      output.
    video_dtype: "float32", the batch contract; or "uint8": frames resized
      but not yet scaled, jittered or normalised, with each clip's colour
      jitter parameters, for `finish_video` to complete inside the model's
      step (on the accelerator, a quarter of the bytes per batch and none of
      the per-pixel float work on the host). Both give the same batches
      after `finish_video`, within float32 rounding.

  Returns:
    `tf.data.Dataset` of dicts: video float32 [B, T, H, W, 3], audio float32
    [B, audio_seconds * 100, 257, 1], index int32 [B], label int32 [B];
    with uint8 video also video_jitter float32 [B, 4] and
    video_jitter_order int32 [B, 4].

  Raises:
    FileNotFoundError: if `dataset` names a folder that holds no dataset.
    ValueError: for a missing split, metadata or an empty shard of videos.
  """
  dataset, split_info, _ = _split_and_geometry(dataset, split,
                                               preprocessing)
  num_pipelines, pipeline_id = _pipeline_shard(input_context)
  local_batch, elements_per_step = _per_pipeline_batch(batch_size,
                                                       input_context)
  plan = _VisitPlan(split_info, seed, num_pipelines, pipeline_id,
                    shuffle_window_bytes, shards_per_group)
  phases = train_clip_phases(dataset, preprocessing, seed, augmentation,
                             video_dtype)
  if clips_per_video is None:
    visits = plan.dataset(int(start_step) * elements_per_step)
  else:
    visits = _exact_epochs(plan, split_info, batch_size, clips_per_video,
                           num_pipelines, elements_per_step, int(start_step))
  dataset = visits.map(
      _plain(phases.example), num_parallel_calls=num_parallel_calls,
      deterministic=True)
  dataset = dataset.batch(local_batch, drop_remainder=True)
  dataset = dataset.apply(tf.data.experimental.assert_cardinality(
      tf.data.INFINITE_CARDINALITY))
  dataset = dataset.prefetch(AUTOTUNE)
  return dataset.with_options(deterministic_options())


def make_eval_dataset(dataset, split, batch_size, preprocessing=None,
                      num_clips=10, input_context=None,
                      num_parallel_calls=AUTOTUNE):
  """Finite multi-clip evaluation dataset over one split, in file order.

  Each video gives `num_clips` clips uniformly spaced over the whole video,
  audio and video clips centred on the same times; frames are resized to
  short side crop_size / 0.875 and centre-cropped.

  Args:
    dataset: dataset folder (`<output_dir>/<name>/1.0.0`) or
      `schema.DatasetInfo`.
    split: split to read.
    batch_size: global batch size (per-replica with `input_context`).
    preprocessing: the clip geometry, normally the pretraining run's record
      (`preprocessing.Preprocessing.read(model_dir)`); None takes
      `preprocessing.clip_preprocessing(dataset)`.
    num_clips: clips per video.
    input_context: optional `tf.distribute.InputContext`; pipelines read
      disjoint records.
    num_parallel_calls: parallelism of the per-video map.

  Returns:
    `tf.data.Dataset` of dicts: video float32 [B, clips, T, H, W, 3], audio
    float32 [B, clips, audio_seconds * 100, 257, 1], index int32 [B], label
    int32 [B]; the last batch may be smaller.
  """
  _, split_info, clip = _split_and_geometry(dataset, split, preprocessing)
  num_pipelines, pipeline_id = _pipeline_shard(input_context)
  local_batch, _ = _per_pipeline_batch(batch_size, input_context)
  dataset = tf.data.TFRecordDataset(split_info.paths)
  if num_pipelines > 1:
    dataset = dataset.shard(num_pipelines, pipeline_id)
  num_videos = len(range(pipeline_id, split_info.num_examples, num_pipelines))
  dataset = dataset.apply(tf.data.experimental.assert_cardinality(num_videos))
  dataset = dataset.map(
      _plain(lambda record: _eval_example(record, clip, int(num_clips))),
      num_parallel_calls=num_parallel_calls, deterministic=True)
  dataset = dataset.batch(local_batch, drop_remainder=False)
  return dataset.prefetch(AUTOTUNE).with_options(deterministic_options())
