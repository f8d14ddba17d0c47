"""Video operations of the input pipeline: clip sampling and augmentation.

Everything here is TensorFlow ops for `tf.data` map functions; all random
draws are stateless (`tf.random.stateless_*`) and take an explicit seed, so a
clip's augmentation depends only on its seed, never on thread scheduling.

Conventions: times in seconds from the start of the stored video; stored
frame k shows time k / stored_fps; images are uint8 or float in [0, 1] with
layout [T, H, W, 3].
"""

import functools
import math

import tensorflow as tf

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EVAL_CROP_FRACTION = 0.875
# ITU-R 601 luma, as torchvision's rgb_to_grayscale.
_GRAY_WEIGHTS = (0.299, 0.587, 0.114)
# Guards floor() against float error when a time lands exactly on a frame.
_FRAME_EPSILON = 1e-4


def sample_av_offsets(seed, video_seconds, audio_seconds_available,
                      video_clip_seconds, audio_clip_seconds, max_offsync):
  """Samples synchronised audio and video clip start times (training).

  The audio start is uniform over the range where both the audio clip and
  the video clip fit; the video start is uniform within the audio window
  extended by `max_offsync` on each side, clipped to the valid video range
  (AVID's `max_offsync_augm`). A video without audio samples its start over
  the whole video (its audio start is irrelevant: the audio is zeros).

  Args:
    seed: stateless seed, int [2].
    video_seconds: float scalar, length of the stored video.
    audio_seconds_available: float scalar, length of the stored audio (0 when
      there is none).
    video_clip_seconds: python float, num_frames / frame_rate.
    audio_clip_seconds: python float, length of the audio clip.
    max_offsync: python float, the largest offset in seconds between the
      video clip and the audio window.

  Returns:
    (video_start, audio_start) float32 scalars in seconds.
  """
  seeds = tf.random.experimental.stateless_split(seed, 2)
  video_seconds = tf.cast(video_seconds, tf.float32)
  audio_len = tf.cast(audio_seconds_available, tf.float32)
  audio_len = tf.where(audio_len > 0, audio_len, video_seconds)
  max_video_start = tf.maximum(video_seconds - video_clip_seconds, 0.0)
  max_audio_start = tf.maximum(
      tf.minimum(audio_len - audio_clip_seconds, max_video_start), 0.0)
  audio_start = tf.random.stateless_uniform([], seeds[0]) * max_audio_start
  low = tf.clip_by_value(audio_start - max_offsync, 0.0, max_video_start)
  high = tf.clip_by_value(
      audio_start + audio_clip_seconds + max_offsync - video_clip_seconds,
      low, max_video_start)
  video_start = low + tf.random.stateless_uniform([], seeds[1]) * (
      high - low)
  return video_start, audio_start


def uniform_clip_offsets(num_clips, video_seconds, audio_seconds_available,
                         video_clip_seconds, audio_clip_seconds):
  """Start times of `num_clips` clips uniformly spaced over a whole video.

  Clip centres are evenly spaced between the first and last positions where
  the longer of the two clips fits; audio and video clips of one index share
  their centre (so they are aligned), each start clipped to its valid range.

  Args:
    num_clips: python int.
    video_seconds: float scalar, length of the stored video.
    audio_seconds_available: float scalar, length of the stored audio (0 when
      there is none).
    video_clip_seconds: python float.
    audio_clip_seconds: python float.

  Returns:
    (video_starts, audio_starts) float32 [num_clips] in seconds.
  """
  video_seconds = tf.cast(video_seconds, tf.float32)
  audio_len = tf.cast(audio_seconds_available, tf.float32)
  longest = max(video_clip_seconds, audio_clip_seconds)
  first = longest / 2.0
  last = tf.maximum(video_seconds - longest / 2.0, first)
  if num_clips == 1:
    centres = tf.reshape((first + last) / 2.0, [1])
  else:
    centres = first + (last - first) * tf.linspace(0.0, 1.0, num_clips)
  video_starts = tf.clip_by_value(
      centres - video_clip_seconds / 2.0, 0.0,
      tf.maximum(video_seconds - video_clip_seconds, 0.0))
  audio_starts = tf.clip_by_value(
      centres - audio_clip_seconds / 2.0, 0.0,
      tf.maximum(audio_len - audio_clip_seconds, 0.0))
  return video_starts, audio_starts


def frame_indices(start_time, num_frames, frame_rate, stored_fps,
                  num_stored_frames):
  """Indices of the stored frames of a clip.

  Frame k of the clip shows time start_time + k / frame_rate and takes the
  nearest preceding stored frame. Past the end of a short video the clip
  loops over its own frames from the start (the reference's padding).

  Args:
    start_time: float scalar or [C] clip start times in seconds.
    num_frames: python int, frames per clip.
    frame_rate: python float, sampling rate of the clip in frames/s.
    stored_fps: python float, frame rate of the stored frames.
    num_stored_frames: int scalar, number of stored frames (> 0).

  Returns:
    int32 [num_frames] (or [C, num_frames]) indices into the stored frames.
  """
  start_time = tf.cast(start_time, tf.float32)
  steps = tf.range(num_frames, dtype=tf.float32) / frame_rate
  times = tf.expand_dims(start_time, -1) + steps
  indices = tf.cast(tf.floor(times * stored_fps + _FRAME_EPSILON), tf.int32)
  num_stored_frames = tf.cast(num_stored_frames, tf.int32)
  indices = tf.maximum(indices, 0)
  # Indices increase along the clip, so the valid ones form a prefix.
  num_valid = tf.reduce_sum(
      tf.cast(indices < num_stored_frames, tf.int32), axis=-1, keepdims=True)
  num_valid = tf.maximum(num_valid, 1)
  looped = tf.range(num_frames, dtype=tf.int32) % num_valid
  indices = tf.gather(indices, looped, batch_dims=indices.shape.rank - 1)
  return tf.minimum(indices, num_stored_frames - 1)


def random_resized_crop_window(seed, height, width, scale=(0.08, 1.0),
                               ratio=(3.0 / 4.0, 4.0 / 3.0), attempts=10):
  """Samples a RandomResizedCrop window (torchvision's algorithm).

  Up to `attempts` draws of an area fraction uniform in `scale` and an
  aspect ratio log-uniform in `ratio`; the first draw that fits is placed
  uniformly; if none fits, the central crop with the ratio clamped to
  `ratio`. All attempts are drawn at once (vectorised).

  Args:
    seed: stateless seed, int [2].
    height: int scalar image height.
    width: int scalar image width.
    scale: (min, max) fraction of the image area.
    ratio: (min, max) width / height aspect ratio.
    attempts: python int, draws before the fallback.

  Returns:
    int32 [4] window (offset_y, offset_x, crop_height, crop_width).
  """
  seeds = tf.random.experimental.stateless_split(seed, 4)
  height_f = tf.cast(height, tf.float32)
  width_f = tf.cast(width, tf.float32)
  area = height_f * width_f
  target_area = area * tf.random.stateless_uniform(
      [attempts], seeds[0], scale[0], scale[1])
  aspect = tf.exp(tf.random.stateless_uniform(
      [attempts], seeds[1], math.log(ratio[0]), math.log(ratio[1])))
  crop_w = tf.cast(tf.round(tf.sqrt(target_area * aspect)), tf.int32)
  crop_h = tf.cast(tf.round(tf.sqrt(target_area / aspect)), tf.int32)
  height = tf.cast(height, tf.int32)
  width = tf.cast(width, tf.int32)
  fits = ((crop_w > 0) & (crop_h > 0) & (crop_w <= width) &
          (crop_h <= height))
  first = tf.argmax(tf.cast(fits, tf.int32), output_type=tf.int32)
  any_fits = tf.reduce_any(fits)

  in_ratio = width_f / height_f
  fallback_w = tf.where(
      in_ratio < ratio[0], width_f,
      tf.where(in_ratio > ratio[1], height_f * ratio[1], width_f))
  fallback_h = tf.where(
      in_ratio < ratio[0], width_f / ratio[0],
      tf.where(in_ratio > ratio[1], height_f, height_f))
  fallback_w = tf.cast(tf.round(fallback_w), tf.int32)
  fallback_h = tf.cast(tf.round(fallback_h), tf.int32)

  crop_h = tf.where(any_fits, crop_h[first], fallback_h)
  crop_w = tf.where(any_fits, crop_w[first], fallback_w)
  position = tf.random.stateless_uniform([2], seeds[2])
  offset_y = tf.cast(tf.floor(position[0] * tf.cast(
      height - crop_h + 1, tf.float32)), tf.int32)
  offset_x = tf.cast(tf.floor(position[1] * tf.cast(
      width - crop_w + 1, tf.float32)), tf.int32)
  offset_y = tf.where(any_fits, tf.minimum(offset_y, height - crop_h),
                      (height - crop_h) // 2)
  offset_x = tf.where(any_fits, tf.minimum(offset_x, width - crop_w),
                      (width - crop_w) // 2)
  return tf.stack([offset_y, offset_x, crop_h, crop_w])


def decode_jpeg_frames(jpegs, crop_window=None):
  """Decodes JPEG frames, optionally only a crop window of each.

  With a crop window `tf.image.decode_and_crop_jpeg` decodes only the window,
  which is much cheaper than decoding whole frames and cropping.

  Args:
    jpegs: string [T] of encoded frames, T static when possible (unrolled),
      else decoded with `tf.map_fn`.
    crop_window: optional int32 [4] (offset_y, offset_x, height, width), the
      same for every frame.

  Returns:
    uint8 [T, h, w, 3].
  """
  def decode(jpeg):
    if crop_window is None:
      return tf.io.decode_jpeg(jpeg, channels=3)
    return tf.image.decode_and_crop_jpeg(jpeg, crop_window, channels=3)

  num_frames = jpegs.shape[0]
  if num_frames is not None:
    return tf.stack([decode(jpegs[i]) for i in range(num_frames)])
  return tf.map_fn(decode, jpegs,
                   fn_output_signature=tf.TensorSpec([None, None, 3],
                                                     tf.uint8))


def resize_frames(frames, height, width, antialias=True):
  """Bilinear resize of [T, h, w, 3] frames to float32 [T, height, width, 3].

  Values keep their range (uint8 input gives float values in [0, 255]). With
  `antialias`, downscaling uses a widened triangle filter like PIL's
  bilinear; upscaling is plain bilinear either way, so the cheaper kernel is
  used when neither side shrinks.
  """
  if not antialias:
    return tf.image.resize(frames, [height, width], method="bilinear")
  shape = tf.shape(frames)
  shrinks = (shape[-3] > height) | (shape[-2] > width)
  return tf.cond(
      shrinks,
      lambda: tf.image.resize(frames, [height, width], method="bilinear",
                              antialias=True),
      lambda: tf.image.resize(frames, [height, width], method="bilinear"))


def random_flip_left_right(frames, seed, probability=0.5):
  """Flips all frames of a clip horizontally with `probability`."""
  flip = tf.random.stateless_uniform([], seed) < probability
  return tf.cond(flip, lambda: tf.reverse(frames, axis=[-2]),
                 lambda: frames)


# Colour operations work on planes: a tuple (red, green, blue) of [T, H, W]
# tensors. On CPU, per-channel arithmetic on an interleaved [..., 3] tensor
# goes through slow broadcasting kernels, while plane arithmetic is plain
# elementwise work; one unstack/stack pair per clip is much cheaper.


def to_planes(frames):
  """Splits [..., 3] RGB frames into a (red, green, blue) tuple of planes."""
  return tuple(tf.unstack(frames, num=3, axis=-1))


def from_planes(planes):
  """Stacks (red, green, blue) planes back into [..., 3] frames."""
  return tf.stack(planes, axis=-1)


def _clip01(planes):
  return tuple(tf.clip_by_value(p, 0.0, 1.0) for p in planes)


def grayscale(planes):
  """Luma of RGB planes (torchvision's rgb_to_grayscale weights)."""
  red, green, blue = planes
  return (_GRAY_WEIGHTS[0] * red + _GRAY_WEIGHTS[1] * green +
          _GRAY_WEIGHTS[2] * blue)


def adjust_brightness(planes, factor):
  """torchvision brightness: scales towards black, clipped to [0, 1]."""
  return _clip01(tuple(p * factor for p in planes))


def adjust_contrast(planes, factor):
  """torchvision contrast: blends with each frame's mean grey level.

  Args:
    planes: (red, green, blue) float planes [..., H, W] in [0, 1].
    factor: contrast factor (1 = unchanged).

  Returns:
    The adjusted planes, clipped to [0, 1].
  """
  mean = tf.reduce_mean(grayscale(planes), axis=[-2, -1], keepdims=True)
  offset = (1.0 - factor) * mean
  return _clip01(tuple(p * factor + offset for p in planes))


def adjust_saturation(planes, factor):
  """torchvision saturation: blends with the greyscale image."""
  offset = (1.0 - factor) * grayscale(planes)
  return _clip01(tuple(p * factor + offset for p in planes))


def adjust_hue(planes, delta):
  """Rotates the HSV hue by `delta` turns (torchvision's adjust_hue).

  Saturation and value are kept; written with elementwise ops on planes.

  Args:
    planes: (red, green, blue) float planes in [0, 1].
    delta: hue shift in turns, in [-0.5, 0.5].

  Returns:
    The adjusted planes.
  """
  red, green, blue = planes
  high = tf.maximum(tf.maximum(red, green), blue)
  low = tf.minimum(tf.minimum(red, green), blue)
  chroma = high - low
  # Grey pixels (chroma 0) get hue 0 from the first branch (numerator 0) and
  # come out unchanged (high - 0), so no special case is needed.
  inverse = 1.0 / tf.maximum(chroma, 1e-12)
  # Hue in sextants [0, 6): the standard piecewise RGB -> HSV formula.
  hue = tf.where(
      high == red, (green - blue) * inverse,
      tf.where(high == green, (blue - red) * inverse + 2.0,
               (red - green) * inverse + 4.0))
  hue = hue + 6.0 * delta  # in [-4, 8)
  hue = tf.where(hue < 0, hue + 6.0, hue)
  hue = tf.where(hue >= 6.0, hue - 6.0, hue)

  def channel(n):
    # HSV -> RGB: v - v*s*clip(min(k, 4 - k), 0, 1), k = (n + hue) mod 6,
    # with v = high and v*s = chroma.
    k = hue + n
    k = tf.where(k >= 6.0, k - 6.0, k)
    return high - chroma * tf.clip_by_value(tf.minimum(k, 4.0 - k), 0.0, 1.0)

  return channel(5.0), channel(3.0), channel(1.0)


# ~60 elementwise ops; XLA fuses them (about 2x faster on CPU, compiles in
# a fraction of a second per shape).
_adjust_hue_xla = tf.function(adjust_hue, jit_compile=True)


def color_jitter_params(seed, brightness=0.4, contrast=0.4, saturation=0.4,
                        hue=0.2):
  """Draws one clip's ColorJitter parameters (torchvision's distributions).

  Args:
    seed: stateless seed, int [2].
    brightness: strength x: factor uniform in [max(0, 1 - x), 1 + x].
    contrast: as brightness.
    saturation: as brightness.
    hue: strength in turns (at most 0.5): shift uniform in [-hue, hue].

  Returns:
    (factors, order): float32 [4] (brightness, contrast, saturation factors
    and hue shift; 1, 1, 1, 0 for a zero strength) and int32 [4], the random
    order in which the four adjustments are applied.
  """
  seeds = tf.random.experimental.stateless_split(seed, 5)
  factors = []
  for strength, op_seed in zip((brightness, contrast, saturation),
                               tf.unstack(seeds[:3])):
    factors.append(tf.random.stateless_uniform(
        [], op_seed, max(0.0, 1.0 - strength), 1.0 + strength)
                   if strength > 0 else tf.constant(1.0))
  factors.append(tf.random.stateless_uniform([], seeds[3], -hue, hue)
                 if hue > 0 else tf.constant(0.0))
  order = tf.random.experimental.stateless_shuffle(
      tf.range(4, dtype=tf.int32), seeds[4])
  return tf.stack(factors), order


def jitter_enabled(brightness, contrast, saturation, hue):
  """`apply_color_jitter`'s static flags: the adjustments of non-zero
  strength."""
  return (brightness > 0, contrast > 0, saturation > 0, hue > 0)


def apply_color_jitter(planes, factors, order, enabled=(True,) * 4):
  """Applies brightness, contrast, saturation and hue in the given order.

  Args:
    planes: (red, green, blue) float planes in [0, 1].
    factors: float32 [4] from `color_jitter_params`.
    order: int32 [4] from `color_jitter_params`.
    enabled: static flags per adjustment; a disabled one is skipped exactly.

  Returns:
    The adjusted planes, in [0, 1].
  """
  adjustments = (adjust_brightness, adjust_contrast, adjust_saturation,
                 _adjust_hue_xla)
  planes = tuple(planes)
  if not any(enabled):
    return planes

  def apply_one(position, current):
    branches = [
        functools.partial(adjust, current, factors[i]) if enabled[i]
        else functools.partial(tuple, current)
        for i, adjust in enumerate(adjustments)]
    return position + 1, tuple(tf.switch_case(order[position], branches))

  # A loop keeps one copy of each adjustment in the graph (not one per
  # position), which keeps tracing and graph optimisation fast.
  _, planes = tf.while_loop(lambda position, _: position < 4, apply_one,
                            (tf.constant(0), planes),
                            maximum_iterations=4)
  return tuple(planes)


def color_jitter(frames, seed, brightness=0.4, contrast=0.4, saturation=0.4,
                 hue=0.2):
  """torchvision ColorJitter with one draw per clip and a random op order.

  Args:
    frames: float32 [..., 3] in [0, 1], or a (red, green, blue) tuple of
      planes (then planes are returned).
    seed: stateless seed, int [2].
    brightness: strength (0 skips), see `color_jitter_params`.
    contrast: strength (0 skips).
    saturation: strength (0 skips).
    hue: strength in turns (0 skips).

  Returns:
    Jittered frames in the layout of `frames`, in [0, 1].
  """
  interleaved = not isinstance(frames, (tuple, list))
  planes = to_planes(frames) if interleaved else tuple(frames)
  factors, order = color_jitter_params(seed, brightness, contrast,
                                       saturation, hue)
  planes = apply_color_jitter(
      planes, factors, order,
      jitter_enabled(brightness, contrast, saturation, hue))
  return from_planes(planes) if interleaved else planes


def resize_clip(frames, seed, crop_size, flip_probability=0.5,
                antialias=True):
  """Flips and resizes a cropped clip to crop_size², rounded to uint8.

  The flip is of the uint8 crop: bilinear resizing is mirror-symmetric, so
  this equals flipping the output and moves fewer bytes. The result is
  rounded to uint8, as PIL's resize (the reference's) returns, so that
  batches can carry uint8 frames and the float work run elsewhere
  (`finish_clip`).

  Args:
    frames: uint8 [T, h, w, 3] crop.
    seed: stateless seed of the flip, int [2].
    crop_size: python int output side.
    flip_probability: probability of a horizontal flip.
    antialias: see `resize_frames`.

  Returns:
    uint8 [T, crop_size, crop_size, 3].
  """
  frames = random_flip_left_right(frames, seed, flip_probability)
  return _round_to_uint8(resize_frames(frames, crop_size, crop_size,
                                       antialias))


def _round_to_uint8(pixels):
  """Rounds resized pixel values to uint8 (half up).

  Bilinear weights are non-negative and sum to one, so the values lie in
  [0, 255] up to float error: adding 0.5 and truncating needs no clip (two
  passes over the pixels instead of four).
  """
  return tf.cast(pixels + 0.5, tf.uint8)


def _unit_planes(frames):
  """uint8 [..., 3] frames as (red, green, blue) float32 planes in [0, 1]."""
  return tuple(tf.cast(p, tf.float32) * (1.0 / 255.0)
               for p in to_planes(frames))


def finish_clip(frames, factors, order, enabled=(True,) * 4):
  """The per-pixel float work of a training clip: [0, 1] scaling, colour
  jitter with drawn parameters and ImageNet normalisation, on planes.

  Runs in the input pipeline, or inside the model's step on the
  accelerator (`finish_batch`) when batches carry uint8 frames.

  Args:
    frames: uint8 [T, H, W, 3] (from `resize_clip`).
    factors: float32 [4] from `color_jitter_params`.
    order: int32 [4] from `color_jitter_params`.
    enabled: static flags per adjustment (see `apply_color_jitter`).

  Returns:
    float32 [T, H, W, 3] normalised frames.
  """
  return normalize_imagenet(jitter_clip(frames, factors, order, enabled))


def jitter_clip(frames, factors, order, enabled=(True,) * 4):
  """uint8 frames to [0, 1] planes, colour-jittered (`finish_clip`'s first
  part).

  Returns:
    (red, green, blue) float32 planes [T, H, W].
  """
  return apply_color_jitter(_unit_planes(frames), factors, order, enabled)


def scale_and_normalize(frames):
  """uint8 frames to normalised float32, as `finish_clip` without jitter:
  how evaluation and fine-tuning prepare what training finished.

  Args:
    frames: uint8 [..., H, W, 3].

  Returns:
    float32 [..., H, W, 3].
  """
  return normalize_imagenet(_unit_planes(frames))


def finish_batch(video, factors, order):
  """`finish_clip` over a batch, each clip with its own jitter parameters.

  A disabled jitter strength was drawn as the identity (factor 1, hue shift
  0), so every adjustment is applied here; the hue round trip then changes
  values only by float32 rounding.

  Args:
    video: uint8 [B, T, H, W, 3].
    factors: float32 [B, 4].
    order: int32 [B, 4].

  Returns:
    float32 [B, T, H, W, 3] normalised frames.
  """
  return tf.map_fn(
      lambda clip: finish_clip(*clip), (video, factors, order),
      fn_output_signature=tf.TensorSpec(video.shape[1:], tf.float32))


def augment_clip(frames, seed, crop_size, flip_probability=0.5,
                 brightness=0.4, contrast=0.4, saturation=0.4, hue=0.2,
                 antialias=True):
  """Training augmentation of a cropped clip (after RandomResizedCrop's crop).

  `resize_clip` (flip, resize to crop_size x crop_size, uint8), then
  `finish_clip` (scaling, colour jitter with one draw per clip, ImageNet
  normalisation).

  Args:
    frames: uint8 [T, h, w, 3] crop.
    seed: stateless seed, int [2].
    crop_size: python int output side.
    flip_probability: probability of a horizontal flip.
    brightness: colour jitter strength (0 skips).
    contrast: colour jitter strength (0 skips).
    saturation: colour jitter strength (0 skips).
    hue: colour jitter strength in turns (0 skips).
    antialias: see `resize_frames`.

  Returns:
    float32 [T, crop_size, crop_size, 3] normalised frames.
  """
  seeds = tf.random.experimental.stateless_split(seed, 2)
  frames = resize_clip(frames, seeds[0], crop_size, flip_probability,
                       antialias)
  factors, order = color_jitter_params(seeds[1], brightness, contrast,
                                       saturation, hue)
  return finish_clip(frames, factors, order,
                     jitter_enabled(brightness, contrast, saturation, hue))


def _normalize_planes(red, green, blue):
  return from_planes(tuple(
      (plane - mean) * (1.0 / std)
      for plane, mean, std in zip((red, green, blue), IMAGENET_MEAN,
                                  IMAGENET_STD)))


# Interleaving planes into [..., 3] op by op costs ~1 ms per 8x112x112 clip
# on CPU (the stack kernel copies one float at a time); XLA fuses it with the
# normalisation into one loop, ~3x faster. Compiles in well under a second
# per shape.
_normalize_planes_xla = tf.function(_normalize_planes, jit_compile=True)


def normalize_imagenet(frames):
  """Maps [0, 1] RGB to ImageNet mean/std normalised values.

  Args:
    frames: float [..., 3], or a (red, green, blue) tuple of planes (then
      the stacking into [..., 3] is compiled with XLA, fused with the
      normalisation).

  Returns:
    float32 [..., 3] normalised frames.
  """
  if isinstance(frames, (tuple, list)):
    return _normalize_planes_xla(*frames)
  mean = tf.constant(IMAGENET_MEAN, tf.float32)
  std = tf.constant(IMAGENET_STD, tf.float32)
  return (frames - mean) / std


def eval_resize_and_center_crop(frames, crop_size):
  """Resizes the short side to crop_size / 0.875 and centre-crops.

  Args:
    frames: uint8 [T, H, W, 3] (or [C, T, H, W, 3]).
    crop_size: python int output side.

  Returns:
    uint8 [..., crop_size, crop_size, 3], rounded as training's
    `resize_clip` rounds; `scale_and_normalize` finishes them.
  """
  resize_to = int(round(crop_size / EVAL_CROP_FRACTION))
  shape = tf.shape(frames)
  height, width = shape[-3], shape[-2]
  short = tf.minimum(height, width)
  new_h = tf.cast(tf.round(tf.cast(height * resize_to, tf.float32) /
                           tf.cast(short, tf.float32)), tf.int32)
  new_w = tf.cast(tf.round(tf.cast(width * resize_to, tf.float32) /
                           tf.cast(short, tf.float32)), tf.int32)
  new_h = tf.where(short == resize_to, height, new_h)
  new_w = tf.where(short == resize_to, width, new_w)
  leading = shape[:-3]
  flat = tf.reshape(frames, tf.concat([[-1], shape[-3:]], 0))
  resized = tf.image.resize(flat, [new_h, new_w], method="bilinear",
                            antialias=True)
  top = (new_h - crop_size) // 2
  left = (new_w - crop_size) // 2
  cropped = resized[:, top:top + crop_size, left:left + crop_size, :]
  return tf.reshape(_round_to_uint8(cropped), tf.concat(
      [leading, [crop_size, crop_size, 3]], 0))
