"""Tests of the latent benchmark's generator (studies/latent_data.py)."""

import dataclasses

import numpy as np
import pytest

from avid_tf.eval import sklearn_probe
from studies import latent_data

SMALL = latent_data.LatentDataConfig(num_train=600, num_test=400)


def _probe(features, labels):
  half = len(labels) // 2
  return sklearn_probe.linear_probe_accuracy(
      features[:half], labels[:half], features[half:], labels[half:])


def test_same_seed_same_data_other_seed_other_data():
  config = dataclasses.replace(SMALL, faulty_positive_rate=0.3,
                               duplicate_rate=0.5)
  first = latent_data.make_latent_data(config, seed=3)
  again = latent_data.make_latent_data(config, seed=3)
  other = latent_data.make_latent_data(config, seed=4)
  for split in ("train", "test"):
    for field in dataclasses.fields(latent_data.Split):
      np.testing.assert_array_equal(
          getattr(getattr(first, split), field.name),
          getattr(getattr(again, split), field.name))
  assert not np.allclose(first.train.video, other.train.video)


def test_faulty_audio_comes_from_another_class_or_from_nuisance():
  config = dataclasses.replace(SMALL, faulty_positive_rate=0.4)
  train = latent_data.make_latent_data(config, seed=0).train
  counts = np.bincount(train.fault, minlength=3)
  assert counts.tolist() == [360, 120, 120]
  clean = train.fault == latent_data.CLEAN
  np.testing.assert_array_equal(train.audio_latents[clean],
                                train.latents[clean])
  for i in np.flatnonzero(train.fault == latent_data.MISMATCHED):
    sources = np.flatnonzero(
        np.all(train.latents == train.audio_latents[i], axis=1))
    assert sources.size and np.all(train.labels[sources] != train.labels[i])
  for i in np.flatnonzero(train.fault == latent_data.UNINFORMATIVE):
    assert not np.any(np.all(train.latents == train.audio_latents[i], axis=1))
  # The audio of an uninformative pair says nothing about its class: a probe
  # fit on clean pairs' audio latents scores at chance on them.
  uninformative = train.fault == latent_data.UNINFORMATIVE
  nearest = np.argmin(
      ((train.audio_latents[uninformative, None]
        - _prototype_estimates(train)[None]) ** 2).sum(-1), axis=1)
  assert np.mean(nearest == train.labels[uninformative]) < 0.3


def _prototype_estimates(split):
  clean = split.fault == latent_data.CLEAN
  return np.stack([split.latents[clean & (split.labels == c)].mean(0)
                   for c in range(split.labels.max() + 1)])


def test_held_out_pairs_are_clean_and_balanced():
  config = dataclasses.replace(SMALL, faulty_positive_rate=0.5,
                               duplicate_rate=0.5)
  test = latent_data.make_latent_data(config, seed=1).test
  assert np.all(test.fault == latent_data.CLEAN)
  np.testing.assert_array_equal(test.audio_latents, test.latents)
  np.testing.assert_array_equal(test.group, np.arange(len(test)))
  assert np.bincount(test.labels).tolist() == [40] * 10


def test_duplicate_groups_share_their_latent_and_class():
  config = dataclasses.replace(SMALL, duplicate_rate=0.5,
                               duplicate_group_size=4)
  train = latent_data.make_latent_data(config, seed=2).train
  ids, sizes = np.unique(train.group, return_counts=True)
  grouped = ids[sizes > 1]
  assert set(sizes[sizes > 1]) == {4}
  # Round(0.5 * 60 / 4) = 8 groups in each of the 10 classes.
  assert len(grouped) == 80
  for group in grouped:
    members = np.flatnonzero(train.group == group)
    assert len(set(train.labels[members])) == 1
    np.testing.assert_array_equal(train.latents[members],
                                  np.repeat(train.latents[members[:1]], 4, 0))
  assert not np.allclose(train.video[members[0]], train.video[members[1]])


def test_informativeness_sets_how_much_the_class_explains():
  def probes(rho_video, rho_audio):
    config = dataclasses.replace(SMALL, num_test=1000,
                                 video_informativeness=rho_video,
                                 audio_informativeness=rho_audio)
    test = latent_data.make_latent_data(config, seed=0).test
    return _probe(test.video, test.labels), _probe(test.audio, test.labels)

  video_only, no_audio = probes(1.0, 0.0)
  assert video_only > 0.8 and no_audio < 0.2
  balanced = probes(0.3, 0.3)
  assert 0.3 < balanced[0] < video_only and 0.3 < balanced[1]


@pytest.mark.parametrize("field, value", [
    ("faulty_positive_rate", 1.0), ("duplicate_rate", -0.1),
    ("video_informativeness", 1.5), ("num_classes", 1),
    ("duplicate_group_size", 1)])
def test_invalid_config_raises(field, value):
  with pytest.raises(ValueError, match=field):
    latent_data.LatentDataConfig(**{field: value})


def test_visit_stream_visits_each_instance_once_per_epoch_with_fresh_noise():
  from studies import latent_training  # pylint: disable=g-import-not-at-top
  data = latent_data.make_latent_data(
      dataclasses.replace(SMALL, num_train=300, num_test=50), seed=0)
  batches = [{k: v.numpy() for k, v in b.items()} for b in
             latent_training.visit_stream(data, 64, seed=3).take(8)]
  epochs = [np.concatenate([b["index"] for b in batches[e * 4:e * 4 + 4]])
            for e in range(2)]
  for visited in epochs:
    assert len(set(visited.tolist())) == 256  # 4 whole batches, no repeat
  assert not np.array_equal(epochs[0], epochs[1])
  first = batches[0]
  noise = first["video"] - data.train.video[first["index"]]
  assert noise.std() == pytest.approx(data.noise_std[0], rel=0.1)
  again = next(iter(latent_training.visit_stream(data, 64, seed=3)))
  np.testing.assert_array_equal(again["video"].numpy(), first["video"])
  # The same instance visited in the next epoch gets other noise.
  i = first["index"][0]
  later = [b for b in batches[4:] if i in b["index"]][0]
  row = later["video"][list(later["index"]).index(i)]
  assert not np.allclose(row, first["video"][0])
