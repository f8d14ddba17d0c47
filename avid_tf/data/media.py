"""Writes audio-visual media files (H.264 video + AAC audio in .mp4) with PyAV.

Used by the synthetic dataset generator and by tests that need real
containers to exercise the decode path.
"""

import av
import numpy as np

from avid_tf.utils import files


def write_av_file(path, frames, fps, audio=None, sample_rate=48000, crf=20):
  """Writes frames and an optional mono waveform to a media container.

  The file is written under a temporary name in the same folder and renamed
  into place, so a reader never sees a half-written file.

  Args:
    path: destination path; the extension picks the container (.mp4, .mkv).
    frames: uint8 array [T, H, W, 3] (RGB); H and W must be even (yuv420p).
    fps: integer frame rate of the video stream.
    audio: optional float array [S] in [-1, 1]; None writes no audio stream.
    sample_rate: audio sample rate in Hz.
    crf: H.264 constant rate factor (lower is higher quality).

  Raises:
    ValueError: if frames are not uint8 [T, H, W, 3] with even H and W.
  """
  frames = np.asarray(frames)
  if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
    raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} "
                     f"{frames.shape} for {path}")
  _, height, width, _ = frames.shape
  if height % 2 or width % 2:
    raise ValueError(f"frame size must be even for yuv420p, got {height}x"
                     f"{width} for {path}")
  with files.atomic_path(path, local=True) as tmp_path:
    with av.open(tmp_path, mode="w") as container:
      video_stream = container.add_stream("libx264", rate=int(fps))
      video_stream.width = width
      video_stream.height = height
      video_stream.pix_fmt = "yuv420p"
      video_stream.options = {"crf": str(crf), "preset": "veryfast"}
      audio_stream = None
      if audio is not None:
        audio_stream = container.add_stream("aac", rate=int(sample_rate))
        audio_stream.layout = "mono"
      for image in frames:
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        container.mux(video_stream.encode(frame))
      container.mux(video_stream.encode())
      if audio_stream is not None:
        _encode_audio(container, audio_stream, audio, sample_rate)


def _encode_audio(container, stream, audio, sample_rate):
  """Encodes a mono float waveform in codec-sized frames."""
  samples = np.clip(np.asarray(audio, np.float32), -1.0, 1.0)
  frame_size = stream.codec_context.frame_size or 1024
  pts = 0
  for start in range(0, len(samples), frame_size):
    chunk = samples[start:start + frame_size]
    if len(chunk) < frame_size:
      chunk = np.pad(chunk, (0, frame_size - len(chunk)))
    frame = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp",
                                       layout="mono")
    frame.sample_rate = sample_rate
    frame.pts = pts
    pts += frame_size
    container.mux(stream.encode(frame))
  container.mux(stream.encode())
