"""Tests of avid_tf.data.pipeline on tiny datasets written in the test.

The videos encode time in their content: frame k is a uniform grey of level
10 + 4k, and the audio is a chirp whose frequency rises 3 kHz per second, so
the time a clip starts can be read back from the pipeline's output.
"""

import csv
import inspect
import json
import os
import shutil
import wave

import av
import numpy as np
import pytest
import tensorflow as tf

from avid_tf.data import audio_folder as audio_folder_lib
from avid_tf.data import audio_ops
from avid_tf.data import augmentation
from avid_tf.data import pipeline
from avid_tf.data import preprocessing
from avid_tf.data import schema
from conftest import encode_audio_frame

FPS = 16
RATE = 24000
HEIGHT, WIDTH = 40, 56
CHIRP_START, CHIRP_RATE = 500.0, 3000.0  # Hz, Hz per second
CROP = 32
MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])
# Index 4 is short (5 frames), index 5 has no audio; the others last 3 s.
SHORT_INDEX, SILENT_INDEX = 4, 5
NORMAL = [0, 1, 2, 3]
NO_JITTER = dict(brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0,
                 gain_range=(1.0, 1.0))


def _video(index, rng, num_frames=48, audio_seconds=3.0, fps=FPS):
  frames = [np.full((HEIGHT, WIDTH, 3), 10 + 4 * k, np.uint8)
            for k in range(num_frames)]
  t = np.arange(int(audio_seconds * RATE)) / RATE
  chirp = 0.5 * np.sin(2 * np.pi * (CHIRP_START * t + CHIRP_RATE * t**2 / 2))
  audio = np.round((chirp + 1e-3 * rng.standard_normal(t.shape)) *
                   32767).astype(np.int16)
  return {"video_id": f"v{index}.mp4", "frames": frames, "audio": audio,
          "label": index % 3, "index": index,
          "duration": num_frames / fps}


def _write_dataset(directory, mean=None, std=None):
  features = schema.features()
  rng = np.random.default_rng(0)
  train = [_video(i, rng) for i in range(4)]
  train.append(_video(SHORT_INDEX, rng, num_frames=5))
  train.append(_video(SILENT_INDEX, rng, audio_seconds=0.0))
  splits = {"train": [train[:2], train[2:]],
            "val": [[_video(i, rng) for i in range(3)]]}
  lengths = {}
  for split, shards in splits.items():
    for shard, examples in enumerate(shards):
      schema.write_shard(
          schema.shard_path(directory, "tiny", split, shard, len(shards)),
          [features.serialize_example(e) for e in examples])
    lengths[split] = [len(s) for s in shards]
  metadata = {
      "fps": FPS, "short_side": HEIGHT, "sample_rate": RATE,
      "label_names": ["a", "b", "c"],
      "spectrogram_mean": [0.0] * 257 if mean is None else list(mean),
      "spectrogram_std": [1.0] * 257 if std is None else list(std),
      "num_videos": {s: sum(n) for s, n in lengths.items()}}
  schema.write_dataset_info(directory, "tiny", lengths, metadata)
  return directory


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
  return _write_dataset(str(tmp_path_factory.mktemp("tiny")))


def _take(dataset, num_batches):
  iterator = iter(dataset)
  return [{k: v.numpy() for k, v in next(iterator).items()}
          for _ in range(num_batches)]


def _geometry(dataset_dir, num_frames=4, crop_size=CROP, **kwargs):
  return preprocessing.clip_preprocessing(
      schema.DatasetInfo.load(dataset_dir), num_frames=num_frames,
      crop_size=crop_size, **kwargs)


def _train(dataset_dir, batch_size=4, **kwargs):
  geometry = {key: kwargs.pop(key) for key in
              ("num_frames", "crop_size", "audio_seconds", "frame_rate")
              if key in kwargs}
  changes = {key: kwargs.pop(key) for key in list(kwargs)
             if key in inspect.signature(
                 augmentation.clip_augmentation).parameters}
  return pipeline.make_train_dataset(
      dataset_dir, batch_size, preprocessing=_geometry(dataset_dir,
                                                       **geometry),
      augmentation=augmentation.clip_augmentation(**changes), **kwargs)


_STREAMS = {}


def _stream(dataset_dir, num_batches, batch_size=4, **kwargs):
  """First batches of a training stream, built once per configuration."""
  context = kwargs.get("input_context")
  key = (dataset_dir, num_batches, batch_size,
         repr(sorted((k, v) for k, v in kwargs.items() if v is not context)),
         context and (context.num_input_pipelines, context.input_pipeline_id,
                      context.num_replicas_in_sync))
  if key not in _STREAMS:
    _STREAMS[key] = _take(_train(dataset_dir, batch_size, **kwargs),
                          num_batches)
  return _STREAMS[key]


@pytest.fixture(scope="module")
def reference_batches(dataset_dir):
  """The first 9 batches (6 rounds of the 6 videos) with seed 0."""
  return _stream(dataset_dir, 9)


def _unnormalise(video):
  return video * STD + MEAN


def _frame_numbers(video):
  """Frame numbers of a clip of uniform grey frames [T, H, W, 3]."""
  grey = _unnormalise(video).mean(axis=(-3, -2, -1)) * 255
  return np.round((grey - 10) / 4).astype(int)


def _audio_start(spectrogram):
  """Start time of a chirp clip from its [200, 257, 1] spectrogram (dB)."""
  estimates = []
  for frame in range(20, 200, 20):
    peak = np.argmax(spectrogram[frame, 1:, 0]) + 1
    frequency = (2 * peak - 0.5) * RATE / 1024  # centre of the bin pair
    estimates.append((frequency - CHIRP_START) / CHIRP_RATE - frame / 100)
  return float(np.median(estimates))


def _equal_batches(a, b):
  return all(np.array_equal(x[k], y[k]) for x, y in zip(a, b) for k in x)


def test_train_batches_follow_the_contract(dataset_dir, reference_batches):
  dataset = _train(dataset_dir)
  assert dataset.element_spec == {
      "video": tf.TensorSpec([4, 4, CROP, CROP, 3], tf.float32),
      "audio": tf.TensorSpec([4, 200, 257, 1], tf.float32),
      "index": tf.TensorSpec([4], tf.int32),
      "label": tf.TensorSpec([4], tf.int32)}
  for batch in reference_batches:
    pixels = _unnormalise(batch["video"])
    assert pixels.min() >= -1e-4 and pixels.max() <= 1 + 1e-4
    assert np.isfinite(batch["audio"]).all()
    np.testing.assert_array_equal(batch["label"], batch["index"] % 3)
  # Augmentation is on: the same video's clips differ between rounds.
  clips = [b["video"][i] for b in reference_batches
           for i in np.flatnonzero(b["index"] == 0)]
  assert len(clips) >= 2 and not np.array_equal(clips[0], clips[1])


def test_uint8_batches_finished_in_the_step_equal_host_batches(
    dataset_dir, reference_batches):
  # The stream's position 3 (start_step) and seed 0, as reference_batches.
  host = reference_batches[3:5]
  device = _take(_train(dataset_dir, start_step=3, video_dtype="uint8"), 2)
  finish = tf.function(pipeline.finish_video)
  for host_batch, uint8_batch in zip(host, device):
    assert uint8_batch["video"].dtype == np.uint8
    finished = {k: np.asarray(v) for k, v in finish(uint8_batch).items()}
    assert sorted(finished) == sorted(host_batch)
    # float32 rounding of values of order 1 (the hue round trip included).
    np.testing.assert_allclose(finished["video"], host_batch["video"],
                               rtol=0, atol=2e-5)
    for key in ("audio", "index", "label"):
      np.testing.assert_array_equal(finished[key], host_batch[key])


def test_steps_per_epoch_counts_whole_batches(dataset_dir):
  assert pipeline.steps_per_epoch(dataset_dir, 4, 2) == 3
  assert pipeline.steps_per_epoch(dataset_dir, 5, 10) == 12
  assert pipeline.steps_per_epoch(dataset_dir, 4, 3) == 4  # 18 visits
  assert pipeline.steps_per_epoch(dataset_dir, 4, 1) == 1  # 6 visits
  # 2 pipelines own the shards of 2 and 4 videos, 2 elements each per step:
  # the smaller share's 6 visits make 3 steps.
  assert pipeline.steps_per_epoch(dataset_dir, 4, 3,
                                  num_input_pipelines=2) == 3
  with pytest.raises(ValueError, match="do not fill one batch of 8"):
    pipeline.steps_per_epoch(dataset_dir, 8, 1)


def test_exact_epochs_drop_the_visits_that_do_not_fill_a_batch(
    dataset_dir, reference_batches):
  # 6 videos x 3 clips = 18 visits per epoch at batch 4: 4 steps (16 visits),
  # the last 2 visits of the third round dropped, epoch 1 starting on round 3.
  uncut = np.concatenate([b["index"] for b in reference_batches])
  exact = _stream(dataset_dir, 8, clips_per_video=3)
  exact_stream = np.concatenate([b["index"] for b in exact])
  np.testing.assert_array_equal(exact_stream,
                                np.concatenate([uncut[0:16], uncut[18:34]]))
  # The same clips, augmentation included: batch 4 of the cut stream is
  # visits 18..21 of the uncut one.
  np.testing.assert_array_equal(
      exact[4]["video"],
      np.concatenate([reference_batches[4]["video"][2:],
                      reference_batches[5]["video"][:2]]))
  for epoch in range(2):
    counts = np.bincount(exact_stream[epoch * 16:(epoch + 1) * 16],
                         minlength=6)
    assert counts.sum() == 16 and set(counts) <= {2, 3}
  for start_step in (3, 4, 6):
    resumed = _take(_train(dataset_dir, start_step=start_step,
                           clips_per_video=3), 2)
    assert _equal_batches(resumed, exact[start_step:start_step + 2])


@pytest.mark.parametrize("shards_per_group", [None, 1])
def test_each_epoch_visits_every_video_clips_per_video_times(
    dataset_dir, reference_batches, shards_per_group):
  del reference_batches  # built by _stream
  batches = _stream(dataset_dir, 9, shards_per_group=shards_per_group)
  clips_per_video = 2
  steps = pipeline.steps_per_epoch(dataset_dir, 4, clips_per_video)
  stream = np.concatenate([b["index"] for b in batches])
  for epoch in range(3):
    visits = stream[epoch * steps * 4:(epoch + 1) * steps * 4]
    np.testing.assert_array_equal(np.bincount(visits, minlength=6),
                                  [clips_per_video] * 6)
  # Rounds are shuffled differently.
  rounds = stream.reshape(-1, 6)
  assert len({tuple(r) for r in rounds}) > 1


def test_same_seed_same_stream_independent_of_parallelism(
    dataset_dir, reference_batches):
  sequential = _take(_train(dataset_dir, num_parallel_calls=1), 3)
  assert _equal_batches(sequential, reference_batches[:3])
  other_seed = _take(_train(dataset_dir, seed=1), 3)
  assert not np.array_equal(other_seed[0]["video"],
                            reference_batches[0]["video"])
  assert not np.array_equal(
      np.concatenate([b["index"] for b in other_seed]),
      np.concatenate([b["index"] for b in reference_batches[:3]]))


@pytest.mark.parametrize("shards_per_group", [None, 1])
def test_start_step_resumes_exactly(dataset_dir, reference_batches,
                                    shards_per_group):
  del reference_batches  # built by _stream
  uninterrupted = _stream(dataset_dir, 9, shards_per_group=shards_per_group)
  # Steps 1 and 5 start mid-round (with two groups, at different offsets in
  # their group), step 3 on a round boundary.
  for start_step in (1, 3, 5):
    resumed = _take(_train(dataset_dir, start_step=start_step,
                           shards_per_group=shards_per_group), 2)
    assert _equal_batches(resumed, uninterrupted[start_step:start_step + 2])


@pytest.fixture(scope="module")
def plain_clips(dataset_dir):
  """Clips without colour jitter or gain, 8 frames, for content checks."""
  clips = {}
  for max_offsync in (0.0, 0.5):
    batches = _take(_train(dataset_dir, batch_size=6, num_frames=8,
                           max_offsync=max_offsync, **NO_JITTER), 8)
    clips[max_offsync] = [
        (int(b["index"][i]), b["video"][i], b["audio"][i])
        for b in batches for i in range(6)]
  return clips


@pytest.mark.parametrize("max_offsync", [0.0, 0.5])
def test_video_clip_lies_in_the_audio_window_plus_offsync(plain_clips,
                                                          max_offsync):
  video_seconds = 8 / FPS
  outside = 0
  checked = 0
  for index, video, audio in plain_clips[max_offsync]:
    if index not in NORMAL:
      continue
    frames = _frame_numbers(video)
    np.testing.assert_array_equal(frames, frames[0] + np.arange(8))
    video_start = frames[0] / FPS  # within one frame (1/16 s) of the truth
    audio_start = _audio_start(audio)
    assert -0.02 <= audio_start <= 1.0 + 0.02
    tolerance = 1 / FPS + 0.02
    assert video_start >= audio_start - max_offsync - tolerance
    assert (video_start + video_seconds <=
            audio_start + 2.0 + max_offsync + tolerance)
    outside += (video_start < audio_start - 0.1 or
                video_start + video_seconds > audio_start + 2.1)
    checked += 1
  assert checked >= 20
  if max_offsync:
    assert outside > 0  # the off-sync augmentation actually happens


def test_short_video_loops_its_frames(plain_clips):
  clips = [v for i, v, _ in plain_clips[0.5] if i == SHORT_INDEX]
  assert clips
  for video in clips:
    np.testing.assert_array_equal(_frame_numbers(video),
                                  [0, 1, 2, 3, 4, 0, 1, 2])


def test_missing_audio_gives_finite_silence(plain_clips):
  spectrograms = [a for i, _, a in plain_clips[0.5] if i == SILENT_INDEX]
  assert spectrograms
  for spectrogram in spectrograms:
    # -100 dB everywhere, normalised with mean 0 and std 1.
    np.testing.assert_allclose(spectrogram, -100.0 / (1 + 1e-5), rtol=1e-6)


def test_audio_is_normalised_with_the_dataset_statistics(
    dataset_dir, reference_batches, tmp_path):
  # Statistics of the very clips the pipeline yields with mean 0, std 1 ...
  spectrograms = np.concatenate([b["audio"] for b in reference_batches])
  db = spectrograms[..., 0] * (1 + 1e-5)
  mean = db.mean(axis=(0, 1))
  std = db.std(axis=(0, 1))
  normalised_dir = str(tmp_path / "normalised")
  shutil.copytree(dataset_dir, normalised_dir)
  metadata = schema.read_metadata(normalised_dir)
  metadata["spectrogram_mean"] = mean.tolist()
  metadata["spectrogram_std"] = std.tolist()
  with open(os.path.join(normalised_dir, schema.METADATA_FILE), "w") as f:
    json.dump(metadata, f)
  # ... normalise the same clips to zero mean and unit variance per bin.
  batches = _take(_train(normalised_dir), len(reference_batches))
  normalised = np.concatenate([b["audio"] for b in batches])[..., 0]
  np.testing.assert_allclose(normalised.mean(axis=(0, 1)), 0, atol=1e-3)
  np.testing.assert_allclose(normalised.std(axis=(0, 1)), 1, atol=1e-3)
  np.testing.assert_array_equal(batches[0]["video"],
                                reference_batches[0]["video"])


def _context(num_pipelines, pipeline_id):
  return tf.distribute.InputContext(num_input_pipelines=num_pipelines,
                                    input_pipeline_id=pipeline_id,
                                    num_replicas_in_sync=num_pipelines)


# 2 pipelines split the 2 train shards; 3 pipelines split records.
@pytest.mark.parametrize("num_pipelines", [2, 3])
def test_input_pipelines_visit_disjoint_videos(dataset_dir, num_pipelines):
  owned = []
  for pipeline_id in range(num_pipelines):
    batches = _stream(dataset_dir, 6, batch_size=2 * num_pipelines,
                      input_context=_context(num_pipelines, pipeline_id))
    assert batches[0]["index"].shape == (2,)  # per-replica batch
    stream = np.concatenate([b["index"] for b in batches])
    videos = set(stream.tolist())
    # Every owned video is visited equally often (whole rounds).
    counts = np.bincount(stream)[sorted(videos)]
    assert (counts == counts[0]).all()
    owned.append(videos)
  for i in range(num_pipelines):
    for j in range(i + 1, num_pipelines):
      assert not owned[i] & owned[j]
  assert set().union(*owned) == set(range(6))


def test_input_pipeline_resume(dataset_dir):
  context = _context(3, 1)
  uninterrupted = _stream(dataset_dir, 6, batch_size=6,
                          input_context=context)
  resumed = _take(_train(dataset_dir, batch_size=6, input_context=context,
                         start_step=3), 2)
  assert _equal_batches(resumed, uninterrupted[3:5])


def test_eval_dataset_uniform_aligned_clips(dataset_dir):
  dataset = pipeline.make_eval_dataset(
      dataset_dir, "train", 4, num_clips=3,
      preprocessing=_geometry(dataset_dir, num_frames=8))
  assert dataset.element_spec["video"].shape.as_list() == [
      None, 3, 8, CROP, CROP, 3]
  batches = [{k: v.numpy() for k, v in b.items()} for b in dataset]
  again = [{k: v.numpy() for k, v in b.items()} for b in dataset]
  assert _equal_batches(batches, again)
  assert [len(b["index"]) for b in batches] == [4, 2]
  assert batches[0]["audio"].shape == (4, 3, 200, 257, 1)
  index = np.concatenate([b["index"] for b in batches])
  np.testing.assert_array_equal(np.sort(index), np.arange(6))
  clips = {int(i): (v, a) for b in batches
           for i, v, a in zip(b["index"], b["video"], b["audio"])}
  for video_index in NORMAL:
    video, audio = clips[video_index]
    # 3 s videos: clip centres at 1.0, 1.5, 2.0 s -> video starts 0.75,
    # 1.25, 1.75 s (frames 12, 20, 28); audio starts 0, 0.5, 1.0 s.
    for clip, first_frame in enumerate([12, 20, 28]):
      np.testing.assert_array_equal(_frame_numbers(video[clip]),
                                    first_frame + np.arange(8))
      assert abs(_audio_start(audio[clip]) - 0.5 * clip) < 0.02
  np.testing.assert_array_equal(_frame_numbers(clips[SHORT_INDEX][0][0]),
                                [0, 1, 2, 3, 4, 0, 1, 2])
  assert np.isfinite(clips[SILENT_INDEX][1]).all()


def _write_fps_dataset(directory, fps, seconds=2.0):
  """Two 2 s videos stored at `fps` (frame k still grey level 10 + 4k)."""
  rng = np.random.default_rng(1)
  videos = [_video(i, rng, num_frames=int(seconds * fps),
                   audio_seconds=seconds, fps=fps) for i in range(2)]
  features = schema.features()
  for split in ("train", "val"):
    schema.write_shard(schema.shard_path(directory, "tiny", split, 0, 1),
                       [features.serialize_example(v) for v in videos])
  schema.write_dataset_info(directory, "tiny", {"train": [2], "val": [2]}, {
      "fps": fps, "short_side": HEIGHT, "sample_rate": RATE,
      "label_names": ["a", "b", "c"], "spectrogram_mean": [0.0] * 257,
      "spectrogram_std": [1.0] * 257, "num_videos": {"train": 2, "val": 2}})
  return directory


def _clip_start_interval(frames, stored_fps, frame_rate):
  """Start times t0 for which clip frame k is the stored frame before t0+k/r."""
  steps = np.arange(len(frames)) / frame_rate
  return (np.max(frames / stored_fps - steps),
          np.min((frames + 1) / stored_fps - steps))


@pytest.mark.parametrize("stored_fps", [25, 10])
def test_clips_span_num_frames_over_the_clip_rate_at_any_stored_fps(
    tmp_path, stored_fps):
  dataset_dir = _write_fps_dataset(str(tmp_path), stored_fps)
  geometry = _geometry(dataset_dir, num_frames=8, frame_rate=16,
                       audio_seconds=1.0)
  assert geometry.clip_seconds == 0.5
  batches = _take(pipeline.make_train_dataset(
      dataset_dir, 2, preprocessing=geometry,
      augmentation=augmentation.clip_augmentation(**NO_JITTER)), 10)
  for video in np.concatenate([b["video"] for b in batches]):
    frames = _frame_numbers(video)
    low, high = _clip_start_interval(frames, stored_fps, 16)
    # One start time explains every frame: the clip samples t0 + k / 16.
    assert low < high + 1e-6, frames
    assert 0 <= low and high <= 2.0 - 7 / 16 + 1 / stored_fps, frames
    # Frames 0 and 7 are 7/16 s apart, whatever the stored rate.
    assert frames[-1] - frames[0] in (np.floor(7 / 16 * stored_fps),
                                      np.ceil(7 / 16 * stored_fps))

  # Evaluation: 1 s audio, clip centres 0.5, 1.0, 1.5 s -> video starts
  # 0.25, 0.75, 1.25 s.
  (batch,) = [{k: v.numpy() for k, v in b.items()}
              for b in pipeline.make_eval_dataset(
                  dataset_dir, "val", 2, preprocessing=geometry, num_clips=3)]
  starts = np.array([0.25, 0.75, 1.25])
  expected = np.floor((starts[:, None] + np.arange(8) / 16) * stored_fps +
                      1e-4).astype(int)
  for video in batch["video"]:
    np.testing.assert_array_equal(
        [_frame_numbers(clip) for clip in video], expected)


def test_clear_errors_for_missing_data(dataset_dir, tmp_path):
  with pytest.raises(FileNotFoundError, match="nowhere"):
    _train(str(tmp_path / "nowhere"))
  with pytest.raises(ValueError, match="no split 'test'"):
    _train(dataset_dir, split="test")
  broken = str(tmp_path / "broken")
  shutil.copytree(dataset_dir, broken)
  metadata = schema.read_metadata(broken)
  del metadata["spectrogram_std"]
  with open(os.path.join(broken, schema.METADATA_FILE), "w") as f:
    json.dump(metadata, f)
  with pytest.raises(ValueError, match="spectrogram_std"):
    pipeline.make_eval_dataset(broken, "val", 2)


# ---------------------------------------------------------------------------
# Audio folders (ESC-50 layout).
# ---------------------------------------------------------------------------


def _tone(frequency, seconds, rate):
  t = np.arange(int(seconds * rate)) / rate
  return np.round(0.5 * np.sin(2 * np.pi * frequency * t) *
                  32767).astype(np.int16)


def _write_wav(path, pcm, rate):
  with wave.open(str(path), "wb") as f:
    f.setnchannels(1)
    f.setsampwidth(2)
    f.setframerate(rate)
    f.writeframes(pcm.astype("<i2").tobytes())


def _write_flac(path, pcm, rate):
  with av.open(str(path), mode="w", format="flac") as container:
    stream = container.add_stream("flac", rate=rate)
    stream.layout = "mono"
    frame = av.AudioFrame.from_ndarray(pcm[None, :], format="s16",
                                       layout="mono")
    frame.sample_rate = rate
    encode_audio_frame(container, stream, frame)


@pytest.fixture(scope="module")
def audio_folder(tmp_path_factory):
  root = tmp_path_factory.mktemp("esc")
  audio_dir = root / "audio"
  audio_dir.mkdir()
  tone_440 = _tone(440, 3.0, RATE)
  _write_wav(audio_dir / "1-a.wav", tone_440, RATE)
  _write_flac(audio_dir / "2-b.flac", _tone(1000, 1.5, 16000), 16000)
  _write_wav(audio_dir / "3-c.wav", _tone(2000, 2.5, 44100), 44100)
  labels = root / "esc50.csv"
  with open(labels, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["filename", "fold", "target", "category"])
    writer.writerow(["1-a.wav", 1, 7, "dog"])
    writer.writerow(["2-b.flac", 2, 3, "rain"])
    writer.writerow(["3-c.wav", 1, 5, "bird"])
  return str(audio_dir), str(labels), tone_440


def _peak_frequency(spectrogram):
  bins = spectrogram[..., 0].mean(axis=0)
  peak = int(np.argmax(bins[1:])) + 1
  return (2 * peak - 0.5) * RATE / 1024


def test_audio_folder_dataset_decodes_resamples_and_clips(audio_folder):
  audio_dir, labels, tone_440 = audio_folder
  dataset = audio_folder_lib.make_audio_folder_dataset(audio_dir, labels, 2,
                                               num_clips=2)
  batches = [{k: v.numpy() for k, v in b.items()} for b in dataset]
  assert [b["audio"].shape for b in batches] == [(2, 2, 200, 257, 1),
                                                 (1, 2, 200, 257, 1)]
  labels_out = np.concatenate([b["label"] for b in batches])
  folds = np.concatenate([b["fold"] for b in batches])
  np.testing.assert_array_equal(labels_out, [7, 3, 5])
  np.testing.assert_array_equal(folds, [1, 2, 1])
  audio = np.concatenate([b["audio"] for b in batches])
  # WAV at the target rate: exactly the pretraining spectrogram of its first
  # and last 2 s (clips uniformly spaced over the file).
  pcm = tone_440.astype(np.float32) / 32768
  for clip, start in enumerate([0, len(pcm) - 2 * RATE]):
    expected = audio_ops.log_spectrogram(pcm[start:start + 2 * RATE], RATE,
                                         num_frames=200).numpy()
    np.testing.assert_allclose(audio[0, clip, ..., 0], expected, atol=1e-4)
  # Resampled FLAC (16 kHz) and WAV (44.1 kHz) keep their tones; the 1.5 s
  # FLAC is zero-padded (silent tail at the -100 dB-below-peak floor).
  assert abs(_peak_frequency(audio[1, 0]) - 1000) < 30
  assert abs(_peak_frequency(audio[2, 0]) - 2000) < 30
  tail = audio[1, 0, 160:, :, 0]
  np.testing.assert_allclose(tail, audio[1, 0].max() - 100, atol=1e-3)


def test_audio_folder_dataset_folds_and_normalisation(audio_folder,
                                                      dataset_dir):
  audio_dir, labels, _ = audio_folder
  raw = audio_folder_lib.make_audio_folder_dataset(audio_dir, labels, 4, folds=[1],
                                           num_clips=1)
  stats = {"spectrogram_mean": np.full(257, -30.0),
           "spectrogram_std": np.full(257, 10.0)}
  normalised = audio_folder_lib.make_audio_folder_dataset(
      audio_dir, labels, 4, folds=[1], num_clips=1,
      spectrogram_mean=stats["spectrogram_mean"],
      spectrogram_std=stats["spectrogram_std"])
  raw_batch = next(iter(raw))
  batch = next(iter(normalised))
  np.testing.assert_array_equal(batch["label"].numpy(), [7, 5])
  np.testing.assert_allclose(batch["audio"].numpy(),
                             (raw_batch["audio"].numpy() + 30) / (10 + 1e-5),
                             rtol=1e-5, atol=1e-5)
  from_dataset = audio_folder_lib.make_audio_folder_dataset(
      audio_dir, labels, 4, folds=[1], num_clips=1,
      normalization_dir=dataset_dir)  # mean 0, std 1
  np.testing.assert_allclose(next(iter(from_dataset))["audio"].numpy(),
                             raw_batch["audio"].numpy() / (1 + 1e-5),
                             rtol=1e-6)


def test_audio_folder_errors(audio_folder, tmp_path):
  audio_dir, labels, _ = audio_folder
  bad = tmp_path / "bad.csv"
  bad.write_text("file,fold,target\nx.wav,1,0\n")
  with pytest.raises(ValueError, match="filename"):
    audio_folder_lib.make_audio_folder_dataset(audio_dir, str(bad), 2)
  missing = tmp_path / "missing.csv"
  missing.write_text("filename,fold,target\nnot_there.wav,1,0\n")
  with pytest.raises(FileNotFoundError, match="not_there.wav"):
    audio_folder_lib.make_audio_folder_dataset(audio_dir, str(missing), 2)
  with pytest.raises(ValueError, match="folds"):
    audio_folder_lib.make_audio_folder_dataset(audio_dir, labels, 2, folds=[9])
