"""Throughput of the training input pipeline against direct video decoding.

`benchmark_input_pipeline` measures training clips per second of
`pipeline.make_train_dataset` (JPEG frames in TFRecords, everything in TF
ops) and of the alternative design the pipeline replaces: decoding the .mp4
files with PyAV inside tf.data (`tf.numpy_function` per clip: open, seek to
the sampled offset, decode the clip's frames and audio) followed by the same
TF augmentation and spectrogram. Without a dataset it writes a small
synthetic one (real H.264/AAC files plus the matching records) first.
"""

import os
import tempfile
import time

import av
import numpy as np
import tensorflow as tf

from avid_tf.data import audio_ops
from avid_tf.data import media
from avid_tf.data import pipeline
from avid_tf.data import schema
from avid_tf.data import video_ops

_STORED_FPS = 16
_SAMPLE_RATE = 24000
_SHORT_SIDE = 128


def _synthetic_video(rng, num_frames, height, width):
  """Smooth moving shapes on a gradient with mild noise: JPEG/H.264 sizes
  close to natural video, unlike white noise."""
  yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
  colours = rng.uniform(40, 215, size=(3, 3))
  base = (colours[0] * (yy / height)[..., None] +
          colours[1] * (xx / width)[..., None]) / 2 + colours[2] / 2
  centre = rng.uniform([0, 0], [height, width])
  velocity = rng.uniform(-3, 3, size=2)
  radius = rng.uniform(10, 30)
  shape_colour = rng.uniform(0, 255, size=3)
  frames = np.empty((num_frames, height, width, 3), np.uint8)
  for k in range(num_frames):
    cy, cx = centre + k * velocity
    inside = ((yy - cy % height) ** 2 + (xx - cx % width) ** 2) < radius**2
    frame = np.where(inside[..., None], shape_colour, base)
    frame = frame + rng.normal(scale=4.0, size=frame.shape)
    frames[k] = np.clip(frame, 0, 255).astype(np.uint8)
  return frames


def _synthetic_audio(rng, seconds, rate):
  t = np.arange(int(seconds * rate)) / rate
  tone = rng.uniform(200, 2000)
  envelope = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.5, 3) * t)
  return (0.3 * envelope * np.sin(2 * np.pi * tone * t) +
          0.02 * rng.standard_normal(t.shape)).astype(np.float32)


def write_synthetic_av_dataset(output_dir, num_videos=32, seed=0,
                               size=(_SHORT_SIDE, 170), seconds=(3.0, 5.0)):
  """Writes mp4 files and the matching avid_tf dataset for the benchmark.

  Videos: 128 pixels short side (128x170), 16-25 fps, 3-5 s, audio at 24 or
  48 kHz. Records: frames at 16 fps (nearest preceding source frame) as
  JPEG quality 90, audio at 24 kHz int16, spectrogram statistics of the
  written audio.

  Args:
    output_dir: folder to write `videos/` and `dataset/` under.
    num_videos: number of videos.
    seed: seed of the content.
    size: (height, width) of the frames, even numbers.
    seconds: (min, max) video length.

  Returns:
    (dataset_dir, video_dir).
  """
  rng = np.random.default_rng(seed)
  video_dir = os.path.join(output_dir, "videos")
  data_dir = os.path.join(output_dir, "dataset")
  os.makedirs(video_dir, exist_ok=True)
  os.makedirs(data_dir, exist_ok=True)
  features = schema.features()
  records = []
  spectrograms = []
  for index in range(num_videos):
    fps = int(rng.choice([16, 20, 24, 25]))
    length = float(rng.uniform(*seconds))
    rate = int(rng.choice([24000, 48000]))
    frames = _synthetic_video(rng, int(length * fps), *size)
    audio = _synthetic_audio(rng, length, rate)
    video_id = f"video_{index:04d}.mp4"
    media.write_av_file(os.path.join(video_dir, video_id), frames, fps,
                        audio=audio, sample_rate=rate)
    stored = np.floor(np.arange(int(length * _STORED_FPS)) / _STORED_FPS *
                      fps + 1e-4).astype(int)
    stored = stored[stored < len(frames)]
    jpegs = [tf.io.encode_jpeg(frames[k], quality=90).numpy() for k in stored]
    audio_24k = audio if rate == _SAMPLE_RATE else (
        audio[:len(audio) // 2 * 2].reshape(-1, 2).mean(1))
    pcm = np.round(np.clip(audio_24k, -1, 1) * 32767).astype(np.int16)
    spectrograms.append(audio_ops.log_spectrogram(
        pcm[:2 * _SAMPLE_RATE].astype(np.float32) / 32768.0,
        num_frames=200).numpy())
    records.append(features.serialize_example({
        "video_id": video_id, "frames": jpegs, "audio": pcm, "label": -1,
        "index": index, "duration": length}))
  name = "benchmark"
  num_shards = 2
  shard_lengths = []
  for shard in range(num_shards):
    shard_records = records[shard::num_shards]
    schema.write_shard(
        schema.shard_path(data_dir, name, "train", shard, num_shards),
        shard_records)
    shard_lengths.append(len(shard_records))
  spectrograms = np.concatenate(spectrograms, 0)
  metadata = {
      "fps": _STORED_FPS, "short_side": min(size),
      "sample_rate": _SAMPLE_RATE, "label_names": [],
      "spectrogram_mean": spectrograms.mean(0).tolist(),
      "spectrogram_std": spectrograms.std(0).tolist(),
      "num_videos": {"train": num_videos}}
  schema.write_dataset_info(data_dir, name, {"train": shard_lengths},
                            metadata)
  return data_dir, video_dir


def clips_per_second(dataset, num_batches, warmup_batches):
  """Throughput of a batched dataset after `warmup_batches` batches.

  Returns:
    (clips per wall-clock second, clips per CPU-second of this process);
    the second figure is what one core sustains, and is less sensitive to
    other processes sharing the machine.
  """
  iterator = iter(dataset)
  for _ in range(warmup_batches):
    next(iterator)
  wall_start = time.perf_counter()
  cpu_start = time.process_time()
  clips = 0
  for _ in range(num_batches):
    batch = next(iterator)
    clips += int(tf.shape(batch["index"])[0])
  wall = time.perf_counter() - wall_start
  cpu = time.process_time() - cpu_start
  return clips / wall, clips / cpu


def _decode_clip_with_pyav(path, video_start, audio_start, num_frames,
                           frame_rate, audio_samples, sample_rate):
  """Decodes one AV clip from a media file with PyAV.

  Seeks to `video_start`, keeps for each clip frame time the nearest
  preceding decoded frame (repeating the last one past the end), then seeks
  to `audio_start` and decodes, downmixes and resamples `audio_samples`
  samples (zeros where there is no audio).

  Returns:
    (uint8 [num_frames, H, W, 3] frames, int16 [audio_samples] audio).
  """
  with av.open(path.decode() if isinstance(path, bytes) else path) as ctr:
    video_stream = ctr.streams.video[0]
    audio_stream = ctr.streams.audio[0] if ctr.streams.audio else None
    video_start = float(video_start)
    audio_start = float(audio_start)
    times = video_start + np.arange(num_frames) / frame_rate
    ctr.seek(int(video_start / video_stream.time_base), stream=video_stream,
             backward=True, any_frame=False)
    frames = []
    previous = None
    for frame in ctr.decode(video_stream):
      while (len(frames) < num_frames and
             frame.time > times[len(frames)] + 1e-6):
        frames.append(previous if previous is not None else frame)
      if len(frames) >= num_frames:
        break
      previous = frame
    while len(frames) < num_frames:
      frames.append(previous)
    images = np.stack([f.to_ndarray(format="rgb24") for f in frames])

    audio = np.zeros(audio_samples, np.int16)
    if audio_stream is not None:
      ctr.seek(int(audio_start / audio_stream.time_base),
               stream=audio_stream, backward=True, any_frame=False)
      resampler = av.AudioResampler(format="s16", layout="mono",
                                    rate=sample_rate)
      chunks = []
      first_time = None
      collected = 0
      for frame in ctr.decode(audio_stream):
        if first_time is None:
          first_time = frame.time
          needed = audio_samples + (audio_start - first_time) * sample_rate
        for out in resampler.resample(frame):
          chunk = out.to_ndarray().reshape(-1)
          chunks.append(chunk)
          collected += len(chunk)
        if collected >= needed:
          break
      if chunks:
        samples = np.concatenate(chunks)
        skip = max(int(round((audio_start - first_time) * sample_rate)), 0)
        samples = samples[skip:skip + audio_samples]
        audio[:len(samples)] = samples
  return images, audio


def make_direct_decode_dataset(video_paths, durations, batch_size,
                               num_frames=8, crop_size=112,
                               audio_seconds=2.0, frame_rate=16.0,
                               sample_rate=24000, spectrogram_mean=None,
                               spectrogram_std=None, max_offsync=0.5, seed=0):
  """The baseline: tf.data that decodes media files with PyAV per clip.

  Same AV offset sampling, augmentation and spectrogram as
  `pipeline.make_train_dataset`, but the clip's frames and audio come from
  `tf.numpy_function` decoding the container, visiting the files in turn.
  """
  audio_samples = int(round(audio_seconds * sample_rate))
  num_spec_frames = audio_ops.num_spectrogram_frames(audio_seconds)
  mean = np.zeros(audio_ops.NUM_BINS) if spectrogram_mean is None else (
      spectrogram_mean)
  std = np.ones(audio_ops.NUM_BINS) if spectrogram_std is None else (
      spectrogram_std)

  def load(path, duration, element):
    seeds = tf.random.experimental.stateless_split(
        tf.stack([tf.constant(seed, tf.int64), element]), 4)
    video_start, audio_start = video_ops.sample_av_offsets(
        seeds[0], duration, duration, num_frames / frame_rate, audio_seconds,
        max_offsync)
    images, audio = tf.numpy_function(
        lambda p, v, a: _decode_clip_with_pyav(p, v, a, num_frames,
                                               frame_rate, audio_samples,
                                               sample_rate),
        [path, video_start, audio_start], [tf.uint8, tf.int16],
        stateful=False)
    images.set_shape([num_frames, None, None, 3])
    audio.set_shape([audio_samples])
    shape = tf.shape(images)
    window = video_ops.random_resized_crop_window(seeds[1], shape[1],
                                                  shape[2])
    images = images[:, window[0]:window[0] + window[2],
                    window[1]:window[1] + window[3]]
    video = video_ops.augment_clip(images, seeds[2], crop_size)
    waveform = audio_ops.random_gain(
        audio_ops.crop_waveform(audio, 0, audio_samples), seeds[3])
    spec = audio_ops.log_spectrogram(waveform, sample_rate,
                                     num_frames=num_spec_frames)
    spec = audio_ops.normalize_spectrogram(spec, mean, std)
    return {"video": video,
            "audio": spec[..., tf.newaxis],
            "index": tf.cast(element, tf.int32)}

  files = tf.data.Dataset.from_tensor_slices(
      (list(video_paths), np.asarray(durations, np.float32))).repeat()
  dataset = tf.data.Dataset.zip(files, tf.data.Dataset.counter()).map(
      lambda file, element: load(*file, element),
      num_parallel_calls=tf.data.AUTOTUNE)
  return dataset.batch(batch_size, drop_remainder=True).prefetch(
      tf.data.AUTOTUNE)


def benchmark_input_pipeline(dataset_dir=None, video_dir=None, batch_size=32,
                             num_frames=8, crop_size=112, audio_seconds=2.0,
                             num_batches=20, warmup_batches=5,
                             baseline_batches=5, num_videos=32,
                             work_dir=None):
  """Measures the training input pipeline and the direct-decode baseline.

  Args:
    dataset_dir: an avid_tf dataset folder; None writes a synthetic one.
    video_dir: folder of the source videos of `dataset_dir` (record
      video_id paths are relative to it), for the baseline; None skips the
      baseline when `dataset_dir` is given.
    batch_size: clips per batch.
    num_frames: frames per clip.
    crop_size: frame side.
    audio_seconds: audio clip length.
    num_batches: timed batches of the pipeline.
    warmup_batches: untimed batches first (tracing, autotuning).
    baseline_batches: timed batches of the baseline (after 1 warm-up).
    num_videos: videos of the synthetic dataset.
    work_dir: where the synthetic dataset goes; None = a temporary folder.

  Returns:
    dict: clips_per_second, clips_per_second_per_core (the wall-clock rate
    over os.cpu_count()), clips_per_cpu_second (clips over this process's
    CPU time), cores, baseline_clips_per_second,
    baseline_clips_per_cpu_second, speedup (wall-clock ratio),
    speedup_per_cpu_second, load_average (1-minute load before and after),
    and the settings.
  """
  temporary = None
  if dataset_dir is None:
    if work_dir is None:
      temporary = tempfile.TemporaryDirectory()
      work_dir = temporary.name
    dataset_dir, video_dir = write_synthetic_av_dataset(work_dir, num_videos)
  try:
    load_before = os.getloadavg()[0]
    cores = os.cpu_count()
    dataset = pipeline.make_train_dataset(
        dataset_dir, batch_size, num_frames=num_frames, crop_size=crop_size,
        audio_seconds=audio_seconds)
    rate, rate_per_cpu_second = clips_per_second(dataset, num_batches,
                                                 warmup_batches)
    baseline = baseline_per_cpu_second = None
    if video_dir is not None and baseline_batches > 0:
      metadata = schema.read_metadata(dataset_dir)
      video_ids, durations = _videos_and_durations(dataset_dir)
      direct = make_direct_decode_dataset(
          [os.path.join(video_dir, v) for v in video_ids], durations,
          batch_size,
          num_frames=num_frames, crop_size=crop_size,
          audio_seconds=audio_seconds, frame_rate=float(metadata["fps"]),
          sample_rate=int(metadata["sample_rate"]),
          spectrogram_mean=metadata["spectrogram_mean"],
          spectrogram_std=metadata["spectrogram_std"])
      baseline, baseline_per_cpu_second = clips_per_second(
          direct, baseline_batches, 1)
    return {
        "clips_per_second": round(rate, 2),
        "clips_per_second_per_core": round(rate / cores, 2),
        "clips_per_cpu_second": round(rate_per_cpu_second, 2),
        "cores": cores,
        "baseline_clips_per_second": (None if baseline is None
                                      else round(baseline, 2)),
        "baseline_clips_per_cpu_second": (
            None if baseline is None else round(baseline_per_cpu_second, 2)),
        "speedup": None if baseline is None else round(rate / baseline, 2),
        "speedup_per_cpu_second": (
            None if baseline is None
            else round(rate_per_cpu_second / baseline_per_cpu_second, 2)),
        "load_average": [round(load_before, 2),
                         round(os.getloadavg()[0], 2)],
        "batch_size": batch_size, "num_frames": num_frames,
        "crop_size": crop_size, "audio_seconds": audio_seconds,
    }
  finally:
    if temporary is not None:
      temporary.cleanup()


def _videos_and_durations(dataset_dir, split="train"):
  """Source video paths (relative) and stored durations of a split."""
  builder = schema.load_builder(dataset_dir)
  paths = [os.fspath(p) for p in builder.info.splits[split].filepaths]
  ids, durations = [], []
  for record in tf.data.TFRecordDataset(paths):
    feature = tf.train.Example.FromString(record.numpy()).features.feature
    ids.append(feature["video_id"].bytes_list.value[0].decode())
    durations.append(feature["duration"].float_list.value[0])
  return ids, durations
