"""Extracts frozen features of evaluation datasets.

`extract_features` returns clip-averaged outputs of any clip functions in
memory; `extract_to_shards` writes a model's named features (pooled,
embedding or per-stage, video and/or audio) of a dataset split to
resumable .npy shards, and `load_features` reads them back.
"""

import json
import os

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from avid_tf import errors
from avid_tf import runs
from avid_tf.data import pipeline
from avid_tf.data import schema
from avid_tf.models import layers as model_layers
from avid_tf.utils import files
from avid_tf.utils import settings_record


def _clip_averaged(fn, clips):
  """Runs `fn` on [B, clips, ...] inputs; averages each output over clips."""
  shape = tf.shape(clips)
  flat = tf.reshape(clips, tf.concat([[-1], shape[2:]], axis=0))
  outputs = fn(flat)
  return {name: tf.reduce_mean(
      tf.reshape(tf.cast(value, tf.float32), [shape[0], shape[1], -1]),
      axis=1) for name, value in outputs.items()}


def extract_features(dataset, extractors, progress=True):
  """Runs feature extractors over a multi-clip evaluation dataset.

  Args:
    dataset: finite `tf.data.Dataset` of dicts with "video" [B, clips, T, H,
      W, 3] and/or "audio" [B, clips, time, freq, 1], plus "label" and
      "index" [B].
    extractors: dict input key ("video" or "audio") -> function mapping a
      batch of single clips to a dict of named [clips, D] outputs. Each
      output is averaged over the clips of each video.
    progress: show a progress bar.

  Returns:
    Dict with one float32 array [N, D] per named output and int arrays
    "label" and "index" [N].
  """
  steps = {key: tf.function(lambda x, fn=fn: _clip_averaged(fn, x),
                            reduce_retracing=True)
           for key, fn in extractors.items()}
  collected = {}
  for batch in tqdm(dataset, desc="features", disable=not progress,
                    leave=False):
    for key, step in steps.items():
      for name, value in step(batch[key]).items():
        collected.setdefault(name, []).append(value.numpy())
    collected.setdefault("label", []).append(batch["label"].numpy())
    collected.setdefault("index", []).append(batch["index"].numpy())
  return {name: np.concatenate(values) for name, values in collected.items()}


# ---------------------------------------------------------------------------
# Named features of a model, written to resumable shards.
# ---------------------------------------------------------------------------

MODALITIES = ("video", "audio")
STAGE_NAMES = ("conv1", "conv2x", "conv3x", "conv4x", "conv5x")
# "pool": the encoder output (global max-pooled conv5x); "embedding": the
# projection head's L2-normalised output; stage names: the stage's map.
FEATURE_NAMES = ("pool", "embedding") + STAGE_NAMES
SPATIAL_POOLS = ("max", "none")
MANIFEST_FILE = "manifest.json"
INDEX_FILE = "index.npz"


def load_model(model_dir, random_init=False, seed=runs.RANDOM_INIT_SEED,
               num_data=None):
  """The model of a run folder and the settings that identify its weights.

  Args:
    model_dir: a training (or converted) run folder.
    random_init: build the run's architecture with fresh weights instead.
    seed: seed of the fresh weights.
    num_data: memory-bank rows of a fresh model (default: the run's; the
      banks take no part in features).

  Returns:
    (model, settings): the `AVModel` and a JSON-able dict naming its
    weights (run folder, checkpoint or random seed).
  """
  model_dir = files.abspath(model_dir)
  run = runs.open_run(model_dir)
  if random_init:
    model = run.random_init_model(num_data, seed=seed)
    return model, {"model_dir": model_dir, "checkpoint": None,
                   "random_init_seed": int(seed)}
  checkpoint = run.checkpoint()
  model = run.model(checkpoint)
  return model, {"model_dir": model_dir,
                 "checkpoint": files.abspath(checkpoint),
                 "random_init_seed": None}


def check_feature_names(names):
  """Returns `names` as a tuple, raising a UserError for unknown ones."""
  names = tuple(names)
  unknown = [name for name in names if name not in FEATURE_NAMES]
  if unknown or not names:
    raise errors.UserError(f"Unknown features {unknown or names}; choose "
                           f"from {', '.join(FEATURE_NAMES)}.")
  return names


def clip_feature_fn(model, modality, names, spatial_pool="max"):
  """A function from a batch of single clips to their named features.

  Args:
    model: an `AVModel`.
    modality: "video" or "audio".
    names: entries of FEATURE_NAMES.
    spatial_pool: for stage maps, "max" (global max over every axis but the
      channels: [clips, C]) or "none" (the whole map).

  Returns:
    fn(clips) -> {f"{modality}_{name}": float32 [clips, ...]}, in inference
    mode (BN moving statistics).
  """
  if modality not in MODALITIES:
    raise errors.UserError(f"Unknown modality '{modality}'; choose from "
                           f"{', '.join(MODALITIES)}.")
  if spatial_pool not in SPATIAL_POOLS:
    raise errors.UserError(f"Unknown spatial pool '{spatial_pool}'; choose "
                           f"from {', '.join(SPATIAL_POOLS)}.")
  names = check_feature_names(names)
  encoder = getattr(model, f"{modality}_encoder")
  head = getattr(model, f"{modality}_head")
  needs_stages = any(name in STAGE_NAMES for name in names)
  if needs_stages and not hasattr(encoder, "stage_outputs"):
    raise errors.UserError(f"The {modality} encoder ({type(encoder).__name__})"
                           " has no per-stage outputs; ask for pool or "
                           "embedding features.")

  def fn(clips):
    if needs_stages:
      outputs = dict(encoder.stage_outputs(clips, training=False))
    else:
      outputs = {"pool": encoder(clips, training=False)}
    result = {}
    for name in names:
      if name == "embedding":
        value = head(outputs["pool"], training=False)
      else:
        value = outputs[name]
        if name in STAGE_NAMES and spatial_pool == "max":
          value = model_layers.global_max_pool(value)
      result[f"{modality}_{name}"] = tf.cast(value, tf.float32)
    return result
  return fn


def _multi_clip(fn, clips, average_clips):
  """Runs `fn` on [B, clips, ...]; outputs [B, clips, ...] or clip means."""
  shape = tf.shape(clips)
  flat = tf.reshape(clips, tf.concat([[-1], shape[2:]], axis=0))
  outputs = {}
  for name, value in fn(flat).items():
    value = tf.reshape(value, tf.concat([shape[:2], tf.shape(value)[1:]], 0))
    outputs[name] = tf.reduce_mean(value, axis=1) if average_clips else value
  return outputs


def feature_batches(model, dataset, modalities, names, spatial_pool="max",
                    average_clips=True):
  """Yields (batch, {feature: array}) over a multi-clip evaluation dataset.

  Args:
    model: an `AVModel`.
    dataset: finite `tf.data.Dataset` of `pipeline.make_eval_dataset`
      batches.
    modalities: entries of MODALITIES.
    names: entries of FEATURE_NAMES, extracted for every modality.
    spatial_pool: see `clip_feature_fn`.
    average_clips: average every feature over the clips of a video ([B,
      ...]) instead of keeping them ([B, clips, ...]).

  Yields:
    The NumPy batch ("label", "index") and the float32 features
    "<modality>_<name>".
  """
  steps = {}
  for modality in modalities:
    fn = clip_feature_fn(model, modality, names, spatial_pool)
    steps[modality] = tf.function(
        lambda clips, fn=fn: _multi_clip(fn, clips, average_clips),
        reduce_retracing=True)
  for batch in dataset:
    values = {}
    for modality, step in steps.items():
      values.update({name: value.numpy()
                     for name, value in step(batch[modality]).items()})
    yield {"label": batch["label"].numpy(),
           "index": batch["index"].numpy()}, values


def extract_arrays(model, dataset, split, preprocessing,
                   modalities=MODALITIES, names=("pool", "embedding"),
                   num_clips=10, batch_size=8, progress=True):
  """Clip-averaged named features of a split, in memory.

  Args:
    model: an `AVModel`.
    dataset: the `schema.DatasetInfo` or its folder.
    split: split to extract.
    preprocessing: the clip geometry (the run's `Preprocessing`).
    modalities: entries of MODALITIES.
    names: entries of FEATURE_NAMES (stage maps global max-pooled).
    num_clips: clips per video, uniformly spaced, averaged.
    batch_size: videos per model batch.
    progress: show a progress bar.

  Returns:
    Dict: float32 [N, D] per "<modality>_<name>", and int32 "label" and
    "index" [N], in file order.
  """
  batches = pipeline.make_eval_dataset(dataset, split, batch_size,
                                       preprocessing=preprocessing,
                                       num_clips=num_clips)
  collected = {}
  for batch, values in tqdm(feature_batches(model, batches, modalities, names),
                            desc=f"features {split}", unit="batch",
                            disable=not progress):
    values.update(batch)
    for name, value in values.items():
      collected.setdefault(name, []).append(value)
  return {name: np.concatenate(values) for name, values in collected.items()}


def read_split_index(dataset, split):
  """Video ids, labels and indices of a split's examples, in file order.

  Reads only these fields of the records (no frame decoding).

  Returns:
    {"video_id": str [N], "label": int64 [N] (-1 unknown), "index": int64
    [N] (the memory-bank row for the train split)}.
  """
  split_info = schema.as_dataset_info(dataset).split(split)
  spec = {"video_id": tf.io.FixedLenFeature([], tf.string),
          "label": tf.io.FixedLenFeature([], tf.int64),
          "index": tf.io.FixedLenFeature([], tf.int64)}
  records = tf.data.TFRecordDataset(split_info.paths).batch(4096).map(
      lambda serialized: tf.io.parse_example(serialized, spec))
  columns = {key: [] for key in spec}
  for batch in records:
    for key in spec:
      columns[key].append(batch[key].numpy())
  return {
      "video_id": np.array([v.decode("utf-8") for v in np.concatenate(
          columns["video_id"])] if columns["video_id"] else [], dtype=str),
      "label": (np.concatenate(columns["label"]) if columns["label"]
                else np.zeros([0], np.int64)),
      "index": (np.concatenate(columns["index"]) if columns["index"]
                else np.zeros([0], np.int64)),
  }


def _range_dataset(dataset, split, preprocessing, start, stop, batch_size,
                   num_clips):
  """The evaluation batches of videos [start, stop) of a split.

  Only the record files holding those videos are read.
  """
  split_info = dataset.split(split)
  bounds = np.cumsum((0,) + tuple(split_info.lengths))
  first = int(np.searchsorted(bounds, start, side="right")) - 1
  last = int(np.searchsorted(bounds, stop, side="left"))
  lengths = tuple(split_info.lengths[first:last])
  subset = schema.DatasetInfo(
      dataset.directory, dataset.name,
      {split: schema.SplitInfo(name=split, paths=split_info.paths[first:last],
                               lengths=lengths,
                               num_bytes=split_info.num_bytes,
                               num_examples=int(sum(lengths)))},
      dataset.metadata, {})
  batches = pipeline.make_eval_dataset(subset, split, batch_size,
                                       preprocessing=preprocessing,
                                       num_clips=num_clips)
  return batches.unbatch().skip(start - int(bounds[first])).take(
      stop - start).batch(batch_size)


def shard_file(name, shard, num_shards):
  """File name of one feature's shard."""
  return f"{name}-{shard:05d}-of-{num_shards:05d}.npy"


def _feature_names(settings):
  return [f"{modality}_{name}" for modality in settings["modalities"]
          for name in settings["features"]]


def _read_manifest(output_dir):
  path = os.path.join(output_dir, MANIFEST_FILE)
  if not files.isfile(path):
    return None
  with files.open_file(path, encoding="utf-8") as f:
    return json.load(f)


def _shard_done(output_dir, manifest, shard):
  return shard in manifest["finished_shards"] and all(
      files.isfile(os.path.join(output_dir, shard_file(
          name, shard, manifest["num_shards"])))
      for name in _feature_names(manifest["settings"]))


def extract_to_shards(model, dataset, split, preprocessing, output_dir,
                      modalities=MODALITIES, names=("pool", "embedding"),
                      num_clips=10, average_clips=True, spatial_pool="max",
                      shard_size=1024, batch_size=8, settings=None,
                      progress=True):
  """Extracts features of a split to .npy shards; resumes an earlier run.

  `output_dir` receives index.npz (video_id, label, index per video, in
  file order), one "<modality>_<name>-SSSSS-of-NNNNN.npy" file per feature
  and shard (videos [S * shard_size, (S + 1) * shard_size)) and
  manifest.json (the settings, the shards finished, each feature's shape).
  Every file is written atomically and the manifest after each shard, so
  an interrupted run loses at most one shard; a rerun computes only the
  shards missing (listed as unfinished, or with a file deleted).

  Args:
    model: an `AVModel`.
    dataset: the `schema.DatasetInfo` or its folder.
    split: split to extract.
    preprocessing: the clip geometry (the run's `Preprocessing`).
    output_dir: destination folder.
    modalities: entries of MODALITIES.
    names: entries of FEATURE_NAMES.
    num_clips: clips per video, uniformly spaced over the whole video.
    average_clips: store clip means [N, ...] instead of [N, clips, ...].
    spatial_pool: stage maps: "max" (global max) or "none".
    shard_size: videos per shard.
    batch_size: videos per model batch.
    settings: extra JSON-able settings recorded in the manifest (the
      model's identity, see `load_model`); part of the resume check.
    progress: show a progress bar.

  Returns:
    The manifest dict.

  Raises:
    errors.UserError: bad settings, or `output_dir` holds features made
      with other settings.
  """
  dataset = schema.as_dataset_info(dataset)
  modalities = tuple(modalities)
  for modality in modalities:
    if modality not in MODALITIES:
      raise errors.UserError(f"Unknown modality '{modality}'; choose from "
                             f"{', '.join(MODALITIES)}.")
  names = check_feature_names(names)
  if shard_size < 1 or num_clips < 1 or batch_size < 1:
    raise errors.UserError("shard_size, num_clips and batch_size must be "
                           ">= 1.")
  if spatial_pool not in SPATIAL_POOLS:
    raise errors.UserError(f"Unknown spatial pool '{spatial_pool}'; choose "
                           f"from {', '.join(SPATIAL_POOLS)}.")
  num_videos = dataset.num_examples(split)
  full_settings = dict(settings or {})
  full_settings.update({
      "dataset_dir": files.abspath(dataset.directory), "split": split,
      "num_videos": int(num_videos), "modalities": list(modalities),
      "features": list(names), "num_clips": int(num_clips),
      "average_clips": bool(average_clips), "spatial_pool": spatial_pool,
      "shard_size": int(shard_size),
      "preprocessing": preprocessing.to_dict()})
  full_settings = settings_record.normalized(full_settings)
  files.makedirs(output_dir)
  manifest, index = _start_or_resume(output_dir, dataset, split,
                                     full_settings)
  todo = [shard for shard in range(manifest["num_shards"])
          if not _shard_done(output_dir, manifest, shard)]
  bar = tqdm(total=sum(min(shard_size, num_videos - s * shard_size)
                       for s in todo),
             desc=f"features {split}", unit="video", disable=not progress)
  for shard in todo:
    start, stop = shard * shard_size, min((shard + 1) * shard_size,
                                          num_videos)
    batches = _range_dataset(dataset, split, preprocessing, start, stop,
                             batch_size, num_clips)
    collected = _collect(feature_batches(model, batches, modalities, names,
                                         spatial_pool, average_clips),
                         index["index"][start:stop], shard, bar)
    _write_shard(output_dir, manifest, shard, collected)
  bar.close()
  return manifest


def _start_or_resume(output_dir, dataset, split, settings):
  """The manifest and index of `output_dir`: read back (after checking the
  settings are the same) or started, and written."""
  manifest = _read_manifest(output_dir)
  if manifest is not None:
    settings_record.check_same(manifest["settings"], settings, output_dir,
                               "features")
  else:
    manifest = {"settings": settings,
                "num_shards": -(-settings["num_videos"] //
                                settings["shard_size"]),
                "finished_shards": [], "shapes": {}}
  index_path = os.path.join(output_dir, INDEX_FILE)
  if files.isfile(index_path):
    with np.load(files.open_file(index_path, "rb")) as stored:
      index = {key: stored[key] for key in stored.files}
  else:
    index = read_split_index(dataset, split)
    with files.atomic_path(index_path, local=True) as tmp_path:
      np.savez(tmp_path, **index)
  files.write_json(os.path.join(output_dir, MANIFEST_FILE), manifest)
  return manifest, index


def _collect(batches, expected_indices, shard, bar):
  """{feature: float32 array} of one shard's `feature_batches`, checked to
  hold the shard's videos in record order."""
  collected = {}
  indices = []
  for batch, values in batches:
    indices.append(batch["index"])
    for name, value in values.items():
      collected.setdefault(name, []).append(value)
    bar.update(len(batch["index"]))
  if not np.array_equal(np.concatenate(indices), expected_indices):
    raise RuntimeError(f"Shard {shard}: the evaluation pipeline's videos "
                       "are not in the order of the split's records.")
  return {name: np.concatenate(values).astype(np.float32)
          for name, values in collected.items()}


def _write_shard(output_dir, manifest, shard, collected):
  """Writes a shard's feature files, then records it in the manifest."""
  for name, array in collected.items():
    path = os.path.join(output_dir, shard_file(name, shard,
                                               manifest["num_shards"]))
    with files.atomic_path(path, local=True) as tmp_path:
      np.save(tmp_path, array)
    manifest["shapes"][name] = list(array.shape[1:])
  manifest["finished_shards"] = sorted(set(manifest["finished_shards"])
                                       | {shard})
  files.write_json(os.path.join(output_dir, MANIFEST_FILE), manifest)


def load_features(features_dir, names=None):
  """Reads the shards and index an `extract_to_shards` run wrote.

  Args:
    features_dir: its output folder.
    names: features to read ("video_pool", ...); default all of them.

  Returns:
    Dict: each feature as one float32 array [N, ...] (in index order) and
    the index columns "video_id", "label", "index"; plus "settings", the
    manifest's settings.

  Raises:
    errors.UserError: no finished extraction in `features_dir`, or an
      unknown feature name.
  """
  manifest = _read_manifest(features_dir)
  if manifest is None:
    raise errors.UserError(f"{features_dir} holds no {MANIFEST_FILE}: is it "
                           "the --output_dir of extract_features.py?")
  available = _feature_names(manifest["settings"])
  names = available if names is None else list(names)
  unknown = [name for name in names if name not in available]
  if unknown:
    raise errors.UserError(f"{features_dir} holds no features {unknown}; it "
                           f"has {', '.join(available)}.")
  missing = [shard for shard in range(manifest["num_shards"])
             if not _shard_done(features_dir, manifest, shard)]
  if missing:
    raise errors.UserError(f"{features_dir}: shards {missing} are not "
                           "extracted yet; rerun extract_features.py with "
                           "the same flags to finish.")
  with np.load(files.open_file(os.path.join(features_dir, INDEX_FILE),
                               "rb")) as index:
    result = {key: index[key] for key in index.files}
  for name in names:
    result[name] = np.concatenate([
        np.load(files.open_file(os.path.join(features_dir, shard_file(
            name, shard, manifest["num_shards"])), "rb"))
        for shard in range(manifest["num_shards"])])
  result["settings"] = manifest["settings"]
  return result
