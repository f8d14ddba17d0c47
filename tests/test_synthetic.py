"""Tests of the synthetic audio-visual dataset generator."""

import csv
import dataclasses
import os

import av
import numpy as np
import pytest

from avid_tf.data import synthetic

_TINY = dict(num_classes=3, videos_per_class=2, duration=1.0, size=32, fps=10,
             sample_rate=16000, val_fraction=0.5, progress=False)


def _read_csv(path):
  with open(path, newline="", encoding="utf-8") as f:
    return list(csv.reader(f))


def _decode(path):
  """Returns frames uint8 [T,H,W,3], audio [S], video and audio rates."""
  with av.open(path) as container:
    video_rate = container.streams.video[0].average_rate
    audio_rate = container.streams.audio[0].codec_context.sample_rate
    frames = np.stack([f.to_ndarray(format="rgb24")
                       for f in container.decode(video=0)])
  with av.open(path) as container:
    audio = np.concatenate([f.to_ndarray().reshape(-1)
                            for f in container.decode(audio=0)])
  return frames, audio, video_rate, audio_rate


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  """One tiny dataset with faulty positives, written once for the module."""
  output_dir = str(tmp_path_factory.mktemp("synthetic"))
  labels = synthetic.generate_dataset(output_dir, faulty_positive_rate=0.5,
                                      seed=3, num_workers=1, **_TINY)
  return output_dir, labels


def test_files_decode_to_requested_format(tiny):
  output_dir, labels = tiny
  rows = _read_csv(labels)[1:]
  assert len(rows) == 6
  for path, *_ in rows:
    frames, audio, video_rate, audio_rate = _decode(
        os.path.join(output_dir, path))
    assert frames.shape == (10, 32, 32, 3)
    assert video_rate == 10
    assert audio_rate == 16000
    # AAC pads the last codec frame (1024 samples).
    assert 16000 <= len(audio) <= 16000 + 1024
    assert np.abs(audio).max() > 0.01


def test_csv_columns_labels_and_stratified_splits(tiny):
  output_dir, labels = tiny
  assert labels == os.path.join(output_dir, "labels.csv")
  table = _read_csv(labels)
  assert table[0] == ["path", "label", "split", "faulty"]
  rows = table[1:]
  names = synthetic.class_names(3)
  for path, label, split, faulty in rows:
    assert label in names
    # Relative to the CSV's folder, through videos/.
    assert path.startswith(f"videos/{label}/") and path.endswith(".mp4")
    assert split in ("train", "val") and faulty in ("0", "1")
    assert os.path.isfile(os.path.join(output_dir, path))
  assert len({row[0] for row in rows}) == 6
  for name in names:
    splits = sorted(row[2] for row in rows if row[1] == name)
    assert splits == ["train", "val"]
  assert not [f for f in os.listdir(output_dir) if ".tmp" in f]


def test_faulty_videos_carry_audio_of_their_planned_source(tiny):
  output_dir, labels = tiny
  rows = _read_csv(labels)[1:]
  # 3 training videos, round(0.5 * 3) = 2 faulty; held-out pairs are clean.
  assert sum(int(r[3]) for r in rows if r[2] == "train") == 2
  assert sum(int(r[3]) for r in rows if r[2] == "val") == 0
  specs = synthetic.class_specs(3)
  videos = [(c, i) for c in range(3) for i in range(2)]
  plan = synthetic.plan_splits(3, 2, 0.5, seed=3)
  sources = synthetic.plan_audio_sources(
      [c for c, _ in videos], [plan[c][i] for c, i in videos], 0.5, seed=3)
  for number, (path, _, _, faulty) in enumerate(rows):
    source = sources[number]
    assert int(faulty) == int(source != number)
    _, audio, _, _ = _decode(os.path.join(output_dir, path))
    own = synthetic.render_audio(
        synthetic.instance_params(specs, *videos[number], 3, 32, 1.0), 16000)
    carried = synthetic.render_audio(
        synthetic.instance_params(specs, *videos[source], 3, 32, 1.0), 16000)
    audio = audio[:16000]
    # The decoded track matches the planned source sample-aligned (no codec
    # delay), so audio onsets stay on the visual events.
    assert np.corrcoef(audio, carried)[0, 1] > 0.9
    if source != number:
      assert videos[source][0] != videos[number][0]
      assert np.corrcoef(audio, own)[0, 1] < 0.5


def test_plan_audio_sources_counts_and_other_class():
  class_ids = np.repeat(np.arange(10), 20)
  splits = np.where(np.arange(200) % 5 == 0, "val", "train")
  sources = synthetic.plan_audio_sources(class_ids, splits, 0.3, seed=7)
  faulty = sources != np.arange(200)
  assert faulty[splits == "train"].sum() == round(0.3 * 160)
  assert faulty[splits == "val"].sum() == 0
  assert np.all(class_ids[sources[faulty]] != class_ids[faulty])
  assert np.all(splits[sources] == splits)
  np.testing.assert_array_equal(
      sources, synthetic.plan_audio_sources(class_ids, splits, 0.3, seed=7))
  assert np.any(sources != synthetic.plan_audio_sources(
      class_ids, splits, 0.3, seed=8))
  np.testing.assert_array_equal(
      synthetic.plan_audio_sources(class_ids, splits, 0.0, seed=7),
      np.arange(200))


def test_same_seed_is_identical_and_other_seed_differs(tiny, tmp_path):
  first_dir, first_labels = tiny
  # Same seed through the worker pool: the output does not depend on it.
  again = synthetic.generate_dataset(str(tmp_path / "again"),
                                     faulty_positive_rate=0.5, seed=3,
                                     num_workers=2, **_TINY)
  other = synthetic.generate_dataset(str(tmp_path / "other"),
                                     faulty_positive_rate=0.5, seed=4,
                                     num_workers=1, **_TINY)
  with open(first_labels, "rb") as f, open(again, "rb") as g:
    assert f.read() == g.read()
  path = _read_csv(first_labels)[1][0]
  frames, audio, _, _ = _decode(os.path.join(first_dir, path))
  frames2, audio2, _, _ = _decode(str(tmp_path / "again" / path))
  frames3, audio3, _, _ = _decode(str(tmp_path / "other" / path))
  np.testing.assert_array_equal(frames[0], frames2[0])
  np.testing.assert_array_equal(audio, audio2)
  assert np.abs(frames[0].astype(int) - frames3[0]).mean() > 5
  assert not np.allclose(audio[:16000], audio3[:16000], atol=1e-3)


def test_audio_onsets_fall_on_event_times():
  specs = synthetic.class_specs(10)
  sample_rate = 16000
  for class_id, spec in enumerate(specs):
    params = synthetic.instance_params(specs, class_id, 0, 0, 32, 2.0)
    audio = synthetic.render_audio(params, sample_rate)
    onsets = [int(round(t * sample_rate)) for t in params.event_times
              if 0.02 < t < 1.98]
    assert len(onsets) >= 4, spec.name  # several events per second
    window = int(0.01 * sample_rate)
    for onset in onsets:
      before = np.abs(audio[onset - window:onset - 30]).max()
      after = np.abs(audio[onset:onset + window]).max()
      assert after > 1.5 * before, (spec.name, onset)
    # Without its events the track is only the quiet noise floor and hum.
    silent = synthetic.render_audio(
        dataclasses.replace(params, event_times=params.event_times + 100.0),
        sample_rate)
    assert np.abs(silent).max() < 0.5 * np.abs(audio).max(), spec.name


def _sprite_of(params, times):
  return synthetic.sprites_at(params, times)[-1]


def test_visual_events_fall_on_event_times():
  specs = {spec.motion: (i, spec) for i, spec in
           enumerate(synthetic.class_specs(10))}
  for motion in ("bounce", "ping_pong", "collide", "pulse"):
    class_id, _ = specs[motion]
    params = synthetic.instance_params(synthetic.class_specs(10), class_id, 0,
                                       0, 64, 2.0)
    events = params.event_times[(params.event_times > 0) &
                                (params.event_times < 1.9)]
    middles = 0.5 * (events + params.event_times[
        np.searchsorted(params.event_times, events) + 1])
    cx, cy = params.centre
    if motion == "bounce":
      floor = cy + 0.5 * params.amplitude
      np.testing.assert_allclose(_sprite_of(params, events).y, floor)
      assert np.all(_sprite_of(params, middles).y < floor - 1.0)
    elif motion == "ping_pong":
      sprite = _sprite_of(params, events)
      along = np.hypot(sprite.x - cx, sprite.y - cy)
      np.testing.assert_allclose(along, 0.5 * params.amplitude)
      sprite = _sprite_of(params, middles)
      assert np.all(np.hypot(sprite.x - cx, sprite.y - cy) < 1e-6)
    elif motion == "collide":
      first, second = synthetic.sprites_at(params, events)[-2:]
      gap = np.hypot(first.x - second.x, first.y - second.y)
      contact = 2.0 * params.radius * synthetic._HALF_WIDTH[
          params.spec.shape]
      np.testing.assert_allclose(gap, contact, atol=1e-9)  # touching
      first, second = synthetic.sprites_at(params, middles)[-2:]
      gap = np.hypot(first.x - second.x, first.y - second.y)
      assert np.all(gap > contact + 0.5 * params.amplitude - 1e-6)
    else:
      assert np.all(_sprite_of(params, events).scale_x > 1.45)
      assert np.all(_sprite_of(params, middles).scale_x < 1.2)
      # The rendered object covers more pixels at the flash than after it.
      params = dataclasses.replace(params, distractor=None)
      background = synthetic.render_background(params)
      frames = synthetic.render_video(params, times=[events[0], middles[0]])
      changed = np.abs(frames / 255.0 - background).max(-1) > 0.05
      assert changed[0].sum() > 1.5 * changed[1].sum()


def test_mean_colour_does_not_reveal_the_class():
  specs = synthetic.class_specs(10)
  features, labels = [], []
  for class_id in range(10):
    for index in range(30):
      params = synthetic.instance_params(specs, class_id, index, 0, 32, 1.0)
      frame = synthetic.render_video(params, times=[0.5])[0] / 255.0
      features.append(frame.reshape(-1, 3).mean(0))
      labels.append(class_id)
  features, labels = np.asarray(features), np.asarray(labels)
  correct = 0
  for i in range(len(labels)):  # leave-one-out nearest class centroid
    keep = np.arange(len(labels)) != i
    centroids = np.stack([features[keep & (labels == c)].mean(0)
                          for c in range(10)])
    correct += np.argmin(((centroids - features[i])**2).sum(1)) == labels[i]
  assert correct / len(labels) < 0.25  # chance is 0.1


def test_instances_of_a_class_differ():
  specs = synthetic.class_specs(10)
  frames = [synthetic.render_video(
      synthetic.instance_params(specs, 0, i, 0, 32, 1.0), times=[0.0])[0]
            for i in range(5)]
  for i in range(5):
    for j in range(i):
      assert np.abs(frames[i].astype(int) - frames[j]).mean() > 5


def test_class_names_and_argument_checks(tmp_path):
  assert synthetic.class_names(10) == synthetic.CLASS_NAMES
  names = synthetic.class_names(synthetic.MAX_CLASSES)
  assert len(set(names)) == synthetic.MAX_CLASSES
  specs = synthetic.class_specs(synthetic.MAX_CLASSES)
  signatures = {(s.motion, s.shape, s.timbre, s.rhythm, s.pitch_hz)
                for s in specs}
  assert len(signatures) == synthetic.MAX_CLASSES
  with pytest.raises(ValueError, match="num_classes"):
    synthetic.class_names(1)
  with pytest.raises(ValueError, match="size"):
    synthetic.generate_dataset(str(tmp_path), size=33, progress=False)
  with pytest.raises(ValueError, match="faulty_positive_rate"):
    synthetic.generate_dataset(str(tmp_path), faulty_positive_rate=1.5,
                               progress=False)
  assert not os.listdir(tmp_path)


def test_brighter_scenes_are_louder_whatever_the_class():
  specs = synthetic.class_specs(10)
  brightness, log_gain, labels = [], [], []
  for class_id in range(10):
    for index in range(20):
      params = synthetic.instance_params(specs, class_id, index, 0, 32, 1.0)
      background = synthetic.render_background(params)
      brightness.append(background.max(-1).mean())  # HSV value
      log_gain.append(np.log(params.gain))
      labels.append(class_id)
  brightness, log_gain = np.asarray(brightness), np.asarray(log_gain)
  assert np.corrcoef(brightness, log_gain)[0, 1] > 0.8
  # The coupling is the same in every class: loudness says nothing of it.
  class_means = [log_gain[np.asarray(labels) == c].mean() for c in range(10)]
  assert np.std(class_means) < 0.5 * np.std(log_gain)
