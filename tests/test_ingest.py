"""Tests of avid_tf.data.ingest and scripts/prepare_data.py on tiny mp4s."""

import csv
import json
import math
import os
import shutil

import av
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from avid_tf.data import audio_ops
from avid_tf.data import ingest
from avid_tf.data import media
from avid_tf.data import schema
from conftest import run_script

_IN_FPS = 25
_IN_RATE = 48000
_NUM_FRAMES = 20          # 0.8 s at 25 fps
_LEVEL_STEP = 12          # grey level of input frame i is 12 * i
_AMPLITUDE = 0.5
_SHORT_SIDE = 16          # inputs are 32x48 -> stored 16x24
_RATE = 24000
_FPS = 16

# Clean labelled inputs: (path, label, split, sine frequency in Hz).
_VIDEOS = (
    ("dog/d2.mp4", "dog", "train", 700.0),
    ("cat/c1.mp4", "cat", "train", 300.0),
    ("dog/d1.mp4", "dog", "train", 500.0),
    ("cat/c2.mp4", "cat", "val", 900.0),
)
_MISSING = "cat/not_there.mp4"


def _write_video(path, num_frames=_NUM_FRAMES, frequency=440.0, audio=True):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  levels = (np.arange(num_frames) * _LEVEL_STEP).astype(np.uint8)
  frames = np.broadcast_to(levels[:, None, None, None],
                           (num_frames, 32, 48, 3)).copy()
  waveform = None
  if audio:
    time = np.arange(round(num_frames / _IN_FPS * _IN_RATE)) / _IN_RATE
    waveform = _AMPLITUDE * np.sin(2 * np.pi * frequency * time)
  media.write_av_file(path, frames, _IN_FPS, waveform, _IN_RATE)


def _write_faststart_noise_video(path):
  """A noisy mp4 with the index at the front, so a truncated copy opens."""
  noise = np.random.default_rng(0).integers(0, 255, (40, 64, 96, 3),
                                            dtype=np.uint8)
  plain = path + ".plain.mp4"
  media.write_av_file(plain, noise, _IN_FPS, np.zeros(64000), _IN_RATE)
  with av.open(plain) as source, av.open(
      path, "w", options={"movflags": "faststart"}) as target:
    streams = {s.index: target.add_stream_from_template(s)
               for s in source.streams}
    for packet in source.demux():
      if packet.dts is not None:
        packet.stream = streams[packet.stream.index]
        target.mux(packet)
  os.remove(plain)


def _ingest(video_dir, output_dir, **kwargs):
  kwargs.setdefault("short_side", _SHORT_SIDE)
  kwargs.setdefault("num_workers", 1)
  kwargs.setdefault("show_progress", False)
  # Sorted order, so that indices are known in advance; the seeded order has
  # its own tests.
  kwargs.setdefault("shuffle_seed", None)
  return ingest.ingest(video_dir, output_dir, "toy", **kwargs)


def _read_split(directory, split):
  builder = tfds.builder_from_directory(directory)
  dataset = builder.as_dataset(
      split=split, shuffle_files=False,
      decoders={"frames": tfds.decode.SkipDecoding()})
  return list(tfds.as_numpy(dataset))


def _read_all(directory):
  builder = tfds.builder_from_directory(directory)
  return {split: _read_split(directory, split) for split in builder.info.splits}


def _files_under(directory):
  return [os.path.join(root, f) for root, _, files in os.walk(directory)
          for f in files]


@pytest.fixture(scope="module")
def labelled_inputs(tmp_path_factory):
  root = tmp_path_factory.mktemp("labelled")
  video_dir = root / "videos"
  for path, _, _, frequency in _VIDEOS:
    _write_video(str(video_dir / path), frequency=frequency)
  labels_csv = root / "labels.csv"
  with open(labels_csv, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["path", "label", "split", "faulty"])
    for path, label, split, _ in _VIDEOS:
      writer.writerow([path, label, split, int(path == "dog/d2.mp4")])
    writer.writerow([_MISSING, "cat", "train", 0])
  return str(video_dir), str(labels_csv)


@pytest.fixture(scope="module")
def clean_dataset(labelled_inputs, tmp_path_factory):
  video_dir, labels_csv = labelled_inputs
  output_dir = str(tmp_path_factory.mktemp("clean_out"))
  report = _ingest(video_dir, output_dir, labels_csv=labels_csv)
  return report, schema.dataset_dir(output_dir, "toy")


def test_splits_indices_and_labels(clean_dataset):
  report, directory = clean_dataset
  assert schema.num_examples(directory, "train") == 3
  assert schema.num_examples(directory, "val") == 1
  train = _read_split(directory, "train")
  by_index = sorted(train, key=lambda e: e["index"])
  assert [e["index"] for e in by_index] == [0, 1, 2]
  # Indices follow the sorted video ids, labels the sorted class names.
  assert [e["video_id"].decode() for e in by_index] == [
      "cat/c1.mp4", "dog/d1.mp4", "dog/d2.mp4"]
  assert [e["label"] for e in by_index] == [0, 1, 1]
  val = _read_split(directory, "val")
  assert [(e["video_id"].decode(), e["index"], e["label"]) for e in val] == [
      ("cat/c2.mp4", 0, 0)]
  metadata = schema.read_metadata(directory)
  assert metadata["label_names"] == ["cat", "dog"]
  assert metadata["num_videos"] == {"train": 3, "val": 1}
  assert (metadata["fps"], metadata["short_side"],
          metadata["sample_rate"]) == (_FPS, _SHORT_SIDE, _RATE)
  assert report["num_ingested"] == 4
  assert report["num_skipped"] == 1
  missing = [f for f in report["files"] if f["path"] == _MISSING]
  assert missing[0]["kind"] == ingest.MISSING_FILE
  assert "missing file" in missing[0]["reason"]
  with open(os.path.join(directory, ingest.REPORT_FILE)) as f:
    assert json.load(f) == report
  indexed = {f["path"]: (f["split"], f["index"]) for f in report["files"]}
  assert indexed["dog/d2.mp4"] == ("train", 2)
  assert indexed["cat/c2.mp4"] == ("val", 0)


_NUM_CLASSES = 10
_VIDEOS_PER_CLASS = 8


@pytest.fixture(scope="module")
def class_sorted_datasets(tmp_path_factory):
  """10 classes x 8 videos listed class by class, ingested 8 per shard with
  the default seeded order and with the sorted order (shuffle_seed None)."""
  root = tmp_path_factory.mktemp("class_sorted")
  labels_csv = root / "labels.csv"
  with open(labels_csv, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["path", "label"])
    for c in range(_NUM_CLASSES):
      for v in range(_VIDEOS_PER_CLASS):
        path = f"class{c}/video{v}.mp4"
        _write_video(str(root / "videos" / path), num_frames=15,
                     frequency=200.0 + 50 * c)
        writer.writerow([path, f"class{c}"])
  directories = {}
  for seed in (0, None):
    output_dir = str(root / f"out_{seed}")
    _ingest(str(root / "videos"), output_dir, labels_csv=str(labels_csv),
            videos_per_shard=_VIDEOS_PER_CLASS, shuffle_seed=seed)
    directories[seed] = schema.dataset_dir(output_dir, "toy")
  return directories


def _labels_in_record_order(directory):
  info = schema.DatasetInfo.load(directory)
  records = tf.data.TFRecordDataset(list(info.split("train").paths))
  examples = [tf.train.Example.FromString(r.numpy()) for r in records]
  return [(e.features.feature["index"].int64_list.value[0],
           e.features.feature["label"].int64_list.value[0])
          for e in examples]


@pytest.mark.slow
def test_records_are_written_in_a_seeded_random_order(class_sorted_datasets):
  shuffled = _labels_in_record_order(class_sorted_datasets[0])
  in_order = _labels_in_record_order(class_sorted_datasets[None])
  # The memory index is the position in the record order.
  assert [i for i, _ in shuffled] == list(range(80))
  assert [i for i, _ in in_order] == list(range(80))
  # The first 24 records of the class-sorted input already hold nearly every
  # class (a uniform sample misses 0.45 of 10 classes on average); without
  # the shuffle they hold 3, and each shard one class.
  assert len({label for _, label in shuffled[:24]}) >= _NUM_CLASSES - 1
  assert len({label for _, label in in_order[:24]}) == 3
  # Labels and the instances file follow the new order.
  info = schema.DatasetInfo.load(class_sorted_datasets[0])
  np.testing.assert_array_equal(info.instance_column("train", "label"),
                                [label for _, label in shuffled])
  assert schema.read_metadata(class_sorted_datasets[0])["shuffle_seed"] == 0
  assert sorted(label for _, label in shuffled) == sorted(
      label for _, label in in_order)


def _expected_distinct_labels(class_sizes, batch_size):
  """E[distinct classes] in `batch_size` draws without replacement."""
  total = sum(class_sizes)
  return sum(1 - math.comb(total - n, batch_size) / math.comb(total,
                                                              batch_size)
             for n in class_sizes)


def test_training_batches_mix_classes_like_a_uniform_permutation(
    class_sorted_datasets):
  from avid_tf.data import pipeline  # pylint: disable=g-import-not-at-top
  from avid_tf.data import preprocessing  # pylint: disable=g-import-not-at-top
  batch_size = 8
  expected = _expected_distinct_labels([_VIDEOS_PER_CLASS] * _NUM_CLASSES,
                                       batch_size)
  distinct = {}
  for seed, directory in class_sorted_datasets.items():
    geometry = preprocessing.Preprocessing(
        num_frames=2, crop_size=16, frame_rate=16, audio_seconds=0.5,
        sample_rate=_RATE, spectrogram_mean=[0.0] * audio_ops.NUM_BINS,
        spectrogram_std=[1.0] * audio_ops.NUM_BINS)
    # One shard file per shuffle group: the smallest shuffle window.
    stream = pipeline.make_train_dataset(directory, batch_size,
                                         preprocessing=geometry,
                                         shards_per_group=1)
    distinct[seed] = np.mean([len(set(batch["label"].numpy().tolist()))
                              for batch in stream.take(20)])
  # ~5.8 expected; the sorted order gives 1 per batch.
  assert abs(distinct[0] - expected) < 0.8
  assert distinct[None] < 2


def test_labels_and_faulty_flags_by_memory_row(clean_dataset):
  _, directory = clean_dataset
  info = schema.DatasetInfo.load(directory)
  np.testing.assert_array_equal(info.instance_column("train", "label"),
                                [0, 1, 1])
  np.testing.assert_array_equal(info.instance_column("train", "faulty"),
                                [0, 0, 1])
  np.testing.assert_array_equal(info.instance_column("val", "faulty"), [0])
  assert info.instance_column("train", "no_such_column") is None


def test_bad_faulty_flag_is_a_clear_error(tmp_path, labelled_inputs):
  bad_csv = tmp_path / "bad_faulty.csv"
  bad_csv.write_text("path,label,faulty\ncat/c1.mp4,cat,yes\n")
  with pytest.raises(ingest.IngestError, match="line 2: faulty must be 0, 1"):
    _ingest(labelled_inputs[0], str(tmp_path / "out"),
            labels_csv=str(bad_csv))


def test_frames_resampled_to_fps_and_short_side(clean_dataset):
  _, directory = clean_dataset
  for example in _read_split(directory, "train"):
    duration = _NUM_FRAMES / _IN_FPS
    assert example["duration"] == pytest.approx(duration, abs=1e-6)
    frames = example["frames"]
    assert len(frames) == math.ceil(duration * _FPS)  # 13
    for k, jpeg in enumerate(frames):
      image = tf.io.decode_jpeg(jpeg).numpy()
      assert image.shape == (_SHORT_SIDE, 24, 3)
      # Output frame k shows the input frame nearest before k / fps.
      expected_level = _LEVEL_STEP * math.floor(k * _IN_FPS / _FPS)
      assert abs(image.mean() - expected_level) < 5, (k, image.mean())


def test_audio_resampled_mono_int16_and_aligned(clean_dataset):
  _, directory = clean_dataset
  frequencies = {path: f for path, _, _, f in _VIDEOS}
  examples = _read_split(directory, "train") + _read_split(directory, "val")
  for example in examples:
    audio = example["audio"]
    assert audio.dtype == np.int16
    assert len(audio) == round(_NUM_FRAMES / _IN_FPS * _RATE)
    waveform = audio.astype(np.float64) / 32768.0
    frequency = frequencies[example["video_id"].decode()]
    # Away from the codec's edges the stored audio is the written sine at
    # the new rate, with no time shift.
    middle = slice(2000, len(waveform) - 2000)
    reference = _AMPLITUDE * np.sin(
        2 * np.pi * frequency * np.arange(len(waveform)) / _RATE)
    assert np.corrcoef(waveform[middle], reference[middle])[0, 1] > 0.95
    rms = np.sqrt(np.mean(np.square(waveform[middle])))
    assert rms == pytest.approx(_AMPLITUDE / np.sqrt(2), rel=0.05)


def test_spectrogram_statistics_over_train_split(clean_dataset):
  _, directory = clean_dataset
  metadata = schema.read_metadata(directory)
  mean = np.asarray(metadata["spectrogram_mean"])
  std = np.asarray(metadata["spectrogram_std"])
  assert mean.shape == std.shape == (257,)
  assert np.all(np.isfinite(mean)) and np.all(std > 0)
  frames = np.concatenate([
      audio_ops.log_spectrogram(e["audio"].astype(np.float32) / 32768.0,
                                _RATE).numpy().astype(np.float64)
      for e in _read_split(directory, "train")])
  np.testing.assert_allclose(mean, frames.mean(axis=0), rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(std, frames.std(axis=0), rtol=1e-5, atol=1e-4)
  assert metadata["spectrogram_stats_num_frames"] == len(frames)


def test_nothing_half_written_left_behind(clean_dataset):
  _, directory = clean_dataset
  names = os.listdir(directory)
  assert ingest.WORK_DIR not in names
  assert not [n for n in names if ".tmp" in n]
  assert "toy-train.tfrecord-00000-of-00001" in names


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
  video_dir = tmp_path_factory.mktemp("bad") / "videos"
  _write_video(str(video_dir / "good.mp4"))
  _write_video(str(video_dir / "silent.mp4"), audio=False)
  _write_video(str(video_dir / "short.mp4"), num_frames=5)
  (video_dir / "zero.mp4").write_bytes(b"")
  (video_dir / "random.mp4").write_bytes(
      np.random.default_rng(1).bytes(4000))
  (video_dir / "notes.txt").write_text("not a video\n")
  good_bytes = (video_dir / "good.mp4").read_bytes()
  (video_dir / "truncated.mp4").write_bytes(good_bytes[:len(good_bytes) // 2])
  _write_faststart_noise_video(str(video_dir / "cut_faststart.mp4"))
  noisy = (video_dir / "cut_faststart.mp4").read_bytes()
  (video_dir / "cut_faststart.mp4").write_bytes(noisy[:len(noisy) // 2])
  return str(video_dir)


def test_bad_inputs_reported_not_fatal(bad_inputs, tmp_path):
  report = _ingest(bad_inputs, str(tmp_path), missing_audio="silence")
  files = {f["path"]: f for f in report["files"]}
  assert len(files) == 8
  expected = {
      "good.mp4": (ingest.INGESTED, ""),
      "silent.mp4": (ingest.NO_AUDIO_SILENCED, "no audio stream"),
      "short.mp4": (ingest.TOO_SHORT, "shorter than a clip"),
      "zero.mp4": (ingest.ZERO_BYTE, "zero-byte file"),
      "random.mp4": (ingest.CANNOT_OPEN, "cannot open"),
      "notes.txt": (ingest.CANNOT_OPEN, "cannot open"),
      "truncated.mp4": (ingest.CANNOT_OPEN, "cannot open"),
      "cut_faststart.mp4": (ingest.DECODE_ERROR, "truncated/corrupt"),
  }
  for path, (kind, phrase) in expected.items():
    assert files[path]["kind"] == kind, files[path]
    assert phrase in files[path]["reason"]
    assert "\n" not in files[path]["reason"]
  assert {p for p, f in files.items() if f["status"] == "ingested"} == {
      "good.mp4", "silent.mp4"}
  assert report["num_ingested"] == 2 and report["num_skipped"] == 6
  assert report["counts_by_status"] == {
      "cannot_open": 3, "decode_error": 1, "ingested": 1,
      "no_audio_silenced": 1, "too_short": 1, "zero_byte": 1}
  assert report["num_no_audio_silenced"] == 1
  assert report["num_no_audio_skipped"] == 0
  assert "Without audio: 0 skipped, 1 kept with silence" in (
      ingest.summarize(report))
  directory = schema.dataset_dir(str(tmp_path), "toy")
  examples = {e["video_id"].decode(): e for e in _read_split(directory,
                                                              "train")}
  assert sorted(examples) == ["good.mp4", "silent.mp4"]
  assert examples["silent.mp4"]["audio"].shape == (0,)
  assert len(examples["silent.mp4"]["frames"]) == 13
  assert sorted(e["index"] for e in examples.values()) == [0, 1]
  # Statistics come from the videos with audio only.
  metadata = schema.read_metadata(directory)
  assert metadata["spectrogram_stats_num_videos"] == 1
  assert metadata["missing_audio"] == "silence"


def test_videos_without_audio_are_skipped_by_default(bad_inputs, tmp_path):
  report = _ingest(bad_inputs, str(tmp_path))
  files = {f["path"]: f for f in report["files"]}
  assert files["silent.mp4"]["status"] == "skipped"
  assert files["silent.mp4"]["kind"] == ingest.NO_AUDIO
  assert "no audio stream" in files["silent.mp4"]["reason"]
  assert report["counts_by_status"][ingest.NO_AUDIO] == 1
  assert report["num_no_audio_skipped"] == 1
  assert report["num_no_audio_silenced"] == 0
  assert "Without audio: 1 skipped, 0 kept with silence" in (
      ingest.summarize(report))
  assert report["num_ingested"] == 1
  directory = schema.dataset_dir(str(tmp_path), "toy")
  assert schema.num_examples(directory, "train") == 1
  assert schema.read_metadata(directory)["missing_audio"] == "skip"


def test_all_bad_input_raises(tmp_path):
  video_dir = tmp_path / "videos"
  video_dir.mkdir()
  (video_dir / "notes.txt").write_text("not a video\n")
  (video_dir / "zero.mp4").write_bytes(b"")
  with pytest.raises(ingest.IngestError, match="No video ingested"):
    _ingest(str(video_dir), str(tmp_path / "out"))
  directory = schema.dataset_dir(str(tmp_path / "out"), "toy")
  with open(os.path.join(directory, ingest.REPORT_FILE)) as f:
    assert json.load(f)["num_skipped"] == 2
  assert not os.path.exists(os.path.join(directory, "dataset_info.json"))


def test_script_exits_nonzero_with_one_line_reason(tmp_path):
  video_dir = tmp_path / "videos"
  video_dir.mkdir()
  (video_dir / "notes.txt").write_text("not a video\n")
  result = run_script(
      "prepare_data.py", f"--video_dir={video_dir}",
      f"--output_dir={tmp_path / 'out'}", "--num_workers=1", "--noprogress")
  assert result.returncode != 0
  last_line = result.stderr.strip().splitlines()[-1]
  assert last_line.startswith("Error: No video ingested")
  assert "Traceback" not in result.stderr
  assert str(video_dir) in last_line


def test_unusable_arguments_raise_clear_errors(tmp_path, labelled_inputs):
  with pytest.raises(ingest.IngestError, match="does not exist"):
    _ingest(str(tmp_path / "nowhere"), str(tmp_path / "out"))
  (tmp_path / "empty").mkdir()
  with pytest.raises(ingest.IngestError, match="contains no files"):
    _ingest(str(tmp_path / "empty"), str(tmp_path / "out"))
  bad_csv = tmp_path / "bad.csv"
  bad_csv.write_text("file,label\na.mp4,cat\n")
  with pytest.raises(ingest.IngestError, match="no 'path' column"):
    _ingest(labelled_inputs[0], str(tmp_path / "out"),
            labels_csv=str(bad_csv))
  with pytest.raises(ingest.IngestError, match="missing_audio"):
    _ingest(labelled_inputs[0], str(tmp_path / "out"), missing_audio="drop")


def _assert_same_dataset(directory, reference_directory, ignore=()):
  actual, expected = _read_all(directory), _read_all(reference_directory)
  assert sorted(actual) == sorted(expected)
  for split in expected:
    assert len(actual[split]) == len(expected[split])
    for got, want in zip(sorted(actual[split], key=lambda e: e["index"]),
                         sorted(expected[split], key=lambda e: e["index"])):
      assert sorted(got) == sorted(want)
      for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
  metadata, expected_metadata = (
      {k: v for k, v in schema.read_metadata(d).items() if k not in ignore}
      for d in (directory, reference_directory))
  assert metadata == expected_metadata


def test_interrupted_ingest_resumes_without_redoing_work(
    labelled_inputs, clean_dataset, tmp_path, monkeypatch):
  video_dir, labels_csv = labelled_inputs
  decode = ingest.decode_video
  decoded = []

  def interrupted_decode(path, **kwargs):
    if len(decoded) == 2:
      raise KeyboardInterrupt
    decoded.append(path)
    return decode(path, **kwargs)

  monkeypatch.setattr(ingest, "decode_video", interrupted_decode)
  with pytest.raises(KeyboardInterrupt):
    _ingest(video_dir, str(tmp_path), labels_csv=labels_csv)
  directory = schema.dataset_dir(str(tmp_path), "toy")
  work_files = os.listdir(os.path.join(directory, ingest.WORK_DIR))
  assert len([f for f in work_files if f.endswith(".example")]) == 2
  assert not [f for f in work_files if ".tmp" in f]
  assert not os.path.exists(os.path.join(directory, "dataset_info.json"))

  first_run = list(decoded)
  decoded.clear()

  def counting_decode(path, **kwargs):
    decoded.append(path)
    return decode(path, **kwargs)

  monkeypatch.setattr(ingest, "decode_video", counting_decode)
  report = _ingest(video_dir, str(tmp_path), labels_csv=labels_csv)
  assert len(decoded) == len(_VIDEOS) - 2
  assert not set(decoded) & set(first_run)
  clean_report, clean_directory = clean_dataset
  _assert_same_dataset(directory, clean_directory)
  strip = lambda r: {k: v for k, v in r.items() if k != "dataset_dir"}
  assert strip(report) == strip(clean_report)
  assert not [f for f in _files_under(directory) if ".tmp" in f]
  assert ingest.WORK_DIR not in os.listdir(directory)


def test_csv_beside_its_videos_folder_ingests_with_either_video_dir(
    labelled_inputs, clean_dataset, tmp_path):
  # make_synthetic's layout: labels.csv beside videos/, paths through it.
  root = tmp_path / "synth"
  shutil.copytree(labelled_inputs[0], root / "videos")
  labels_csv = root / "labels.csv"
  with open(labelled_inputs[1], newline="") as f:
    rows = list(csv.reader(f))
  with open(labels_csv, "w", newline="") as f:
    csv.writer(f).writerows(
        [rows[0]] + [["videos/" + row[0]] + row[1:] for row in rows[1:]])
  clean_report, clean_directory = clean_dataset
  expected = _read_all(clean_directory)

  for video_dir, prefix in ((root, "videos/"), (root / "videos", "")):
    output_dir = str(tmp_path / ("out_" + os.path.basename(video_dir)))
    report = _ingest(str(video_dir), output_dir, labels_csv=str(labels_csv))
    assert report["counts_by_status"] == clean_report["counts_by_status"]
    # A missing file keeps the path the CSV lists.
    assert [f["path"] for f in report["files"]] == [
        ("videos/" if f["path"] == _MISSING else prefix) + f["path"]
        for f in clean_report["files"]]
    actual = _read_all(schema.dataset_dir(output_dir, "toy"))
    for split, examples in expected.items():
      assert len(actual[split]) == len(examples)
      for got, want in zip(actual[split], examples):
        assert got["video_id"].decode() == prefix + want["video_id"].decode()
        for key in ("frames", "audio", "label", "index", "duration"):
          np.testing.assert_array_equal(got[key], want[key], err_msg=key)
  # Given the videos folder, the ids (and so the data) are the ones of a CSV
  # listing paths relative to it.
  _assert_same_dataset(schema.dataset_dir(str(tmp_path / "out_videos"), "toy"),
                       clean_directory, ignore=("video_dir", "labels_csv"))


@pytest.mark.slow
def test_parallel_workers_match_single_process(labelled_inputs, clean_dataset,
                                               tmp_path):
  video_dir, labels_csv = labelled_inputs
  _ingest(video_dir, str(tmp_path), labels_csv=labels_csv, num_workers=2)
  _assert_same_dataset(schema.dataset_dir(str(tmp_path), "toy"),
                       clean_dataset[1])


def test_a_folder_without_csv_gets_folder_labels_and_a_seeded_val_split(
    labelled_inputs, tmp_path):
  video_dir, _ = labelled_inputs
  output_dir = str(tmp_path / "out")
  _ingest(video_dir, output_dir, val_fraction=0.5, shuffle_seed=3)
  directory = schema.dataset_dir(output_dir, "toy")
  info = schema.DatasetInfo.load(directory)
  assert info.label_names == ["cat", "dog"]
  assert info.metadata["val_fraction"] == 0.5
  # Two videos per class: one of each goes to val, one stays in train.
  for split in ("train", "val"):
    examples = _read_split(directory, split)
    labels = {e["video_id"].decode().split("/")[0]: e["label"]
              for e in examples}
    assert labels == {"cat": 0, "dog": 1}, split
  entries = ingest._list_inputs(video_dir, None, exclude_dir=output_dir)
  chosen = [[e.video_id for e in ingest._split_off_val(entries, 0.5, seed)
             if e.split == "val"] for seed in (3, 3, 4, 5, 6)]
  assert chosen[0] == chosen[1]
  assert len({tuple(c) for c in chosen}) > 1
  with pytest.raises(ingest.IngestError, match="val_fraction"):
    _ingest(video_dir, output_dir, val_fraction=1.0)


def test_a_rerun_with_other_settings_refuses_unless_overwrite(
    labelled_inputs, tmp_path):
  video_dir, labels_csv = labelled_inputs
  output_dir = str(tmp_path / "out")
  _ingest(video_dir, output_dir, labels_csv=labels_csv)
  directory = schema.dataset_dir(output_dir, "toy")
  before = {path: os.path.getmtime(path) for path in _files_under(directory)}
  result = run_script("prepare_data.py", f"--video_dir={video_dir}",
                      f"--labels_csv={labels_csv}", f"--output_dir={output_dir}",
                      "--name=toy", f"--short_side={_SHORT_SIDE + 4}",
                      "--shuffle_seed=-1", "--num_workers=1",
                      "--noprogress")
  assert result.returncode == 1 and "Traceback" not in result.stderr
  last = result.stderr.strip().splitlines()[-1]
  assert f"short_side {_SHORT_SIDE} there, {_SHORT_SIDE + 4} now" in last
  assert "--overwrite" in last
  assert {path: os.path.getmtime(path)
          for path in _files_under(directory)} == before
  _ingest(video_dir, output_dir, labels_csv=labels_csv,
          short_side=_SHORT_SIDE + 4, overwrite=True)
  assert schema.read_metadata(directory)["short_side"] == _SHORT_SIDE + 4
