"""Throughput of the training input pipeline against direct video decoding.

`benchmark_input_pipeline` measures training clips per second of
`pipeline.make_train_dataset` (JPEG frames in TFRecords, everything in TF
ops) and of the design the pipeline replaces: decoding the .mp4 files with
PyAV inside tf.data (`tf.numpy_function` per clip: open, seek to the sampled
offset, decode the clip's frames and audio) followed by the same TF
augmentation and spectrogram. Both read one clip geometry, a
`preprocessing.Preprocessing`.

Without a dataset it makes one the way users do: `synthetic.generate_dataset`
writes the videos and `ingest.ingest` the records. The generator's settings
are fixed (square frames, 25 fps, 48 kHz audio, one duration for all
videos), where real collections mix frame rates, sample rates and lengths;
both designs read the same files, so the comparison holds, but absolute
rates on a real dataset differ.
"""

import os
import tempfile
import time

import av
import numpy as np
import tensorflow as tf

from avid_tf.data import audio_ops
from avid_tf.data import ingest
from avid_tf.data import pipeline
from avid_tf.data import preprocessing as preprocessing_lib
from avid_tf.data import schema
from avid_tf.data import synthetic
from avid_tf.data import video_ops

DATASET_NAME = "benchmark"
# The generator has at least two classes; the videos are split between them.
_NUM_CLASSES = 2
_TIME_EPSILON = 1e-6
# Ingest's decoding helpers: the baseline picks frames and audio samples the
# way ingest stored them.
_FrameResampler = ingest._FrameResampler  # pylint: disable=protected-access
_AudioCollector = ingest._AudioCollector  # pylint: disable=protected-access


def make_synthetic_dataset(work_dir, num_videos=32, size=128, duration=4.0,
                           seed=0, num_workers=None):
  """Generates synthetic videos and ingests them, as a user would.

  Args:
    work_dir: folder to write the videos and the dataset under.
    num_videos: videos to generate, rounded up to a multiple of the two
      classes of the generator.
    size: frame side in pixels (even), stored as it is (ingest's short
      side): 128 for 112 crops, 256 for 224 crops.
    duration: seconds per video.
    seed: seed of the content.
    num_workers: processes generating and ingesting; None = os.cpu_count().

  Returns:
    (dataset_dir, video_dir).
  """
  labels_csv = synthetic.generate_dataset(
      work_dir, num_classes=_NUM_CLASSES,
      videos_per_class=-(-num_videos // _NUM_CLASSES), duration=duration,
      size=size, val_fraction=0.0, seed=seed, num_workers=num_workers,
      progress=False)
  video_dir = os.path.join(work_dir, synthetic.VIDEOS_DIR)
  report = ingest.ingest(video_dir, work_dir, DATASET_NAME,
                         labels_csv=labels_csv, short_side=size,
                         num_workers=num_workers, show_progress=False)
  return report["dataset_dir"], video_dir


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


class _RgbFrames(_FrameResampler):
  """Ingest's frame-rate resampling, keeping the decoded RGB frames.

  The baseline crops decoded frames directly; JPEG-encoding them as ingest
  does would charge it work the design does not do.
  """

  def __init__(self, fps):
    super().__init__(fps, short_side=None, jpeg_quality=None)

  def _encode(self, frame):
    return frame.to_ndarray(format="rgb24")


def decode_clip(path, video_start, audio_start, preprocessing):
  """Decodes one AV clip from a media file: the baseline design under test.

  Each clip opens the file and seeks to its offsets, as a loader decoding
  videos on the fly does. Times are relative to the first video frame, as
  in ingested datasets. Frames follow ingest's resampling (clip frame k
  shows the decoded frame nearest at or before video_start + k /
  frame_rate, the last one repeating past the end); audio goes through
  ingest's downmix and resampler (zeros where there is none).

  Args:
    path: the media file (str or bytes).
    video_start: start of the video clip in seconds.
    audio_start: start of the audio clip in seconds.
    preprocessing: the clip geometry (`preprocessing.Preprocessing`).

  Returns:
    (uint8 [num_frames, H, W, 3] frames, int16 [audio_samples] audio).
  """
  with av.open(path.decode() if isinstance(path, bytes) else path) as ctr:
    video_stream = ctr.streams.best("video")
    origin = float((video_stream.start_time or 0) * video_stream.time_base)
    video_start = origin + float(video_start)
    ctr.seek(int(video_start / video_stream.time_base), stream=video_stream,
             backward=True, any_frame=False)
    frames = _RgbFrames(preprocessing.frame_rate)
    previous = None
    for frame in ctr.decode(video_stream):
      time_in_clip = frame.time - video_start
      if time_in_clip <= _TIME_EPSILON:
        previous = frame
        continue
      if frames.num_decoded == 0:
        frames.add(frame if previous is None else previous, 0.0)
      if time_in_clip >= preprocessing.clip_seconds - _TIME_EPSILON:
        break
      frames.add(frame, time_in_clip)
    if frames.num_decoded == 0:
      frames.add(previous, 0.0)
    frames.finish(preprocessing.clip_seconds)
    images = np.stack(frames.frames)

    audio = np.zeros(preprocessing.audio_samples, np.int16)
    if ctr.streams.audio:
      audio_stream = ctr.streams.best("audio")
      audio_start = origin + float(audio_start)
      audio_end = audio_start + preprocessing.audio_seconds
      ctr.seek(int(audio_start / audio_stream.time_base),
               stream=audio_stream, backward=True, any_frame=False)
      collector = _AudioCollector(preprocessing.sample_rate)
      for frame in ctr.decode(audio_stream):
        collector.add(frame)
        if frame.time + frame.samples / frame.sample_rate >= audio_end:
          break
      collector.flush()
      samples = collector.waveform(audio_start, preprocessing.audio_seconds)
      audio[:len(samples)] = samples
  return images, audio


def make_direct_decode_dataset(video_paths, durations, batch_size,
                               preprocessing, max_offsync=0.5, seed=0):
  """The baseline: tf.data that decodes media files with PyAV per clip.

  Same AV offset sampling, augmentation and spectrogram as
  `pipeline.make_train_dataset`, but the clip's frames and audio come from
  `decode_clip` in a `tf.numpy_function`, visiting the files in turn.

  Args:
    video_paths: media files.
    durations: seconds of video of each file.
    batch_size: clips per batch.
    preprocessing: the clip geometry (`preprocessing.Preprocessing`).
    max_offsync: largest offset in seconds between video and audio clips.
    seed: seed of offsets and augmentation.

  Returns:
    Infinite `tf.data.Dataset` of batches {"video", "audio", "index"}.
  """
  mean = np.asarray(preprocessing.spectrogram_mean, np.float32)
  std = np.asarray(preprocessing.spectrogram_std, np.float32)

  def load(path, duration, element):
    seeds = tf.random.experimental.stateless_split(
        tf.stack([tf.constant(seed, tf.int64), element]), 4)
    video_start, audio_start = video_ops.sample_av_offsets(
        seeds[0], duration, duration, preprocessing.clip_seconds,
        preprocessing.audio_seconds, max_offsync)
    images, audio = tf.numpy_function(
        lambda p, v, a: decode_clip(p, v, a, preprocessing),
        [path, video_start, audio_start], [tf.uint8, tf.int16],
        stateful=False)
    images.set_shape([preprocessing.num_frames, None, None, 3])
    audio.set_shape([preprocessing.audio_samples])
    shape = tf.shape(images)
    window = video_ops.random_resized_crop_window(seeds[1], shape[1],
                                                  shape[2])
    images = images[:, window[0]:window[0] + window[2],
                    window[1]:window[1] + window[3]]
    video = video_ops.augment_clip(images, seeds[2], preprocessing.crop_size)
    waveform = audio_ops.random_gain(
        audio_ops.crop_waveform(audio, 0, preprocessing.audio_samples),
        seeds[3])
    spec = audio_ops.log_spectrogram(
        waveform, preprocessing.sample_rate,
        num_frames=preprocessing.spectrogram_frames)
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


def source_videos(dataset, video_dir, split="train"):
  """The source files of a split's videos and their stored durations.

  Args:
    dataset: a `schema.DatasetInfo`.
    video_dir: the folder the dataset was ingested from (record video_id
      paths are relative to it).
    split: split to list.

  Returns:
    (list of paths, list of seconds), in record order.
  """
  spec = {"video_id": tf.io.FixedLenFeature([], tf.string),
          "duration": tf.io.FixedLenFeature([], tf.float32)}
  paths, durations = [], []
  for record in tf.data.TFRecordDataset(list(dataset.split(split).paths)):
    example = tf.io.parse_single_example(record, spec)
    paths.append(os.path.join(video_dir,
                              example["video_id"].numpy().decode()))
    durations.append(float(example["duration"]))
  return paths, durations


def _cpu_seconds(dataset):
  """CPU seconds of this process to run a finite dataset to its end.

  The loop runs inside TensorFlow (`reduce`), so no Python overhead per
  element is counted.
  """
  start = time.process_time()
  dataset.reduce(tf.constant(0, tf.int64), lambda count, _: count + 1)
  return time.process_time() - start


def _sequential(dataset):
  """One thread, no autotuning, and no rewriting (a pass-through map stays)."""
  options = tf.data.Options()
  options.threading.private_threadpool_size = 1
  options.autotune.enabled = False
  options.experimental_optimization.apply_default_optimizations = False
  return dataset.with_options(options)


def _pass_through(*parts):
  return parts


def stage_breakdown(dataset, preprocessing, batch_size=8, num_clips=32,
                    repeats=2):
  """CPU milliseconds per clip of each phase of a training clip.

  Each phase of `pipeline.TrainClipPhases` (parse and sampling, JPEG
  decode, crop and resize, colour jitter, normalisation, spectrogram) and
  the batching run alone over the outputs of the phase before, held in
  memory; then all of them run at once over the same records, as the
  training stream's map function does (float32 video: every phase on the
  host). Each phase's figure is the CPU time of its pass less that of a
  pass-through map over the same inputs (so reading the inputs, the map's
  own cost per element and a pass's fixed costs cancel); the batching's,
  less that of reading its inputs. Everything runs on one
  tf.data thread, so the figures are what one core spends. The sum of the
  phases should match the total: a gap is work the phases do not account
  for.

  Args:
    dataset: a `schema.DatasetInfo`.
    preprocessing: the clip geometry.
    batch_size: clips per batch of the batching phase and of the total.
    num_clips: clips measured: the first records of the train split (in
      turn again when it holds fewer).
    repeats: runs of each measurement; the smallest is kept (the machine
      may be shared).

  Returns:
    dict: stages_ms_per_clip {stage: ms} in pipeline order, sum_ms_per_clip,
    total_ms_per_clip, sum_over_total, num_clips.
  """
  phases = pipeline.train_clip_phases(dataset, preprocessing)
  records = tf.data.TFRecordDataset(list(dataset.split("train").paths))
  records = list(records.repeat().take(num_clips).as_numpy_iterator())
  num_clips = len(records) - len(records) % batch_size
  records = tf.data.Dataset.from_tensor_slices(
      (records[:num_clips], np.zeros(num_clips, np.int64)))

  # As the pipeline maps them: without AutoGraph's conversion.
  plain = tf.autograph.experimental.do_not_convert
  best = lambda d: min(_cpu_seconds(_sequential(d)) for _ in range(repeats))

  def cost(inputs, function):
    """CPU seconds of mapping `function` beyond a pass-through map."""
    return max(0.0, best(inputs.map(plain(function))) -
               best(inputs.map(plain(_pass_through))))

  stages = {}
  previous = records
  for name, phase in [("parse_and_sample", phases.sample)] + phases.phases():
    stages[name] = cost(previous, phase)
    previous = previous.map(plain(phase)).cache()
    _cpu_seconds(previous)  # fills the cache
  elements = previous.map(plain(phases.element)).cache()
  _cpu_seconds(elements)
  stages["batching"] = max(0.0, best(elements.batch(batch_size)) -
                           best(elements))
  total = max(0.0, best(records.map(plain(phases.example)).batch(batch_size))
              - best(records.map(plain(_pass_through))))
  per_clip = lambda seconds: round(1000.0 * seconds / num_clips, 3)
  return {"stages_ms_per_clip": {k: per_clip(v) for k, v in stages.items()},
          "sum_ms_per_clip": per_clip(sum(stages.values())),
          "total_ms_per_clip": per_clip(total),
          "sum_over_total": round(sum(stages.values()) / total, 3),
          "num_clips": num_clips}


def benchmark_input_pipeline(dataset_dir=None, video_dir=None, batch_size=32,
                             num_frames=8, crop_size=112, audio_seconds=2.0,
                             num_batches=20, warmup_batches=5,
                             baseline_batches=5, num_videos=32,
                             work_dir=None, video_dtype="uint8",
                             breakdown_clips=32):
  """Measures the training input pipeline and the direct-decode baseline.

  Args:
    dataset_dir: an avid_tf dataset folder; None generates and ingests a
      synthetic one (`make_synthetic_dataset`).
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
    video_dtype: the pipeline's video batches: "uint8" as training reads
      them (colour jitter and normalisation left to the model's step) or
      "float32" (every phase on the host).
    breakdown_clips: clips of the per-phase breakdown (`stage_breakdown`);
      0 skips it.

  Returns:
    dict: clips_per_second, clips_per_second_per_core (the wall-clock rate
    over os.cpu_count()), clips_per_cpu_second (clips over this process's
    CPU time), cores, baseline_clips_per_second,
    baseline_clips_per_cpu_second, speedup (wall-clock ratio),
    speedup_per_cpu_second, load_average (1-minute load before and after),
    breakdown (`stage_breakdown`'s dict, or None) and the settings.
  """
  temporary = None
  if dataset_dir is None:
    if work_dir is None:
      temporary = tempfile.TemporaryDirectory()
      work_dir = temporary.name
    dataset_dir, video_dir = make_synthetic_dataset(work_dir, num_videos)
  try:
    load_before = os.getloadavg()[0]
    cores = os.cpu_count()
    dataset = schema.DatasetInfo.load(dataset_dir)
    preprocessing = preprocessing_lib.clip_preprocessing(
        dataset, num_frames=num_frames, crop_size=crop_size,
        audio_seconds=audio_seconds)
    rate, rate_per_cpu_second = clips_per_second(
        pipeline.make_train_dataset(dataset, batch_size, preprocessing,
                                    video_dtype=video_dtype),
        num_batches, warmup_batches)
    breakdown = (stage_breakdown(dataset, preprocessing,
                                 num_clips=breakdown_clips)
                 if breakdown_clips else None)
    baseline = baseline_per_cpu_second = None
    if video_dir is not None and baseline_batches > 0:
      paths, durations = source_videos(dataset, video_dir)
      direct = make_direct_decode_dataset(paths, durations, batch_size,
                                          preprocessing)
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
        "breakdown": breakdown,
        "batch_size": batch_size, "num_frames": num_frames,
        "crop_size": crop_size, "audio_seconds": audio_seconds,
        "video_dtype": video_dtype,
    }
  finally:
    if temporary is not None:
      temporary.cleanup()


def _median(values):
  return float(np.median(values))


def benchmark_geometries(geometries=((128, 112), (256, 224)), num_videos=32,
                         work_dir=None, video_dtypes=("float32", "uint8"),
                         rounds=2, **settings):
  """The pipeline at several clip geometries, measured in one run.

  One synthetic set of videos (the same content) is generated and ingested
  per stored short side; then every (geometry, video dtype) is measured
  `rounds` times, the rounds interleaved so that a change of the machine's
  load hits every configuration alike. Compare the ratios, not the
  absolute rates, on a shared machine.

  Args:
    geometries: (stored short side, crop size) pairs; the first is the
      reference of the ratios.
    num_videos: videos per synthetic set.
    work_dir: folder of the synthetic sets (`<work_dir>/s<side>`), reused
      when already ingested there; None = a temporary folder.
    video_dtypes: the batch video dtypes measured (see
      `benchmark_input_pipeline`).
    rounds: measurements of each configuration.
    **settings: more arguments of `benchmark_input_pipeline` (batch_size,
      num_frames, audio_seconds, num_batches, warmup_batches).

  Returns:
    dict: results (one per geometry and dtype: stored_size, crop_size,
    video_dtype, the median and every round's clips_per_second and
    clips_per_cpu_second, and the float32 per-phase breakdown), ratios
    ({"<crop>_from_<side>/<reference>": {dtype: {"per_second",
    "per_cpu_second"}}}, medians over the reference's) and load_average
    (1-minute load before and after).
  """
  temporary = None
  if work_dir is None:
    temporary = tempfile.TemporaryDirectory()
    work_dir = temporary.name
  try:
    load_before = os.getloadavg()[0]
    dataset_dirs = {}
    for side in sorted({side for side, _ in geometries}):
      folder = os.path.join(work_dir, f"s{side}")
      existing = schema.dataset_dir(os.path.join(folder), DATASET_NAME)
      dataset_dirs[side] = (
          existing if os.path.isfile(os.path.join(existing,
                                                  "dataset_info.json"))
          else make_synthetic_dataset(folder, num_videos, size=side)[0])
    runs = {}
    for round_index in range(rounds):
      for side, crop in geometries:
        for dtype in video_dtypes:
          result = benchmark_input_pipeline(
              dataset_dirs[side], crop_size=crop, baseline_batches=0,
              video_dtype=dtype,
              breakdown_clips=32 if round_index == 0 and dtype == "float32"
              else 0, **settings)
          runs.setdefault((side, crop, dtype), []).append(result)
    return _geometry_summary(geometries, video_dtypes, runs, load_before)
  finally:
    if temporary is not None:
      temporary.cleanup()


def _geometry_summary(geometries, video_dtypes, runs, load_before):
  """`benchmark_geometries`' dict from its runs {(side, crop, dtype): [...]}."""
  results, medians = [], {}
  for (side, crop, dtype), measured in runs.items():
    rates = [r["clips_per_second"] for r in measured]
    cpu_rates = [r["clips_per_cpu_second"] for r in measured]
    medians[side, crop, dtype] = (_median(rates), _median(cpu_rates))
    results.append({
        "stored_size": side, "crop_size": crop, "video_dtype": dtype,
        "clips_per_second": round(_median(rates), 2),
        "clips_per_cpu_second": round(_median(cpu_rates), 2),
        "rounds_clips_per_second": rates,
        "rounds_clips_per_cpu_second": cpu_rates,
        "breakdown": next((r["breakdown"] for r in measured
                           if r["breakdown"]), None)})
  reference = geometries[0]
  ratios = {}
  for side, crop in geometries[1:]:
    ratios[f"{crop}_from_{side}/{reference[1]}_from_{reference[0]}"] = {
        dtype: {"per_second": round(medians[side, crop, dtype][0] /
                                    medians[reference + (dtype,)][0], 3),
                "per_cpu_second": round(medians[side, crop, dtype][1] /
                                        medians[reference + (dtype,)][1], 3)}
        for dtype in video_dtypes}
  return {"results": results, "ratios": ratios,
          "load_average": [round(load_before, 2),
                           round(os.getloadavg()[0], 2)],
          "cores": os.cpu_count()}
