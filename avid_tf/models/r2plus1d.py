"""R(2+1)D video encoder (docs/methods.md, "Architectures"), channels-last.

Input [B, T, H, W, 3]; output the [B, 512 * width_multiplier] global
max-pooled conv5x features. Layer by layer the network matches the official
AVID-CMA PyTorch model (bias-free convolutions, symmetric PyTorch padding,
BN after the residual sum), so its checkpoints convert one to one:
trainable parameters 7,015,616 (depth 10) and 15,379,136 (depth 18).

Feature-map sizes follow PyTorch's floor((n + 2p - k) / s) + 1. For an
8 x 112 x 112 clip (T x H x W):
  conv1   [B, 8, 56, 56, 64]  stem conv 3x7x7, stride 1x2x2, pad 1x3x3
          max-pool 1x3x3, stride 1x2x2, pad 0x1x1 -> [B, 8, 28, 28, 64]
  conv2x  [B, 8, 28, 28, 64]
  conv3x  [B, 4, 14, 14, 128]
  conv4x  [B, 2, 7, 7, 256]
  conv5x  [B, 1, 4, 4, 512]
  pool    [B, 512]
and for 8 x 224 x 224: conv1 112^2, conv2x 8x56^2, conv3x 4x28^2,
conv4x 2x14^2, conv5x 1x7^2. The Kinetics linear probe (docs/methods.md,
"Evaluation protocols") *adaptively* max-pools conv2x..conv5x to 1x12x12, 1x8x8, 1x6x6 and 1x4x4
(9216, 8192, 9216 and 8192 features). Those are output sizes, not kernels:
at 224 every map is larger than its target; at 112 (28, 14, 7, 4) conv5x is
exactly 4x4, so 112 is the smallest square crop the probe works with
(smaller crops would need adaptive pooling to upsample).

The reference's `conv1` output already includes the stem max-pool; here
`conv1` is the stem before the max-pool (the max-pool's output is the input
of conv2x and is not returned separately).
"""

from typing import Dict, Optional

import keras

from avid_tf import errors
from avid_tf.models import layers as model_layers

# Blocks per stage (conv2x, conv3x, conv4x, conv5x) for each depth.
BLOCKS_PER_STAGE = {
    10: (1, 1, 1, 1),
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
}
STAGE_CHANNELS = (64, 128, 256, 512)
STAGE_NAMES = ("conv2x", "conv3x", "conv4x", "conv5x")
STEM_CHANNELS = 64


@keras.saving.register_keras_serializable(package="avid_tf")
class R2Plus1DBlock(keras.layers.Layer):
  """Basic residual (2+1)D block without mid-channel expansion.

  main = TemporalConv3x1x1(ReLU(BN(SpatialConv1x3x3(
             ReLU(BN(TemporalConv3x1x1(ReLU(BN(SpatialConv1x3x3(x))))))))))
  out = ReLU(BN(main + shortcut(x)))
  The first spatial conv carries the spatial stride, the first temporal
  conv the temporal stride. The shortcut is a bias-free 1x1x1 conv with
  stride (t, s, s) (no BN) when the channels or the stride change, else the
  identity.
  """

  def __init__(self,
               in_channels: int,
               out_channels: int,
               temporal_stride: int = 1,
               spatial_stride: int = 1,
               synchronized_bn: bool = False,
               bn_virtual_batch_size: Optional[int] = None,
               **kwargs):
    """Initialises the block.

    Args:
      in_channels: channels of the block input.
      out_channels: channels of every conv in the block and of its output.
      temporal_stride: stride of the first temporal conv and the shortcut.
      spatial_stride: stride of the first spatial conv and the shortcut.
      synchronized_bn: all-reduce BN statistics across replicas.
      bn_virtual_batch_size: BN training statistics over groups of this many
        consecutive clips (None: the whole batch).
      **kwargs: base Layer arguments (name, dtype, trainable).
    """
    super().__init__(**kwargs)
    self.in_channels = int(in_channels)
    self.out_channels = int(out_channels)
    self.temporal_stride = int(temporal_stride)
    self.spatial_stride = int(spatial_stride)
    self.synchronized_bn = bool(synchronized_bn)
    self.bn_virtual_batch_size = bn_virtual_batch_size
    dtype = self.dtype_policy
    spatial_stride3 = (1, self.spatial_stride, self.spatial_stride)
    temporal_stride3 = (self.temporal_stride, 1, 1)

    def spatial_conv(strides, name):
      return model_layers.PaddedConv(
          self.out_channels, (1, 3, 3), strides=strides, padding=(0, 1, 1),
          name=name, dtype=dtype)

    def temporal_conv(strides, name):
      return model_layers.PaddedConv(
          self.out_channels, (3, 1, 1), strides=strides, padding=(1, 0, 0),
          name=name, dtype=dtype)

    def bn(name):
      return model_layers.batch_norm(
          self.synchronized_bn, name=name, dtype=dtype,
          virtual_batch_size=self.bn_virtual_batch_size)

    self.spatial_conv1 = spatial_conv(spatial_stride3, "spatial_conv1")
    self.spatial_bn1 = bn("spatial_bn1")
    self.temporal_conv1 = temporal_conv(temporal_stride3, "temporal_conv1")
    self.temporal_bn1 = bn("temporal_bn1")
    self.spatial_conv2 = spatial_conv(1, "spatial_conv2")
    self.spatial_bn2 = bn("spatial_bn2")
    self.temporal_conv2 = temporal_conv(1, "temporal_conv2")
    self.out_bn = bn("out_bn")
    self.has_shortcut_conv = (
        self.in_channels != self.out_channels or self.temporal_stride != 1 or
        self.spatial_stride != 1)
    if self.has_shortcut_conv:
      self.shortcut_conv = model_layers.PaddedConv(
          self.out_channels, (1, 1, 1),
          strides=(self.temporal_stride, self.spatial_stride,
                   self.spatial_stride),
          name="shortcut_conv", dtype=dtype)
    else:
      self.shortcut_conv = None

  def build(self, input_shape):
    if input_shape[-1] != self.in_channels:
      raise ValueError(f"{self.name}: expected {self.in_channels} input "
                       f"channels, got shape {tuple(input_shape)}")
    shape = tuple(input_shape)
    for conv, bn in ((self.spatial_conv1, self.spatial_bn1),
                     (self.temporal_conv1, self.temporal_bn1),
                     (self.spatial_conv2, self.spatial_bn2),
                     (self.temporal_conv2, self.out_bn)):
      conv.build(shape)
      shape = conv.compute_output_shape(shape)
      bn.build(shape)
    if self.shortcut_conv is not None:
      self.shortcut_conv.build(tuple(input_shape))

  def call(self, inputs, training=None):
    x = self.spatial_conv1(inputs)
    x = keras.ops.relu(self.spatial_bn1(x, training=training))
    x = self.temporal_conv1(x)
    x = keras.ops.relu(self.temporal_bn1(x, training=training))
    x = self.spatial_conv2(x)
    x = keras.ops.relu(self.spatial_bn2(x, training=training))
    x = self.temporal_conv2(x)
    shortcut = (self.shortcut_conv(inputs)
                if self.shortcut_conv is not None else inputs)
    return keras.ops.relu(self.out_bn(x + shortcut, training=training))

  def compute_output_shape(self, input_shape):
    shape = tuple(input_shape)
    for conv in (self.spatial_conv1, self.temporal_conv1, self.spatial_conv2,
                 self.temporal_conv2):
      shape = conv.compute_output_shape(shape)
    return shape

  def get_config(self):
    config = super().get_config()
    config.update({
        "in_channels": self.in_channels,
        "out_channels": self.out_channels,
        "temporal_stride": self.temporal_stride,
        "spatial_stride": self.spatial_stride,
        "synchronized_bn": self.synchronized_bn,
        "bn_virtual_batch_size": self.bn_virtual_batch_size,
    })
    return config


@keras.saving.register_keras_serializable(package="avid_tf")
class R2Plus1D(keras.Model):
  """R(2+1)D-10/18/34 video encoder with global max pooling.

  Attributes:
    stem_conv, stem_bn, stem_pool: the conv1 stem and its max-pool.
    blocks: every `R2Plus1DBlock` in order (conv2x_block1, ...).
    stage_of_block: the stage name ("conv2x".."conv5x") of each block.
    feature_dim: channels of the pooled output.
  """

  def __init__(self,
               depth: int = 18,
               width_multiplier: float = 1.0,
               synchronized_bn: bool = False,
               bn_virtual_batch_size: Optional[int] = None,
               name: Optional[str] = None,
               **kwargs):
    """Initialises the encoder.

    Args:
      depth: 10, 18 or 34 (1/1/1/1, 2/2/2/2 or 3/4/6/3 blocks per stage).
      width_multiplier: scales every channel count (64/128/256/512 and the
        stem), rounded to the nearest int; < 1 for tiny test configs.
      synchronized_bn: all-reduce BN batch statistics across replicas
        (`BatchNormalization(synchronized=True)`), so a MirroredStrategy run
        normalises with global-batch statistics like a single device.
      bn_virtual_batch_size: BN training statistics over groups of this many
        consecutive clips of each replica's batch (ghost batch norm, see
        `layers.FusedBatchNormalization`), so they do not depend on the
        device count; None uses the whole per-replica batch. Excludes
        `synchronized_bn`.
      name: model name (default "r2plus1d_<depth>").
      **kwargs: base Model arguments (dtype, trainable).

    Raises:
      ValueError: for an unsupported depth, a non-positive multiplier, or
        both `synchronized_bn` and `bn_virtual_batch_size`.
    """
    if depth not in BLOCKS_PER_STAGE:
      raise errors.InvalidValueError(f"R2Plus1D depth must be one of "
                                     f"{sorted(BLOCKS_PER_STAGE)}, got {depth}")
    super().__init__(name=name or f"r2plus1d_{depth}", **kwargs)
    self.depth = int(depth)
    self.width_multiplier = model_layers.check_width_multiplier(
        width_multiplier)
    self.synchronized_bn = bool(synchronized_bn)
    self.bn_virtual_batch_size = bn_virtual_batch_size
    dtype = self.dtype_policy

    stem_channels = model_layers.scaled_width(STEM_CHANNELS,
                                              self.width_multiplier)
    self.stem_conv = model_layers.PaddedConv(
        stem_channels, (3, 7, 7), strides=(1, 2, 2), padding=(1, 3, 3),
        name="stem_conv", dtype=dtype)
    self.stem_bn = model_layers.batch_norm(
        self.synchronized_bn, name="stem_bn", dtype=dtype,
        virtual_batch_size=self.bn_virtual_batch_size)
    self.stem_pool = model_layers.PaddedMaxPool(
        (1, 3, 3), strides=(1, 2, 2), padding=(0, 1, 1), name="stem_pool",
        dtype=dtype)

    self.blocks = []
    stage_of_block = []
    in_channels = stem_channels
    for stage_index, (stage_name, channels, num_blocks) in enumerate(
        zip(STAGE_NAMES, STAGE_CHANNELS, BLOCKS_PER_STAGE[self.depth])):
      out_channels = model_layers.scaled_width(channels,
                                               self.width_multiplier)
      stride = 1 if stage_index == 0 else 2
      for block_index in range(num_blocks):
        self.blocks.append(R2Plus1DBlock(
            in_channels, out_channels,
            temporal_stride=stride if block_index == 0 else 1,
            spatial_stride=stride if block_index == 0 else 1,
            synchronized_bn=self.synchronized_bn,
            bn_virtual_batch_size=self.bn_virtual_batch_size,
            name=f"{stage_name}_block{block_index + 1}", dtype=dtype))
        stage_of_block.append(stage_name)
        in_channels = out_channels
    self.stage_of_block = tuple(stage_of_block)
    self._feature_dim = in_channels

  @property
  def feature_dim(self) -> int:
    """Channels of the pooled features (512 * width_multiplier)."""
    return self._feature_dim

  def build(self, input_shape):
    input_shape = tuple(input_shape)
    if len(input_shape) != 5:
      raise ValueError(f"{self.name}: expected input [B, T, H, W, C], got "
                       f"shape {input_shape}")
    self.stem_conv.build(input_shape)
    shape = self.stem_conv.compute_output_shape(input_shape)
    self.stem_bn.build(shape)
    shape = self.stem_pool.compute_output_shape(shape)
    for block in self.blocks:
      block.build(shape)
      shape = block.compute_output_shape(shape)
    self.built = True

  def _forward(self, video, training) -> Dict[str, object]:
    outputs = {}
    x = self.stem_conv(video)
    x = keras.ops.relu(self.stem_bn(x, training=training))
    outputs["conv1"] = x
    x = self.stem_pool(x)
    for block, stage_name in zip(self.blocks, self.stage_of_block):
      x = block(x, training=training)
      outputs[stage_name] = x  # The last block of a stage wins.
    outputs["pool"] = model_layers.global_max_pool(x)
    return outputs

  def call(self, video, training=None):
    """Returns the [B, feature_dim] global-max-pooled conv5x features."""
    return self._forward(video, training)["pool"]

  def stage_outputs(self, video, training=False) -> Dict[str, object]:
    """Returns every stage's output, for linear probes.

    Args:
      video: [B, T, H, W, 3] clip batch.
      training: BN mode (False: moving statistics).

    Returns:
      Dict with "conv1" (stem after ReLU, before its max-pool), "conv2x",
      "conv3x", "conv4x", "conv5x" ([B, T', H', W', C] maps) and "pool"
      ([B, feature_dim]).
    """
    if not self.built:
      self.build(tuple(video.shape))
    return self._forward(video, training)

  def compute_output_shape(self, input_shape):
    return (input_shape[0], self.feature_dim)

  def get_config(self):
    config = super().get_config()
    config.update({
        "depth": self.depth,
        "width_multiplier": self.width_multiplier,
        "synchronized_bn": self.synchronized_bn,
        "bn_virtual_batch_size": self.bn_virtual_batch_size,
    })
    return config
