"""Synthetic audio-visual dataset written as real media files.

The embedded default dataset of the quickstart, the tests and the controlled
studies. Each class pairs a visual event type (a motion pattern of a shape)
with an audio signature (timbre, pitch band, rhythm). Every visual event (a
bounce, a wall hit, a flash, a collision, a pop, ...) and the onset of its
sound happen at the same instant, several times per second, so the
audio-visual correspondence is visible inside a 0.5 s clip and audible inside
a 2 s window.

Nuisances are drawn per instance from ranges shared by all classes: object
and background colours, background texture, position, size, tempo, a static
distractor shape, loudness and noise. Colour or loudness alone therefore say
nothing about the class. Three nuisances are coupled across modalities, as
in real footage, so that cross-modal instance discrimination is meaningful:
tempo sets both the visual event rate and the audio rhythm, bigger objects
sound lower, and brighter scenes are louder.

Layout written by `generate_dataset`:

  <output_dir>/videos/<class_name>/<video_id>.mp4   H.264 + AAC (mono)
  <output_dir>/labels.csv                           path,label,split,faulty

`path` is relative to `<output_dir>`, the CSV's folder
("videos/<class_name>/<video_id>.mp4"); ingest finds the files with
`video_dir` set to `<output_dir>` or to `<output_dir>/videos`. With a
faulty-positive rate r, a fraction r of the training videos carry the audio
track of another training video of another class (faulty=1); held-out
videos are always clean pairs, so evaluation never scores a faulty pair.
"""

import csv
import dataclasses
import math
import os
from typing import Any

import numpy as np

from avid_tf import errors
from avid_tf.data import media
from avid_tf.utils import files
from avid_tf.utils import parallel

LABELS_FILE = "labels.csv"
VIDEOS_DIR = "videos"
CSV_COLUMNS = ("path", "label", "split", "faulty")
TRAIN_SPLIT = "train"

SHAPES = ("circle", "square", "diamond", "triangle", "cross", "ring", "star",
          "bar", "semicircle")
# Half extent of each shape along its own x axis (contact distance).
_HALF_WIDTH = {"circle": 1.0, "square": 0.85, "diamond": 1.15,
               "triangle": 1.0, "cross": 1.0, "ring": 1.03, "star": 1.0,
               "bar": 1.0, "semicircle": 0.0}
_RHYTHMS = {
    # Inter-onset intervals in beat periods, each pattern of mean 1, so the
    # average event rate is the instance tempo whatever the rhythm.
    "regular": (1.0,),
    "swing": (1.4, 0.6),
    "pairs": (0.3, 1.7),
    "gallop": (0.75, 0.75, 1.5),
    "random": None,  # intervals drawn U(0.5, 1.5) per event
}
_RHYTHM_NAMES = tuple(_RHYTHMS)

# Nuisance ranges shared by all classes (lengths are fractions of the frame).
_RATE_RANGE = (2.0, 4.0)         # events per second
_RADIUS_RANGE = (0.11, 0.17)
_AMPLITUDE_RANGE = (0.35, 0.5)  # extent of the motion
_GAIN_RANGE = (0.12, 0.5)
_BG_VALUE_RANGE = (0.15, 0.85)  # HSV value of the background
_NOISE_RANGE = (0.005, 0.08)     # noise RMS relative to the event gain
_PITCH_OCTAVES_PER_SIZE = 1.0    # pitch drop across the radius range


@dataclasses.dataclass(frozen=True)
class ClassSpec:
  """What makes a class: a visual event type and an audio signature.

  Attributes:
    name: class name (folder name and CSV label).
    motion: motion pattern whose events are the sound onsets.
    shape: shape of the moving object.
    timbre: sound made at each event.
    pitch_hz: centre of the pitch band (or of the noise band).
    rhythm: pattern of inter-event intervals.
  """
  name: str
  motion: str
  shape: str
  timbre: str
  pitch_hz: float
  rhythm: str


_BASE_CLASSES = (
    ClassSpec("bounce_knock", "bounce", "circle", "knock", 700.0, "regular"),
    ClassSpec("pingpong_beep", "ping_pong", "bar", "beep", 1800.0,
              "regular"),
    ClassSpec("pulse_bell", "pulse", "diamond", "bell", 800.0, "swing"),
    ClassSpec("collide_clack", "collide", "semicircle", "clack", 3000.0,
              "pairs"),
    ClassSpec("pop_chirp", "pop", "triangle", "chirp_up", 600.0, "random"),
    ClassSpec("ripple_sweep", "ripple", "square", "chirp_down", 1200.0,
              "swing"),
    ClassSpec("spin_buzz", "spin", "cross", "buzz", 180.0, "gallop"),
    ClassSpec("zigzag_hihat", "zigzag", "ring", "hihat", 7000.0,
              "regular"),
    ClassSpec("pendulum_pluck", "pendulum", "star", "pluck", 350.0,
              "regular"),
    ClassSpec("drop_thud", "drop", "square", "thud", 90.0, "random"),
)
# Classes beyond the base ten reuse a motion and timbre with another shape,
# rhythm and pitch band (octave shifts per variant).
_VARIANT_OCTAVES = (0.0, -0.5, 0.5, -1.0, 1.0, -1.5)
MAX_CLASSES = len(_BASE_CLASSES) * len(_VARIANT_OCTAVES)

CLASS_NAMES = tuple(spec.name for spec in _BASE_CLASSES)


def class_specs(num_classes=10):
  """Returns the `ClassSpec` of each of the first `num_classes` classes.

  Args:
    num_classes: number of classes, 2..MAX_CLASSES.

  Returns:
    Tuple of `ClassSpec`, index = class id.

  Raises:
    ValueError: if num_classes is out of range.
  """
  if not 2 <= num_classes <= MAX_CLASSES:
    raise errors.InvalidValueError(
        f"num_classes must be in [2, {MAX_CLASSES}], got "
        f"{num_classes}")
  specs = []
  for index in range(num_classes):
    base = _BASE_CLASSES[index % len(_BASE_CLASSES)]
    variant = index // len(_BASE_CLASSES)
    if variant == 0:
      specs.append(base)
      continue
    shape = SHAPES[(SHAPES.index(base.shape) + variant) % len(SHAPES)]
    rhythm = _RHYTHM_NAMES[(_RHYTHM_NAMES.index(base.rhythm) + variant) %
                           len(_RHYTHM_NAMES)]
    pitch = base.pitch_hz * 2.0**_VARIANT_OCTAVES[variant]
    specs.append(dataclasses.replace(
        base, name=f"{base.name}_{variant}", shape=shape, rhythm=rhythm,
        pitch_hz=float(np.clip(pitch, 60.0, 9000.0))))
  return tuple(specs)


def class_names(num_classes=10):
  """Returns the class names (label strings) of `num_classes` classes."""
  return tuple(spec.name for spec in class_specs(num_classes))


@dataclasses.dataclass(frozen=True)
class InstanceParams:
  """Everything random about one video, drawn up front by `sample_instance`.

  Rendering is a deterministic function of these parameters; audio and video
  share `event_times`.

  Attributes:
    spec: the class.
    size: frame side in pixels.
    duration: seconds.
    event_times: sorted event instants in seconds, from before 0 to after
      `duration` (so every frame lies between two events).
    rate: mean events per second (tempo).
    radius: object radius in pixels.
    centre: (x, y) of the motion centre in pixels.
    amplitude: extent of the motion in pixels.
    axis_angle: orientation of linear motions in radians.
    swing_angle: pendulum half-swing in radians.
    event_points: [K, 2] per-event positions in [-1, 1]^2 (pop, drop, zigzag).
    colour: object RGB in [0, 1].
    background: dict describing the background texture.
    distractor: dict describing a static distractor shape, or None.
    gain: peak amplitude of one event sound.
    pitch_factor: multiplies the class pitch (coupled to `radius`).
    event_gains: [K] per-event loudness jitter.
    noise_rms: RMS of the background noise.
    hum: (frequency Hz, amplitude) of a background hum, amplitude 0 if none.
    audio_seed: seed of the audio noise.
  """
  spec: ClassSpec
  size: int
  duration: float
  event_times: np.ndarray
  rate: float
  radius: float
  centre: tuple
  amplitude: float
  axis_angle: float
  swing_angle: float
  event_points: np.ndarray
  colour: np.ndarray
  background: dict
  distractor: dict
  gain: float
  pitch_factor: float
  event_gains: np.ndarray
  noise_rms: float
  hum: tuple
  audio_seed: int


def _hsv_to_rgb(h, s, v):
  """Converts scalar HSV in [0, 1] to an RGB float array."""
  i = int(h * 6.0) % 6
  f = h * 6.0 - math.floor(h * 6.0)
  p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
  return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v),
                   (v, p, q)][i], np.float32)


def _luma(rgb):
  return float(0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])


def _event_times(rhythm, rate, duration, rng):
  """Draws event instants covering [-2 periods, duration + 2 periods]."""
  period = 1.0 / rate
  pattern = _RHYTHMS[rhythm]
  offset = int(rng.integers(0, len(pattern))) if pattern else 0
  t = -period * (2.0 + rng.uniform(0.0, 1.0))
  times = []
  i = 0
  while t < duration + 2.0 * period:
    times.append(t)
    if pattern is None:
      interval = rng.uniform(0.5, 1.5)
    else:
      interval = pattern[(offset + i) % len(pattern)] * rng.uniform(0.97, 1.03)
    t += interval * period
    i += 1
  times.append(t)
  return np.asarray(times, np.float64)


def sample_instance(spec, rng, size=128, duration=3.0):
  """Draws the nuisances and event times of one video of class `spec`.

  Args:
    spec: `ClassSpec` of the class.
    rng: `np.random.Generator`, consumed in a fixed order.
    size: frame side in pixels.
    duration: seconds.

  Returns:
    `InstanceParams`.
  """
  rate = rng.uniform(*_RATE_RANGE)
  event_times = _event_times(spec.rhythm, rate, duration, rng)
  radius_fraction = rng.uniform(*_RADIUS_RANGE)
  radius = radius_fraction * size
  amplitude = rng.uniform(*_AMPLITUDE_RANGE) * size
  margin = 0.5 * amplitude + 1.3 * radius
  slack = max(0.0, 0.5 * size - margin)
  centre = (0.5 * size + rng.uniform(-slack, slack),
            0.5 * size + rng.uniform(-slack, slack))
  axis_angle = rng.uniform(-math.pi, math.pi)
  swing_angle = rng.uniform(math.radians(30), math.radians(50))
  event_points = rng.uniform(-1.0, 1.0, size=(len(event_times), 2))

  bg_hue = rng.uniform()
  bg_value = rng.uniform(*_BG_VALUE_RANGE)
  bg_saturation = rng.uniform(0.0, 0.7)
  bg_colour = _hsv_to_rgb(bg_hue, bg_saturation, bg_value)
  contrast = rng.uniform(0.03, 0.12) * (1 if bg_value < 0.5 else -1)
  bg_colour2 = _hsv_to_rgb(
      (bg_hue + rng.uniform(-0.05, 0.05)) % 1.0,
      float(np.clip(bg_saturation + rng.uniform(-0.1, 0.1), 0.0, 1.0)),
      float(np.clip(bg_value + contrast, 0.0, 1.0)))
  background = {
      "kind": ("plain", "blobs", "stripes", "checker")[rng.integers(0, 4)],
      "colours": (bg_colour, bg_colour2),
      "cells": int(rng.integers(3, 8)),
      "frequency": rng.uniform(2.0, 8.0),
      "angle": rng.uniform(0.0, math.pi),
      "phase": rng.uniform(0.0, 2 * math.pi),
      "seed": int(rng.integers(0, 2**31 - 1)),
  }
  bg_luma = 0.5 * (_luma(bg_colour) + _luma(bg_colour2))
  for _ in range(50):
    colour = _hsv_to_rgb(rng.uniform(), rng.uniform(0.3, 1.0),
                         rng.uniform(0.3, 1.0))
    if abs(_luma(colour) - bg_luma) >= 0.2:
      break
  distractor = None
  if rng.uniform() < 0.3:
    distractor = {
        "shape": SHAPES[rng.integers(0, len(SHAPES))],
        "radius": radius * rng.uniform(0.5, 0.8),
        "position": tuple(rng.uniform(0.1, 0.9, size=2) * size),
        "angle": rng.uniform(0.0, math.pi),
        "colour": _hsv_to_rgb(rng.uniform(), rng.uniform(0.0, 1.0),
                              rng.uniform(0.2, 1.0)),
        "alpha": rng.uniform(0.3, 0.6),
    }

  size_position = ((radius_fraction - np.mean(_RADIUS_RANGE)) /
                   (_RADIUS_RANGE[1] - _RADIUS_RANGE[0]))
  pitch_factor = 2.0**(-_PITCH_OCTAVES_PER_SIZE * size_position +
                       rng.uniform(-1.0, 1.0) / 12.0)
  # Brighter scenes are louder: the background value sets the event gain on
  # a log scale, up to a jitter of a tenth of the range.
  brightness_position = float(np.clip(
      (bg_value - _BG_VALUE_RANGE[0]) /
      (_BG_VALUE_RANGE[1] - _BG_VALUE_RANGE[0]) + rng.uniform(-0.1, 0.1),
      0.0, 1.0))
  gain = _GAIN_RANGE[0] * (_GAIN_RANGE[1] / _GAIN_RANGE[0])**brightness_position
  hum_amplitude = gain * rng.uniform(0.02, 0.1) if rng.uniform() < 0.5 else 0.
  return InstanceParams(
      spec=spec, size=int(size), duration=float(duration),
      event_times=event_times, rate=float(rate), radius=float(radius),
      centre=centre, amplitude=float(amplitude), axis_angle=float(axis_angle),
      swing_angle=float(swing_angle), event_points=event_points,
      colour=colour, background=background, distractor=distractor,
      gain=float(gain), pitch_factor=float(pitch_factor),
      event_gains=rng.uniform(0.85, 1.15, size=len(event_times)),
      noise_rms=float(gain * rng.uniform(*_NOISE_RANGE)),
      hum=(float(rng.uniform(60.0, 300.0)), float(hum_amplitude)),
      audio_seed=int(rng.integers(0, 2**31 - 1)))


# ----------------------------------------------------------------------------
# Video.


@dataclasses.dataclass
class Sprite:
  """One shape over time; per-frame arrays have length T.

  Attributes:
    shape: one of SHAPES.
    radius: nominal radius in pixels.
    x: [T] centre x in pixels.
    y: [T] centre y in pixels (down).
    scale_x: [T] stretch along the shape's own x axis.
    scale_y: [T] stretch along the shape's own y axis.
    angle: [T] rotation in radians.
    alpha: [T] opacity in [0, 1].
    colour: [T, 3] RGB in [0, 1].
    outline: stroke width in pixels, 0 for a filled shape.
  """
  shape: str
  radius: float
  x: np.ndarray
  y: np.ndarray
  scale_x: np.ndarray
  scale_y: np.ndarray
  angle: np.ndarray
  alpha: np.ndarray
  colour: np.ndarray
  outline: float = 0.0


def _sprite(shape, radius, num_frames, x, y, scale_x=1.0, scale_y=1.0,
            angle=0.0, alpha=1.0, colour=(1.0, 1.0, 1.0), outline=0.0):
  def per_frame(value):
    return np.broadcast_to(np.asarray(value, np.float64),
                           (num_frames,)).astype(np.float64)
  colour = np.broadcast_to(np.asarray(colour, np.float64), (num_frames, 3))
  return Sprite(shape, float(radius), per_frame(x), per_frame(y),
                per_frame(scale_x), per_frame(scale_y), per_frame(angle),
                np.clip(per_frame(alpha), 0.0, 1.0), colour, float(outline))


def event_phase(event_times, times):
  """Locates each instant between the events around it.

  Args:
    event_times: sorted event instants covering `times`.
    times: [T] instants in seconds.

  Returns:
    (k, s, since) arrays of length T: index of the last event at or before
    the instant, fraction of the interval to the next event elapsed, and
    seconds since the last event.
  """
  times = np.asarray(times, np.float64)
  k = np.searchsorted(event_times, times, side="right") - 1
  k = np.clip(k, 0, len(event_times) - 2)
  start, end = event_times[k], event_times[k + 1]
  since = times - start
  return k, np.clip(since / (end - start), 0.0, 1.0), since


def sprites_at(params, times):
  """Returns the `Sprite`s of one instance at `times` (distractor first).

  The motion of each class is a function of the event phase, so the visual
  events (floor contact, wall hit, flash, contact, pop, ripple start, snap
  turn, swing reversal, landing) fall on `params.event_times`.

  Args:
    params: `InstanceParams`.
    times: [T] instants in seconds.

  Returns:
    List of `Sprite`, in drawing order.
  """
  times = np.asarray(times, np.float64)
  events = params.event_times
  k, s, since = event_phase(events, times)
  cx, cy = params.centre
  phase = _Phase(
      params=params, times=times, n=len(times), k=k, s=s, since=since,
      period=1.0 / params.rate, interval=events[k + 1] - events[k], cx=cx,
      cy=cy, flash=np.exp(-since / 0.08),
      parity=np.where(k % 2 == 0, 1.0, -1.0),
      ux=math.cos(params.axis_angle), uy=math.sin(params.axis_angle))
  sprites = []
  if params.distractor is not None:
    d = params.distractor
    sprites.append(_sprite(d["shape"], d["radius"], phase.n,
                           d["position"][0], d["position"][1],
                           angle=d["angle"], alpha=d["alpha"],
                           colour=d["colour"]))
  motion = params.spec.motion
  if motion not in _MOTIONS:
    raise ValueError(f"unknown motion {motion!r} of class {params.spec.name}")
  return sprites + _MOTIONS[motion](phase)


@dataclasses.dataclass(frozen=True)
class _Phase:
  """One instance at a sequence of instants: where each is in its event
  interval (k, s, since; see `event_phase`) and the values every motion
  uses."""

  params: Any
  times: np.ndarray
  n: int
  k: np.ndarray
  s: np.ndarray
  since: np.ndarray
  period: float
  interval: np.ndarray
  cx: float
  cy: float
  flash: np.ndarray
  parity: np.ndarray
  ux: float
  uy: float

  def sprite(self, *args, **kwargs):
    """The instance's sprite (its shape, radius, colour) at every instant."""
    kwargs.setdefault("colour", self.params.colour)
    return _sprite(self.params.spec.shape, self.params.radius, self.n, *args,
                   **kwargs)


def _bounce(p):
  amp = p.params.amplitude
  height = amp * 4.0 * p.s * (1.0 - p.s) * np.minimum(p.interval / p.period,
                                                      1.5)
  squash = 0.3 * np.exp(-p.since / 0.05)
  return [p.sprite(p.cx, p.cy + 0.5 * amp - height, scale_x=1 + squash,
                   scale_y=1 - squash)]


def _ping_pong(p):
  along = p.parity * p.params.amplitude * (p.s - 0.5)
  return [p.sprite(p.cx + along * p.ux, p.cy + along * p.uy)]


def _pulse(p):
  colour = p.params.colour
  scale = 1.0 + 0.5 * p.flash
  lit = colour + (1.0 - colour) * 0.7 * p.flash[:, None]
  return [p.sprite(p.cx, p.cy, scale, scale, colour=lit)]


def _collide(p):
  # Faces meet at the events (a semicircle's centre is on its flat side).
  r = p.params.radius
  offset = (r * _HALF_WIDTH[p.params.spec.shape] +
            0.5 * p.params.amplitude * np.sin(np.pi * p.s))
  return [p.sprite(p.cx + sign * offset * p.ux, p.cy + sign * offset * p.uy,
                   angle=p.params.axis_angle + (0.0 if sign > 0 else np.pi))
          for sign in (-1.0, 1.0)]


def _pop_or_ripple(p):
  params = p.params
  sprites = []
  for back in (1, 0):  # the previous event's sprite, then the current one
    index = np.maximum(p.k - back, 0)
    age = p.times - params.event_times[index]
    if params.spec.motion == "pop":
      point = params.event_points[index]
      scale = 1.0 - 0.7 * np.exp(-age / 0.03)
      sprites.append(p.sprite(
          p.cx + 0.5 * params.amplitude * point[:, 0],
          p.cy + 0.5 * params.amplitude * point[:, 1], scale, scale,
          alpha=np.exp(-age / 0.25)))
    else:
      scale = 0.4 + 1.6 * age / p.period
      sprites.append(p.sprite(
          p.cx, p.cy, scale, scale, alpha=1.0 - age / (1.6 * p.period),
          outline=max(1.5, 0.25 * params.radius)))
  return sprites


def _spin(p):
  turn = np.clip(p.since / 0.1, 0.0, 1.0)
  turn = turn * turn * (3.0 - 2.0 * turn)
  scale = 1.0 + 0.2 * p.flash
  return [p.sprite(p.cx, p.cy, scale, scale,
                   angle=p.params.axis_angle + 0.25 * np.pi * (p.k + turn))]


def _zigzag(p):
  # Hit the walls of a box in turn (left, top, right, bottom), away from
  # the corners, so every interval crosses a good part of the box.
  points = 0.6 * p.params.event_points
  wall = np.arange(len(points)) % 4
  points[wall == 0, 0], points[wall == 2, 0] = -1.0, 1.0
  points[wall == 1, 1], points[wall == 3, 1] = -1.0, 1.0
  position = points[p.k] + (points[p.k + 1] - points[p.k]) * p.s[:, None]
  amp = p.params.amplitude
  return [p.sprite(p.cx + 0.5 * amp * position[:, 0],
                   p.cy + 0.5 * amp * position[:, 1])]


def _pendulum(p):
  r = p.params.radius
  length = 0.5 * p.params.amplitude + r
  pivot_y = p.cy - 0.6 * length
  phi = p.parity * p.params.swing_angle * np.cos(np.pi * p.s)
  bob_x = p.cx + length * np.sin(phi)
  bob_y = pivot_y + length * np.cos(phi)
  rod = _sprite(
      "square", 0.5 * length, p.n, 0.5 * (p.cx + bob_x),
      0.5 * (pivot_y + bob_y),
      scale_x=max(1.0, 0.12 * r) / (0.5 * length * 0.85), scale_y=1 / 0.85,
      angle=-phi, colour=p.params.colour)
  return [rod, p.sprite(bob_x, bob_y, angle=-phi)]


def _drop(p):
  amp = p.params.amplitude
  point = p.params.event_points[p.k]
  return [p.sprite(p.cx + 0.3 * amp * point[:, 0],
                   p.cy - 0.5 * amp + amp * (p.s * p.s))]


_MOTIONS = {"bounce": _bounce, "ping_pong": _ping_pong, "pulse": _pulse,
            "collide": _collide, "pop": _pop_or_ripple,
            "ripple": _pop_or_ripple, "spin": _spin, "zigzag": _zigzag,
            "pendulum": _pendulum, "drop": _drop}


def _shape_distance(shape, u, v):
  """Signed distance to a shape of nominal radius 1 in local coordinates."""
  if shape == "circle":
    return np.sqrt(u * u + v * v) - 1.0
  if shape == "semicircle":  # the half disc u >= 0
    return np.maximum(np.sqrt(u * u + v * v) - 1.1, -u)
  if shape == "star":  # five points; distance along the ray, approximate
    radius = np.sqrt(u * u + v * v)
    boundary = 1.15 - 0.45 * (0.5 + 0.5 * np.cos(5.0 * np.arctan2(u, -v)))
    return 0.8 * (radius - boundary)
  if shape == "ring":
    return np.abs(np.sqrt(u * u + v * v) - 0.75) - 0.28
  if shape in ("square", "cross", "bar"):
    half_extents = {"square": ((0.85, 0.85),), "bar": ((1.0, 0.45),),
                    "cross": ((1.0, 0.35), (0.35, 1.0))}[shape]
    distance = None
    for hx, hy in half_extents:
      qx, qy = np.abs(u) - hx, np.abs(v) - hy
      box = (np.sqrt(np.maximum(qx, 0.0)**2 + np.maximum(qy, 0.0)**2) +
             np.minimum(np.maximum(qx, qy), 0.0))
      distance = box if distance is None else np.minimum(distance, box)
    return distance
  if shape == "diamond":
    return (np.abs(u) + np.abs(v) - 1.15) / math.sqrt(2.0)
  if shape == "triangle":
    # Equilateral triangle pointing up (image y grows downwards).
    k = math.sqrt(3.0)
    px = np.abs(u) - 1.0
    py = -v + 1.0 / k
    fold = px + k * py > 0.0
    px, py = (np.where(fold, (px - k * py) / 2.0, px),
              np.where(fold, (-k * px - py) / 2.0, py))
    px = px - np.clip(px, -2.0, 0.0)
    return -np.sqrt(px * px + py * py) * np.sign(py)
  raise ValueError(f"unknown shape {shape!r}")


def _composite(frames, sprite):
  """Alpha-blends an anti-aliased sprite into float frames [T, H, W, 3]."""
  num_frames, height, width, _ = frames.shape
  extent = sprite.radius * max(sprite.scale_x.max(), sprite.scale_y.max())
  half = int(math.ceil(1.25 * extent + sprite.outline + 2))
  box = 2 * half + 1
  x0 = np.floor(sprite.x).astype(np.int64) - half
  y0 = np.floor(sprite.y).astype(np.int64) - half
  # float32 halves the cost of the per-pixel maths.
  def column(values):
    return np.asarray(values, np.float32)[:, None, None]
  offsets = np.arange(box, dtype=np.float32)
  dx = column(x0 - sprite.x) + offsets[None, None, :]
  dy = column(y0 - sprite.y) + offsets[None, :, None]
  cos, sin = column(np.cos(sprite.angle)), column(np.sin(sprite.angle))
  scale_x = column(sprite.radius * sprite.scale_x)
  scale_y = column(sprite.radius * sprite.scale_y)
  u = (dx * cos + dy * sin) / scale_x
  v = (-dx * sin + dy * cos) / scale_y
  distance = _shape_distance(sprite.shape, u, v) * np.minimum(scale_x, scale_y)
  if sprite.outline:
    distance = np.abs(distance) - 0.5 * sprite.outline
  coverage = np.clip(0.5 - distance, 0.0, 1.0, dtype=np.float32)
  coverage *= sprite.alpha.astype(np.float32)[:, None, None]
  colour = sprite.colour.astype(np.float32)
  for t in range(num_frames):
    if sprite.alpha[t] < 1e-3:
      continue
    top, left = max(y0[t], 0), max(x0[t], 0)
    bottom, right = min(y0[t] + box, height), min(x0[t] + box, width)
    if top >= bottom or left >= right:
      continue
    cover = coverage[t, top - y0[t]:bottom - y0[t],
                     left - x0[t]:right - x0[t], None]
    region = frames[t, top:bottom, left:right]
    region += cover * (colour[t] - region)


def _upsample(grid, height, width):
  """Bilinear upsampling of a small 2-D grid to [height, width]."""
  rows = np.linspace(0.0, grid.shape[0] - 1.0, height)
  cols = np.linspace(0.0, grid.shape[1] - 1.0, width)
  r0 = np.minimum(rows.astype(np.int64), grid.shape[0] - 2)
  c0 = np.minimum(cols.astype(np.int64), grid.shape[1] - 2)
  fr, fc = (rows - r0)[:, None], (cols - c0)[None, :]
  top = grid[r0][:, c0] * (1 - fc) + grid[r0][:, c0 + 1] * fc
  bottom = grid[r0 + 1][:, c0] * (1 - fc) + grid[r0 + 1][:, c0 + 1] * fc
  return top * (1 - fr) + bottom * fr


def render_background(params):
  """Returns the static background, float32 [size, size, 3] in [0, 1]."""
  spec = params.background
  size = params.size
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
  kind = spec["kind"]
  if kind == "plain":
    mix = np.zeros((size, size))
  elif kind == "blobs":
    grid = np.random.default_rng(spec["seed"]).uniform(
        size=(spec["cells"], spec["cells"]))
    mix = _upsample(grid, size, size)
  else:
    along = xx * math.cos(spec["angle"]) + yy * math.sin(spec["angle"])
    wave = np.sin(2 * math.pi * spec["frequency"] * along + spec["phase"])
    if kind == "checker":
      across = -xx * math.sin(spec["angle"]) + yy * math.cos(spec["angle"])
      wave = np.tanh(4.0 * wave * np.sin(
          2 * math.pi * spec["frequency"] * across))
    mix = 0.5 + 0.5 * wave
  first, second = spec["colours"]
  return (first + (second - first) * mix[..., None]).astype(np.float32)


def render_video(params, fps=25, times=None):
  """Renders the frames of one instance.

  Args:
    params: `InstanceParams`.
    fps: frame rate; frame i is at i / fps.
    times: optional instants overriding the frame times.

  Returns:
    uint8 [T, size, size, 3] RGB.
  """
  if times is None:
    times = np.arange(int(round(params.duration * fps))) / float(fps)
  times = np.asarray(times, np.float64)
  background = render_background(params)
  frames = np.repeat(background[None], len(times), axis=0)
  for sprite in sprites_at(params, times):
    _composite(frames, sprite)
  return np.clip(frames * 255.0 + 0.5, 0.0, 255.0).astype(np.uint8)


# ----------------------------------------------------------------------------
# Audio.


def _band_noise(rng, length, sample_rate, low, high):
  """White noise restricted to [low, high] Hz, unit peak."""
  spectrum = np.fft.rfft(rng.standard_normal(length))
  freqs = np.fft.rfftfreq(length, 1.0 / sample_rate)
  spectrum[(freqs < low) | (freqs > high)] = 0.0
  noise = np.fft.irfft(spectrum, length)
  return noise / (np.abs(noise).max() + 1e-12)


def _event_sound(timbre, pitch, sample_rate, rng):
  """Synthesises the sound of one event, peak 1, with a sharp onset."""
  nyquist = 0.45 * sample_rate
  pitch = min(pitch, nyquist)
  durations = {"knock": 0.12, "beep": 0.14, "bell": 0.6, "clack": 0.05,
               "chirp_up": 0.12, "chirp_down": 0.25, "buzz": 0.18,
               "hihat": 0.06, "pluck": 0.4, "thud": 0.2}
  length = int(durations[timbre] * sample_rate)
  t = np.arange(length) / sample_rate
  attack = np.minimum(t / 0.002, 1.0)
  two_pi = 2.0 * math.pi

  def glide(start, end, seconds):
    freq = np.minimum(start * (end / start)**np.minimum(t / seconds, 1.0),
                      nyquist)
    return two_pi * np.cumsum(freq) / sample_rate

  if timbre == "knock":
    wave = (np.sin(two_pi * pitch * t) * np.exp(-t / 0.025) +
            0.6 * np.sin(two_pi * min(2.76 * pitch, nyquist) * t) *
            np.exp(-t / 0.015) +
            0.3 * rng.standard_normal(length) * np.exp(-t / 0.003))
  elif timbre == "beep":
    wave = np.sin(two_pi * pitch * t) * np.exp(-t / 0.06)
  elif timbre == "bell":
    modulation = 2.5 * np.exp(-t / 0.15) * np.sin(two_pi * 1.41 * pitch * t)
    wave = np.sin(two_pi * pitch * t + modulation) * np.exp(-t / 0.2)
  elif timbre == "clack":
    wave = (_band_noise(rng, length, sample_rate, 0.6 * pitch, 1.6 * pitch) *
            np.exp(-t / 0.008))
  elif timbre == "chirp_up":
    wave = np.sin(glide(pitch, 2.5 * pitch, 0.12)) * np.exp(-t / 0.05)
  elif timbre == "chirp_down":
    wave = np.sin(glide(2.0 * pitch, 0.7 * pitch, 0.25)) * np.exp(-t / 0.1)
  elif timbre == "buzz":
    harmonics = [h for h in (1, 3, 5, 7, 9) if h * pitch < nyquist]
    wave = sum(np.sin(two_pi * h * pitch * t) / h for h in harmonics)
    wave = wave * np.exp(-t / 0.07)
  elif timbre == "hihat":
    wave = (_band_noise(rng, length, sample_rate, 0.7 * pitch, nyquist) *
            np.exp(-t / 0.012))
  elif timbre == "pluck":
    harmonics = [h for h in range(1, 9) if h * pitch < nyquist]
    wave = sum(np.sin(two_pi * h * pitch * t) / h *
               np.exp(-t * h**0.7 / 0.15) for h in harmonics)
  elif timbre == "thud":
    freq = np.minimum(pitch * (1.0 + 3.0 * np.exp(-t / 0.015)), nyquist)
    wave = (np.sin(two_pi * np.cumsum(freq) / sample_rate) *
            np.exp(-t / 0.06) +
            0.2 * rng.standard_normal(length) * np.exp(-t / 0.004))
  else:
    raise ValueError(f"unknown timbre {timbre!r}")
  wave = wave * attack
  return wave / (np.abs(wave).max() + 1e-12)


def render_audio(params, sample_rate=48000):
  """Renders the mono soundtrack of one instance.

  Every event of `params.event_times` starts a sound at its exact sample.

  Args:
    params: `InstanceParams`.
    sample_rate: samples per second.

  Returns:
    float32 [round(duration * sample_rate)] in [-1, 1].
  """
  rng = np.random.default_rng(params.audio_seed)
  num_samples = int(round(params.duration * sample_rate))
  sound = _event_sound(params.spec.timbre,
                       params.spec.pitch_hz * params.pitch_factor,
                       sample_rate, rng)
  audio = np.zeros(num_samples + len(sound), np.float64)
  for time, event_gain in zip(params.event_times, params.event_gains):
    onset = int(round(time * sample_rate))
    if onset >= num_samples or onset + len(sound) <= 0:
      continue
    start = max(onset, 0)
    audio[start:onset + len(sound)] += (params.gain * event_gain *
                                        sound[start - onset:])
  audio = audio[:num_samples]
  # Pink-ish noise floor: white noise with a 1/sqrt(f) spectrum.
  spectrum = np.fft.rfft(rng.standard_normal(num_samples))
  freqs = np.fft.rfftfreq(num_samples, 1.0 / sample_rate)
  noise = np.fft.irfft(spectrum / np.sqrt(np.maximum(freqs, 20.0)),
                       num_samples)
  audio += params.noise_rms * noise / (noise.std() + 1e-12)
  hum_hz, hum_amplitude = params.hum
  if hum_amplitude:
    t = np.arange(num_samples) / sample_rate
    audio += hum_amplitude * (np.sin(2 * math.pi * hum_hz * t) +
                              0.5 * np.sin(4 * math.pi * hum_hz * t))
  return np.clip(audio, -1.0, 1.0).astype(np.float32)


# ----------------------------------------------------------------------------
# Dataset planning and writing.


def plan_splits(num_classes, videos_per_class, val_fraction, seed):
  """Assigns each video to train or val, stratified per class.

  Each class gets round(val_fraction * videos_per_class) val videos, at least
  one and at most videos_per_class - 1 when val_fraction > 0 and the class
  has two or more videos.

  Args:
    num_classes: number of classes.
    videos_per_class: videos per class.
    val_fraction: fraction of each class in val.
    seed: dataset seed.

  Returns:
    list (per class) of lists of "train" / "val".
  """
  rng = np.random.default_rng([seed, 1])
  num_val = int(round(val_fraction * videos_per_class))
  if val_fraction > 0 and videos_per_class >= 2:
    num_val = min(max(num_val, 1), videos_per_class - 1)
  splits = []
  for _ in range(num_classes):
    chosen = set(rng.permutation(videos_per_class)[:num_val].tolist())
    splits.append(["val" if i in chosen else "train"
                   for i in range(videos_per_class)])
  return splits


def plan_audio_sources(class_ids, splits, faulty_positive_rate, seed):
  """Chooses which videos are faulty positives and whose audio they get.

  In the training split, round(rate * split size) videos chosen at random
  get the audio of a random training video of another class (of any split
  when the training split has one class only). Other splits stay clean: they
  are what evaluation scores.

  Args:
    class_ids: [N] class id of each video.
    splits: [N] split name of each video.
    faulty_positive_rate: fraction of faulty videos, in [0, 1].
    seed: dataset seed.

  Returns:
    int array [N]: index of the video whose audio each video carries (its
    own index when it is not faulty).
  """
  class_ids = np.asarray(class_ids)
  splits = np.asarray(splits)
  rng = np.random.default_rng([seed, 2])
  sources = np.arange(len(class_ids))
  if faulty_positive_rate <= 0:
    return sources
  if TRAIN_SPLIT in splits:
    members = np.flatnonzero(splits == TRAIN_SPLIT)
    num_faulty = int(round(faulty_positive_rate * len(members)))
    for video in rng.permutation(members)[:num_faulty]:
      candidates = members[class_ids[members] != class_ids[video]]
      if len(candidates) == 0:
        candidates = np.flatnonzero(class_ids != class_ids[video])
      sources[video] = candidates[rng.integers(0, len(candidates))]
  return sources


def instance_params(specs, class_id, video_index, seed, size, duration):
  """Returns the deterministic `InstanceParams` of one video of the dataset."""
  rng = np.random.default_rng([seed, 3, class_id, video_index])
  return sample_instance(specs[class_id], rng, size=size, duration=duration)


def _write_video(task):
  """Renders and writes one video; runs in a worker process."""
  (path, class_id, video_index, source, num_classes, seed, size, duration,
   fps, sample_rate) = task
  specs = class_specs(num_classes)
  params = instance_params(specs, class_id, video_index, seed, size, duration)
  audio_params = params
  if source != (class_id, video_index):
    audio_params = instance_params(specs, source[0], source[1], seed, size,
                                   duration)
  files.makedirs(os.path.dirname(path))
  media.write_av_file(path, render_video(params, fps=fps), fps,
                      audio=render_audio(audio_params, sample_rate),
                      sample_rate=sample_rate)
  return path


def _validate(num_classes, videos_per_class, duration, size, fps, sample_rate,
              val_fraction, faulty_positive_rate, seed):
  checks = (
      (2 <= num_classes <= MAX_CLASSES, f"num_classes must be in [2, "
       f"{MAX_CLASSES}], got {num_classes}"),
      (videos_per_class >= 1, f"videos_per_class must be >= 1, got "
       f"{videos_per_class}"),
      (duration > 0, f"duration must be > 0 s, got {duration}"),
      (size >= 16 and size % 2 == 0, f"size must be an even number of pixels "
       f">= 16, got {size}"),
      (fps >= 1, f"fps must be >= 1, got {fps}"),
      (sample_rate >= 8000, f"sample_rate must be >= 8000 Hz, got "
       f"{sample_rate}"),
      (0 <= val_fraction < 1, f"val_fraction must be in [0, 1), got "
       f"{val_fraction}"),
      (0 <= faulty_positive_rate <= 1, f"faulty_positive_rate must be in "
       f"[0, 1], got {faulty_positive_rate}"),
      (seed >= 0, f"seed must be >= 0, got {seed}"),
  )
  for ok, message in checks:
    if not ok:
      raise errors.InvalidValueError(message)


def generate_dataset(output_dir, num_classes=10, videos_per_class=100,
                     duration=3.0, size=128, fps=25, sample_rate=48000,
                     val_fraction=0.2, faulty_positive_rate=0.0, seed=0,
                     num_workers=None, progress=True):
  """Writes the synthetic dataset: mp4 files and labels.csv.

  The output is a deterministic function of the arguments other than
  `num_workers` and `progress`. Existing files of the same names are
  replaced; labels.csv is written last (atomically), so its presence means
  that every video it lists is complete.

  Args:
    output_dir: destination folder.
    num_classes: number of classes (see `class_names`).
    videos_per_class: videos per class.
    duration: seconds per video.
    size: frame width and height in pixels (even).
    fps: video frame rate.
    sample_rate: audio sample rate in Hz.
    val_fraction: fraction of each class in the val split.
    faulty_positive_rate: fraction of videos per split whose audio is taken
      from a video of another class (faulty=1 in labels.csv).
    seed: dataset seed (>= 0).
    num_workers: processes rendering and encoding; None = os.cpu_count().
    progress: show a progress bar.

  Returns:
    Path of labels.csv.

  Raises:
    ValueError: if an argument is out of range.
  """
  _validate(num_classes, videos_per_class, duration, size, fps, sample_rate,
            val_fraction, faulty_positive_rate, seed)
  names = class_names(num_classes)
  video_dir = os.path.join(output_dir, VIDEOS_DIR)
  width = max(4, len(str(videos_per_class - 1)))
  split_plan = plan_splits(num_classes, videos_per_class, val_fraction, seed)
  videos = [(c, i) for c in range(num_classes)
            for i in range(videos_per_class)]
  sources = plan_audio_sources([c for c, _ in videos],
                               [split_plan[c][i] for c, i in videos],
                               faulty_positive_rate, seed)
  rows, tasks = [], []
  for number, (class_id, video_index) in enumerate(videos):
    name = names[class_id]
    relative = f"{name}/{name}_{video_index:0{width}d}.mp4"
    source = videos[sources[number]]
    rows.append((f"{VIDEOS_DIR}/{relative}", names[class_id],
                 split_plan[class_id][video_index],
                 int(sources[number] != number)))
    tasks.append((os.path.join(video_dir, relative), class_id, video_index,
                  source, num_classes, seed, size, float(duration), int(fps),
                  int(sample_rate)))

  num_workers = num_workers or os.cpu_count() or 1
  for _ in parallel.map_with_progress(
      _write_video, tasks, num_workers, "synthetic videos", unit="video",
      show_progress=progress, chunksize=4):
    pass

  labels_path = os.path.join(output_dir, LABELS_FILE)
  with files.atomic_path(labels_path) as tmp_path:
    with files.open_file(tmp_path, "w", newline="", encoding="utf-8") as f:
      writer = csv.writer(f)
      writer.writerow(CSV_COLUMNS)
      writer.writerows(rows)
  return labels_path
