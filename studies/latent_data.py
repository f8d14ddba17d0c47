"""Audio-visual data with known structure, for testing the methods' claims.

Each instance i has a class c_i, a semantic latent z_i drawn around its
class prototype, and a nuisance of its own per modality (u_i^v, u_i^a) that
carries no class information. The observations are fixed random non-linear
maps of a mix of the two,

  x_m = G_m(sqrt(rho_m) z~_i, sqrt(1 - rho_m) u_i^m) + noise,

where z~ is z scaled to unit variance, rho_m is the modality's
informativeness (how much of its observation the semantic latent explains)
and G_m is a small random MLP seeded by the dataset seed. Each training
visit redraws the noise, which plays the part of augmentation; evaluation
uses the noise-free observation.

Known faults, in the training split only:
* faulty positives at rate r: the audio of a flagged instance is made from
  the latent of an instance of another class ("mismatched") or from a
  latent of nuisance alone, a fresh standard normal draw ("uninformative"),
  half of each;
* faulty negatives: instances of the same class (their share is set by the
  number of classes) and, at duplicate rate d, groups of instances that
  share one latent z, as clips cut from one source video do.

The held-out split has clean pairs only.
"""

import dataclasses

import numpy as np

CLEAN, MISMATCHED, UNINFORMATIVE = 0, 1, 2
FAULT_KINDS = {"mismatched": MISMATCHED, "uninformative": UNINFORMATIVE}


@dataclasses.dataclass(frozen=True)
class LatentDataConfig:
  """Constants of the generator.

  The defaults were chosen from the data alone, before any objective was
  trained on it: on the held-out split of seed 0, a linear probe on the
  true latent z scores 0.983 (10 classes), one on the raw noise-free
  observations 0.56 (video and audio), and one on a randomly initialised
  encoder 0.30 (docs/results.md, "Claims benchmark").

  Attributes:
    num_classes: C.
    num_train: training instances (memory rows).
    num_test: held-out instances (clean), split in half for the probes.
    latent_dim: width of z.
    nuisance_dim: width of each modality's nuisance u.
    class_spread: standard deviation of z around its class prototype
      (prototypes are standard normal).
    observation_dim: width of each observation.
    hidden_dim: hidden width of the generators G_v, G_a.
    generator_gain: input gain of the generators' tanh (higher is more
      non-linear).
    video_informativeness: rho_v in [0, 1].
    audio_informativeness: rho_a in [0, 1].
    observation_noise: standard deviation of the noise redrawn per visit,
      relative to the observation's own.
    faulty_positive_rate: r in [0, 1), share of training instances whose
      audio is faulty.
    duplicate_rate: d in [0, 1), share of training instances in groups that
      share one latent.
    duplicate_group_size: instances per duplicate group (>= 2).
  """

  num_classes: int = 10
  num_train: int = 8000
  num_test: int = 2000
  latent_dim: int = 16
  nuisance_dim: int = 64
  class_spread: float = 0.8
  observation_dim: int = 64
  hidden_dim: int = 128
  generator_gain: float = 3.0
  video_informativeness: float = 0.3
  audio_informativeness: float = 0.3
  observation_noise: float = 0.5
  faulty_positive_rate: float = 0.0
  duplicate_rate: float = 0.0
  duplicate_group_size: int = 4

  def __post_init__(self):
    for name in ("num_classes", "num_train", "num_test", "latent_dim",
                 "nuisance_dim", "observation_dim", "hidden_dim"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
    if self.num_classes < 2:
      raise ValueError(f"num_classes must be >= 2, got {self.num_classes}")
    for name in ("video_informativeness", "audio_informativeness"):
      if not 0.0 <= getattr(self, name) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got "
                         f"{getattr(self, name)}")
    for name in ("faulty_positive_rate", "duplicate_rate"):
      if not 0.0 <= getattr(self, name) < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got "
                         f"{getattr(self, name)}")
    if self.duplicate_group_size < 2:
      raise ValueError(f"duplicate_group_size must be >= 2, got "
                       f"{self.duplicate_group_size}")
    if min(self.class_spread, self.observation_noise,
           self.generator_gain) < 0:
      raise ValueError("class_spread, observation_noise and generator_gain "
                       "must be >= 0")


@dataclasses.dataclass(frozen=True)
class Split:
  """One split's instances.

  Attributes:
    video: float32 [n, observation_dim], noise-free video observations.
    audio: float32 [n, observation_dim], noise-free audio observations.
    labels: int64 [n], the class of each instance.
    latents: float32 [n, latent_dim], the true z of each instance (its
      video's).
    audio_latents: float32 [n, latent_dim], the latent its audio was made
      from: z itself for a clean pair, another class's instance's z for a
      mismatched one, a fresh draw for an uninformative one.
    fault: int64 [n], CLEAN, MISMATCHED or UNINFORMATIVE.
    group: int64 [n], duplicate group id (instances alone have their own).
  """

  video: np.ndarray
  audio: np.ndarray
  labels: np.ndarray
  latents: np.ndarray
  audio_latents: np.ndarray
  fault: np.ndarray
  group: np.ndarray

  def __len__(self):
    return len(self.labels)


@dataclasses.dataclass(frozen=True)
class LatentData:
  """A generated dataset: its config, seed, training and held-out splits."""

  config: LatentDataConfig
  seed: int
  train: Split
  test: Split

  @property
  def noise_std(self):
    """Per-visit noise standard deviation of (video, audio) observations."""
    return tuple(float(self.config.observation_noise * split.std())
                 for split in (self.train.video, self.train.audio))


class _Generator:
  """The fixed random map G: [latent | nuisance] -> observation."""

  def __init__(self, rng, input_dim, hidden_dim, output_dim, gain):
    self.first = rng.standard_normal((input_dim, hidden_dim)) / np.sqrt(
        input_dim)
    self.bias = rng.uniform(-1.0, 1.0, hidden_dim)
    self.second = rng.standard_normal((hidden_dim, output_dim)) / np.sqrt(
        hidden_dim)
    self.gain = gain

  def __call__(self, inputs):
    hidden = np.tanh(self.gain * (inputs @ self.first) + self.bias)
    return (hidden @ self.second).astype(np.float32)


def _mix(latent, nuisance, informativeness):
  return np.concatenate([np.sqrt(informativeness) * latent,
                         np.sqrt(1.0 - informativeness) * nuisance], axis=1)


def _balanced_labels(rng, count, num_classes):
  return rng.permutation(np.arange(count) % num_classes).astype(np.int64)


def _duplicate_groups(rng, labels, rate, group_size):
  """Group ids: same-class groups of `group_size` covering a share `rate`.

  An instance alone is its own group; a group's id is its first member.
  """
  group = np.arange(len(labels), dtype=np.int64)
  for label in np.unique(labels):
    members = rng.permutation(np.flatnonzero(labels == label))
    num_groups = int(round(rate * len(members) / group_size))
    grouped = members[:num_groups * group_size].reshape(num_groups,
                                                        group_size)
    group[grouped] = grouped[:, :1]
  return group


def _other_class_members(rng, labels, chosen, num_classes):
  """For each chosen instance, a random instance of another class."""
  other = (labels[chosen] + rng.integers(1, num_classes, len(chosen))
           ) % num_classes
  by_class = [np.flatnonzero(labels == c) for c in range(num_classes)]
  return np.array([by_class[c][rng.integers(len(by_class[c]))]
                   for c in other], np.int64)


def _faults(rng, count, rate):
  fault = np.zeros(count, np.int64)
  faulty = rng.permutation(count)[:int(round(rate * count))]
  fault[faulty[:len(faulty) // 2]] = MISMATCHED
  fault[faulty[len(faulty) // 2:]] = UNINFORMATIVE
  return fault


def _make_split(rng, config, prototypes, generators, count, faulty):
  """Draws one split (faults and duplicates only when `faulty`)."""
  spread_scale = np.sqrt(1.0 + config.class_spread**2)
  labels = _balanced_labels(rng, count, config.num_classes)
  latents = prototypes[labels] + config.class_spread * rng.standard_normal(
      (count, config.latent_dim))
  group = np.arange(count, dtype=np.int64)
  fault = np.zeros(count, np.int64)
  if faulty:
    group = _duplicate_groups(rng, labels, config.duplicate_rate,
                              config.duplicate_group_size)
    latents = latents[group]
    fault = _faults(rng, count, config.faulty_positive_rate)
  nuisance = {m: rng.standard_normal((count, config.nuisance_dim))
              for m in ("video", "audio")}
  audio_latents = latents.copy()
  mismatched = np.flatnonzero(fault == MISMATCHED)
  audio_latents[mismatched] = latents[_other_class_members(
      rng, labels, mismatched, config.num_classes)]
  uninformative = np.flatnonzero(fault == UNINFORMATIVE)
  audio_latents[uninformative] = spread_scale * rng.standard_normal(
      (len(uninformative), config.latent_dim))
  video = generators["video"](_mix(latents / spread_scale, nuisance["video"],
                                   config.video_informativeness))
  audio = generators["audio"](_mix(audio_latents / spread_scale,
                                   nuisance["audio"],
                                   config.audio_informativeness))
  return Split(video=video, audio=audio, labels=labels,
               latents=latents.astype(np.float32),
               audio_latents=audio_latents.astype(np.float32), fault=fault,
               group=group)


def make_latent_data(config=LatentDataConfig(), seed=0):
  """Generates a dataset, deterministically for (config, seed).

  The class prototypes and the generators depend on the seed only, so two
  configurations with the same seed and the same widths and class count
  share them (e.g. the same data at several faulty rates).

  Args:
    config: a `LatentDataConfig`.
    seed: the dataset seed.

  Returns:
    A `LatentData`.
  """
  structure = np.random.default_rng([seed, 0])
  prototypes = structure.standard_normal((config.num_classes,
                                          config.latent_dim))
  input_dim = config.latent_dim + config.nuisance_dim
  generators = {m: _Generator(structure, input_dim, config.hidden_dim,
                              config.observation_dim, config.generator_gain)
                for m in ("video", "audio")}
  train = _make_split(np.random.default_rng([seed, 1]), config, prototypes,
                      generators, config.num_train, faulty=True)
  test = _make_split(np.random.default_rng([seed, 2]), config, prototypes,
                     generators, config.num_test, faulty=False)
  return LatentData(config=config, seed=seed, train=train, test=test)
