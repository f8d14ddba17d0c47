"""End-to-end tests of feature extraction to shards and the retrieval script.

A tiny run (2 steps of gin/tests/tiny.gin) and the tiny dataset with its 8
val videos split over two record files (3 + 5), so that feature shards of 3
videos straddle record files.
"""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from avid_tf import errors
from avid_tf import runs
from avid_tf.data import pipeline
from avid_tf.data import preprocessing as preprocessing_lib
from avid_tf.data import schema
from avid_tf.eval import features
from avid_tf.eval import frozen_evaluation
from avid_tf.eval import retrieval
from conftest import run_script

NUM_VAL = 8
NUM_CLIPS = 2


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory, tiny_dataset_dir):
  """The tiny dataset with its val split rewritten as 3 + 5 records."""
  source = schema.DatasetInfo.load(tiny_dataset_dir)
  directory = schema.dataset_dir(str(tmp_path_factory.mktemp("split")),
                                 source.name)
  os.makedirs(directory)
  train = source.split("train")
  shutil.copy(train.paths[0], schema.shard_path(directory, source.name,
                                                "train", 0, 1))
  records = [r.numpy() for r in tf.data.TFRecordDataset(
      source.split("val").paths)]
  for shard, part in enumerate((records[:3], records[3:])):
    schema.write_shard(schema.shard_path(directory, source.name, "val",
                                         shard, 2), part)
  columns = {split: {"label": source.instance_column(split, "label")}
             for split in ("train", "val")}
  schema.write_dataset_info(directory, source.name,
                            {"train": [train.num_examples], "val": [3, 5]},
                            source.metadata, instance_columns=columns)
  return directory


def _script(name, *args, check=True):
  return run_script(name, *args, check=check)


def _direct_features(model, dataset_dir, preprocessing):
  """Clip-averaged pool, embedding and max-pooled conv3x by direct calls."""
  batch = next(iter(pipeline.make_eval_dataset(
      dataset_dir, "val", NUM_VAL, preprocessing=preprocessing,
      num_clips=NUM_CLIPS)))
  result = {}
  for modality in ("video", "audio"):
    clips = batch[modality].numpy()
    flat = clips.reshape((-1,) + clips.shape[2:])
    encoder = getattr(model, f"{modality}_encoder")
    pool = encoder(flat, training=False)
    embedding = getattr(model, f"{modality}_head")(pool, training=False)
    conv3x = encoder.stage_outputs(flat, training=False)["conv3x"]
    conv3x = np.max(conv3x, axis=tuple(range(1, conv3x.ndim - 1)))
    for name, value in (("pool", pool), ("embedding", embedding),
                        ("conv3x", conv3x)):
      value = np.asarray(value, np.float64).reshape(
          (NUM_VAL, NUM_CLIPS) + tuple(value.shape[1:]))
      result[f"{modality}_{name}"] = value.mean(axis=1)
  return result


@pytest.fixture(scope="module")
def extracted(tiny_run_dir, dataset_dir, tmp_path_factory):
  output_dir = str(tmp_path_factory.mktemp("features"))
  result = _script(
      "extract_features.py", f"--model_dir={tiny_run_dir}",
      f"--dataset_dir={dataset_dir}", "--split=val", "--modality=both",
      "--features=pool,embedding,conv3x", f"--num_clips={NUM_CLIPS}",
      "--shard_size=3", "--batch_size=2", f"--output_dir={output_dir}")
  return output_dir, json.loads(result.stdout.strip().splitlines()[-1])


def test_shards_index_and_manifest(extracted, tiny_run_dir):
  output_dir, printed = extracted
  assert printed["num_shards"] == 3 and printed["num_videos"] == NUM_VAL
  names = sorted(f"{m}_{f}" for m in ("video", "audio")
                 for f in ("pool", "embedding", "conv3x"))
  expected_files = {features.shard_file(name, shard, 3)
                    for name in names for shard in range(3)}
  expected_files |= {features.INDEX_FILE, features.MANIFEST_FILE}
  assert set(os.listdir(output_dir)) == expected_files
  shard = np.load(os.path.join(output_dir,
                               features.shard_file("video_pool", 2, 3)))
  assert shard.dtype == np.float32 and shard.shape[0] == 2  # 8 = 3 + 3 + 2.
  loaded = features.load_features(output_dir)
  np.testing.assert_array_equal(loaded["video_id"],
                                [f"val/{i}.mp4" for i in range(NUM_VAL)])
  np.testing.assert_array_equal(loaded["label"], np.arange(NUM_VAL) % 4)
  np.testing.assert_array_equal(loaded["index"], np.arange(NUM_VAL))
  model = runs.open_run(tiny_run_dir).model()
  assert loaded["video_pool"].shape == (NUM_VAL,
                                        model.video_encoder.feature_dim)
  assert loaded["audio_embedding"].shape == (NUM_VAL, 16)
  assert loaded["audio_conv3x"].shape[1] < model.audio_encoder.feature_dim
  for name in names:
    assert loaded[name].dtype == np.float32
  settings = loaded["settings"]
  assert settings["model_dir"] == os.path.abspath(tiny_run_dir)
  assert settings["checkpoint"].startswith(os.path.abspath(tiny_run_dir))
  assert settings["num_clips"] == NUM_CLIPS and settings["shard_size"] == 3


def test_features_equal_a_direct_model_call(extracted, tiny_run_dir, dataset_dir):
  output_dir, _ = extracted
  loaded = features.load_features(output_dir)
  model = runs.open_run(tiny_run_dir).model()
  preprocessing = preprocessing_lib.Preprocessing.read(tiny_run_dir)
  expected = _direct_features(model, dataset_dir, preprocessing)
  for name, value in expected.items():
    np.testing.assert_allclose(loaded[name], value, rtol=1e-4, atol=1e-5,
                               err_msg=name)


def test_rerun_rewrites_only_a_deleted_shard(extracted, tiny_run_dir, dataset_dir,
                                             tmp_path):
  source, _ = extracted
  output_dir = str(tmp_path / "copy")
  shutil.copytree(source, output_dir)
  manifest = json.load(open(os.path.join(source, features.MANIFEST_FILE)))
  # The copy's settings name the same run and dataset: a resume of it.
  deleted = os.path.join(output_dir, features.shard_file("audio_pool", 1, 3))
  original = np.load(deleted)
  os.remove(deleted)
  stamps = {name: os.stat(os.path.join(output_dir, name)).st_mtime_ns
            for name in os.listdir(output_dir) if name.endswith(".npy")}
  model, identity = features.load_model(tiny_run_dir)
  assert identity["checkpoint"] == manifest["settings"]["checkpoint"]
  preprocessing = preprocessing_lib.Preprocessing.read(tiny_run_dir)
  kwargs = dict(modalities=("video", "audio"),
                names=("pool", "embedding", "conv3x"), num_clips=NUM_CLIPS,
                shard_size=3, batch_size=2, settings=identity, progress=False)
  features.extract_to_shards(model, dataset_dir, "val", preprocessing,
                             output_dir, **kwargs)
  for name, stamp in stamps.items():
    shard = int(name.split("-")[1])
    now = os.stat(os.path.join(output_dir, name)).st_mtime_ns
    assert (now != stamp) == (shard == 1), name
  np.testing.assert_allclose(np.load(deleted), original, rtol=1e-5, atol=1e-6)

  kwargs["num_clips"] = 3
  with pytest.raises(errors.UserError,
                     match=r"other settings \(num_clips 2 there, 3 now\)"):
    features.extract_to_shards(model, dataset_dir, "val", preprocessing,
                               output_dir, **kwargs)


def test_settings_mismatch_is_a_one_line_script_error(extracted, tiny_run_dir,
                                                      dataset_dir):
  output_dir, _ = extracted
  result = _script(
      "extract_features.py", f"--model_dir={tiny_run_dir}",
      f"--dataset_dir={dataset_dir}", "--split=val", "--modality=both",
      "--features=pool,embedding,conv3x", f"--num_clips={NUM_CLIPS}",
      "--shard_size=4", f"--output_dir={output_dir}", check=False)
  assert result.returncode == 1
  assert "Traceback" not in result.stderr
  last_line = result.stderr.strip().splitlines()[-1]
  assert last_line.startswith("Error: ") and (
      "other settings (shard_size 3 there, 4 now)" in last_line)


def test_per_clip_maps_without_spatial_pooling(tiny_run_dir, dataset_dir,
                                               tmp_path):
  model, identity = features.load_model(tiny_run_dir, random_init=True, seed=3)
  assert identity["checkpoint"] is None
  preprocessing = preprocessing_lib.Preprocessing.read(tiny_run_dir)
  features.extract_to_shards(
      model, dataset_dir, "val", preprocessing, str(tmp_path),
      modalities=("audio",), names=("conv2x",), num_clips=NUM_CLIPS,
      average_clips=False, spatial_pool="none", shard_size=5,
      settings=identity, progress=False)
  loaded = features.load_features(str(tmp_path))
  batch = next(iter(pipeline.make_eval_dataset(
      dataset_dir, "val", NUM_VAL, preprocessing=preprocessing,
      num_clips=NUM_CLIPS)))
  flat = tf.reshape(batch["audio"], (-1,) + tuple(batch["audio"].shape[2:]))
  expected = model.audio_encoder.stage_outputs(flat)["conv2x"].numpy()
  expected = expected.reshape((NUM_VAL, NUM_CLIPS) + expected.shape[1:])
  assert loaded["audio_conv2x"].shape == expected.shape
  np.testing.assert_allclose(loaded["audio_conv2x"], expected, rtol=1e-4,
                             atol=1e-5)
  with pytest.raises(errors.UserError, match="holds no features"):
    features.load_features(str(tmp_path), ["video_pool"])


def test_retrieval_script_from_features_and_from_model(extracted, tiny_run_dir,
                                                       dataset_dir, tmp_path):
  features_dir, _ = extracted
  printed = _script("retrieval.py", f"--features_dir={features_dir}").stdout
  # 8 items: R@10 is not applicable, R@1 printed beside its chance.
  assert "R@10 n/a" in printed and "R@1 " in printed
  assert f"(chance {1 / NUM_VAL:.1%})" in printed
  with open(os.path.join(features_dir, "retrieval.json")) as f:
    report = json.load(f)
  loaded = features.load_features(features_dir)
  expected = retrieval.retrieval_report(loaded["video_embedding"],
                                        loaded["audio_embedding"],
                                        loaded["label"])
  assert report["instance"] == expected["instance"]
  assert report["class"] == expected["class"]
  assert report["num_items"] == NUM_VAL and report["feature"] == "embedding"
  assert report["instance"]["v2a"]["r10"] is None

  output_dir = str(tmp_path / "from_model")
  _script("retrieval.py", f"--model_dir={tiny_run_dir}",
          f"--dataset_dir={dataset_dir}", "--split=val",
          f"--num_clips={NUM_CLIPS}", f"--output_dir={output_dir}")
  with open(os.path.join(output_dir, "retrieval.json")) as f:
    from_model = json.load(f)
  for direction in ("v2a", "a2v"):
    for k in ("r1", "r5", "r10"):
      assert from_model["instance"][direction][k] == pytest.approx(
          report["instance"][direction][k])
  assert set(from_model["class"]) == {"v2v", "a2a", "v2a", "a2v"}


def test_frozen_evaluation_retrieval_figures_come_from_the_retrieval_module(
    tiny_run_dir, dataset_dir):
  dataset = schema.DatasetInfo.load(dataset_dir)
  figures, val = frozen_evaluation.evaluate_run(
      tiny_run_dir, dataset, batch_size=4, num_clips=NUM_CLIPS)
  report = retrieval.retrieval_report(val["video_embedding"],
                                      val["audio_embedding"], val["label"],
                                      ks=(1, 5))
  for direction in ("v2a", "a2v"):
    for k in ("r1", "r5"):
      assert figures[f"retrieval_{direction}_{k}"] == (
          report["instance"][direction][k])
  for direction in ("v2v", "a2a", "v2a", "a2v"):
    for name in ("r1", "r5", "map"):
      assert figures[f"retrieval_class_{direction}_{name}"] == (
          report["class"][direction][name])
