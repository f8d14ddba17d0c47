"""Forward FLOPs of a Keras model, counted from its traced TF graph.

Convention (the one that reproduces the published figures): FLOPs = 2 x the
multiply-adds of the convolutions and matrix products. Element-wise work
(batch norm, ReLU, padding, pooling, additions) is not counted. Under it the
published encoders cost, per clip:

  R(2+1)D-18 at 8 x 112 x 112     6.158 GFLOP  (3.079 G multiply-adds)
  R(2+1)D-18 at 8 x 224 x 224    24.251 GFLOP
  R(2+1)D-10 at 8 x 112 x 112     3.799 GFLOP
  audio ConvNet at 200 x 257      2.880 GFLOP

The count traces `model(x, training=False)` into a graph for a batch of
one and reads the static shapes of every Conv2D/Conv3D/MatMul op, so it
never runs a convolution and follows whatever ops the model is implemented
with (a (2+1)D conv written as Conv3D or as a folded Conv2D counts the same).
A training step (forward, gradients w.r.t. activations and w.r.t. weights)
is counted as 3 x forward, the usual estimate.
"""

from typing import Sequence

import numpy as np
import tensorflow as tf

# Training step = forward + backward-data + backward-weights.
TRAIN_STEP_FORWARD_MULTIPLE = 3

_CONV_OPS = ("Conv2D", "Conv3D", "DepthwiseConv2dNative")
_MATMUL_OPS = ("MatMul", "BatchMatMulV2", "BatchMatMulV3", "BatchMatMul")


def _static_shape(tensor, op):
  shape = tensor.shape
  if shape.rank is None or not shape.is_fully_defined():
    raise ValueError(f"FLOP count needs static shapes; op {op.name} "
                     f"({op.type}) has {tensor.name} of shape {shape}")
  return shape.as_list()


def _op_flops(op) -> int:
  """2 x multiply-adds of one graph op (0 for ops that are not counted)."""
  if op.type in _CONV_OPS:
    output = _static_shape(op.outputs[0], op)
    kernel = _static_shape(op.inputs[1], op)
    if op.type == "DepthwiseConv2dNative":
      # Kernel [kh, kw, in, multiplier]: each output value sums kh*kw terms.
      per_output = int(np.prod(kernel[:-2]))
    else:
      # Kernel [*window, in (per group), out]: each output sums window*in.
      per_output = int(np.prod(kernel[:-1]))
    return 2 * int(np.prod(output)) * per_output
  if op.type in _MATMUL_OPS:
    output = _static_shape(op.outputs[0], op)
    a = _static_shape(op.inputs[0], op)
    transpose_a = (op.get_attr("transpose_a") if op.type == "MatMul"
                   else op.get_attr("adj_x"))
    inner = a[-2] if transpose_a else a[-1]
    return 2 * int(np.prod(output)) * int(inner)
  return 0


def graph_flops(graph) -> int:
  """Sums `_op_flops` over a graph and the functions it calls."""
  total = sum(_op_flops(op) for op in graph.get_operations())
  # Ops inside nested tf.functions live in the graph's function library.
  for function in getattr(graph, "_functions", {}).values():
    inner = getattr(function, "graph", None)
    if inner is not None:
      total += graph_flops(inner)
  return total


def forward_flops(model, input_shape: Sequence[int],
                  dtype=tf.float32) -> int:
  """Forward FLOPs of `model` on ONE example of `input_shape`.

  Args:
    model: a Keras layer or model taking one tensor [B, *input_shape]. It
      is built (variables created) if it is not yet; nothing is computed.
    input_shape: the example's shape without the batch axis, e.g.
      (8, 112, 112, 3) for a video clip or (200, 257, 1) for audio.
    dtype: input dtype.

  Returns:
    2 x multiply-adds of its convolutions and matrix products, an int.

  Raises:
    ValueError: if some counted op has a shape unknown at trace time.
  """
  shape = (1,) + tuple(None if n is None else int(n) for n in input_shape)
  if not model.built:
    model.build(shape)
  traced = tf.function(lambda x: model(x, training=False))
  concrete = traced.get_concrete_function(tf.TensorSpec(shape, dtype))
  return graph_flops(concrete.graph)


def train_step_gflop_per_clip(video_encoder, audio_encoder,
                              video_shape: Sequence[int],
                              audio_shape: Sequence[int]) -> float:
  """Estimated GFLOP of one training step per clip: 3 x (video + audio).

  Projection heads and the memory-bank scores are left out (about 0.01% of
  the encoders at the published sizes).

  Args:
    video_encoder: the video encoder, input [B, *video_shape].
    audio_encoder: the audio encoder, input [B, *audio_shape].
    video_shape: one clip, e.g. (8, 112, 112, 3).
    audio_shape: one spectrogram, e.g. (200, 257, 1).

  Returns:
    GFLOP (1e9 FLOPs) per clip of a training step.
  """
  forward = (forward_flops(video_encoder, video_shape) +
             forward_flops(audio_encoder, audio_shape))
  return TRAIN_STEP_FORWARD_MULTIPLE * forward / 1e9

