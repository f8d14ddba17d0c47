"""2D ConvNet audio encoder ("depth 10"), channels-last.

See docs/methods.md, "Architectures".

Input a log-spectrogram batch [B, time, freq, 1] (200 x 257 in the
reference setup; any size works); output the [B, 512 * width_multiplier]
global max-pooled conv5x features. Nine bias-free convolutions, each
followed by BN and ReLU, no residual connections and no max-pool after the
stem. Trainable parameters 4,725,696 at full width, matching the official
AVID-CMA model layer by layer.

Feature-map sizes (PyTorch arithmetic floor((n + 2p - k) / s) + 1) for a
200 x 257 input:
  conv1   [B, 100, 129, 64]   7x7, stride 2, pad 3
  conv2x  [B, 50, 65, 64]     [3x3 stride 2, 3x3], pad 1
  conv3x  [B, 25, 33, 128]    [3x3 stride 2, 3x3]
  conv4x  [B, 13, 17, 256]    [3x3 stride 2, 3x3]
  conv5x  [B, 13, 17, 512]    [3x3 stride 1, 3x3]
  pool    [B, 512]
"""

from typing import Dict, Optional

import keras

from avid_tf import errors
from avid_tf.models import layers as model_layers

STAGE_CHANNELS = (64, 128, 256, 512)
STAGE_STRIDES = (2, 2, 2, 1)
STAGE_NAMES = ("conv2x", "conv3x", "conv4x", "conv5x")
STEM_CHANNELS = 64
SUPPORTED_DEPTHS = (10,)


@keras.saving.register_keras_serializable(package="avid_tf")
class ConvBnReluBlock2D(keras.layers.Layer):
  """Two 3x3 bias-free convs (pad 1), each followed by BN and ReLU.

  The first conv carries the stride. Matches the reference Basic2DBlock.
  """

  def __init__(self,
               out_channels: int,
               stride: int = 1,
               synchronized_bn: bool = False,
               bn_virtual_batch_size: Optional[int] = None,
               **kwargs):
    """Initialises the block.

    Args:
      out_channels: channels of both convs.
      stride: stride of the first conv (both axes).
      synchronized_bn: all-reduce BN statistics across replicas.
      bn_virtual_batch_size: BN training statistics over groups of this many
        consecutive examples (None: the whole batch).
      **kwargs: base Layer arguments (name, dtype, trainable).
    """
    super().__init__(**kwargs)
    self.out_channels = int(out_channels)
    self.stride = int(stride)
    self.synchronized_bn = bool(synchronized_bn)
    self.bn_virtual_batch_size = bn_virtual_batch_size
    dtype = self.dtype_policy

    def bn(name):
      return model_layers.batch_norm(
          self.synchronized_bn, name=name, dtype=dtype,
          virtual_batch_size=self.bn_virtual_batch_size)

    self.conv1 = model_layers.PaddedConv(
        self.out_channels, (3, 3), strides=self.stride, padding=1,
        name="conv1", dtype=dtype)
    self.bn1 = bn("bn1")
    self.conv2 = model_layers.PaddedConv(
        self.out_channels, (3, 3), strides=1, padding=1, name="conv2",
        dtype=dtype)
    self.bn2 = bn("bn2")

  def build(self, input_shape):
    shape = tuple(input_shape)
    for conv, bn in ((self.conv1, self.bn1), (self.conv2, self.bn2)):
      conv.build(shape)
      shape = conv.compute_output_shape(shape)
      bn.build(shape)

  def call(self, inputs, training=None):
    x = keras.ops.relu(self.bn1(self.conv1(inputs), training=training))
    return keras.ops.relu(self.bn2(self.conv2(x), training=training))

  def compute_output_shape(self, input_shape):
    return self.conv2.compute_output_shape(
        self.conv1.compute_output_shape(tuple(input_shape)))

  def get_config(self):
    config = super().get_config()
    config.update({
        "out_channels": self.out_channels,
        "stride": self.stride,
        "synchronized_bn": self.synchronized_bn,
        "bn_virtual_batch_size": self.bn_virtual_batch_size,
    })
    return config


@keras.saving.register_keras_serializable(package="avid_tf")
class AudioConvNet(keras.Model):
  """Audio 2D ConvNet (depth 10) with global max pooling.

  Attributes:
    stem_conv, stem_bn: the conv1 stem.
    blocks: the four `ConvBnReluBlock2D` (conv2x..conv5x).
    feature_dim: channels of the pooled output.
  """

  def __init__(self,
               depth: int = 10,
               width_multiplier: float = 1.0,
               synchronized_bn: bool = False,
               bn_virtual_batch_size: Optional[int] = None,
               name: Optional[str] = None,
               **kwargs):
    """Initialises the encoder.

    Args:
      depth: only 10 exists (9 convs).
      width_multiplier: scales every channel count, rounded to the nearest
        int; < 1 for tiny test configs.
      synchronized_bn: all-reduce BN batch statistics across replicas.
      bn_virtual_batch_size: BN training statistics over groups of this many
        consecutive spectrograms of each replica's batch (see
        `layers.FusedBatchNormalization`); None uses the whole per-replica
        batch. Excludes `synchronized_bn`.
      name: model name (default "audio_conv_net").
      **kwargs: base Model arguments (dtype, trainable).

    Raises:
      ValueError: for an unsupported depth, a non-positive multiplier, or
        both `synchronized_bn` and `bn_virtual_batch_size`.
    """
    if depth not in SUPPORTED_DEPTHS:
      raise errors.InvalidValueError(f"AudioConvNet depth must be one of "
                                     f"{list(SUPPORTED_DEPTHS)}, got {depth}")
    super().__init__(name=name or "audio_conv_net", **kwargs)
    self.depth = int(depth)
    self.width_multiplier = model_layers.check_width_multiplier(
        width_multiplier)
    self.synchronized_bn = bool(synchronized_bn)
    self.bn_virtual_batch_size = bn_virtual_batch_size
    dtype = self.dtype_policy

    self.stem_conv = model_layers.PaddedConv(
        model_layers.scaled_width(STEM_CHANNELS, self.width_multiplier),
        (7, 7), strides=2, padding=3, name="stem_conv", dtype=dtype)
    self.stem_bn = model_layers.batch_norm(
        self.synchronized_bn, name="stem_bn", dtype=dtype,
        virtual_batch_size=self.bn_virtual_batch_size)
    self.blocks = [
        ConvBnReluBlock2D(
            model_layers.scaled_width(channels, self.width_multiplier),
            stride=stride, synchronized_bn=self.synchronized_bn,
            bn_virtual_batch_size=self.bn_virtual_batch_size,
            name=stage_name, dtype=dtype)
        for stage_name, channels, stride in zip(STAGE_NAMES, STAGE_CHANNELS,
                                                 STAGE_STRIDES)
    ]
    self._feature_dim = self.blocks[-1].out_channels

  @property
  def feature_dim(self) -> int:
    """Channels of the pooled features (512 * width_multiplier)."""
    return self._feature_dim

  def build(self, input_shape):
    input_shape = tuple(input_shape)
    if len(input_shape) != 4:
      raise ValueError(f"{self.name}: expected input [B, time, freq, C], "
                       f"got shape {input_shape}")
    self.stem_conv.build(input_shape)
    shape = self.stem_conv.compute_output_shape(input_shape)
    self.stem_bn.build(shape)
    for block in self.blocks:
      block.build(shape)
      shape = block.compute_output_shape(shape)
    self.built = True

  def _forward(self, spectrogram, training) -> Dict[str, object]:
    outputs = {}
    x = self.stem_conv(spectrogram)
    x = keras.ops.relu(self.stem_bn(x, training=training))
    outputs["conv1"] = x
    for stage_name, block in zip(STAGE_NAMES, self.blocks):
      x = block(x, training=training)
      outputs[stage_name] = x
    outputs["pool"] = model_layers.global_max_pool(x)
    return outputs

  def call(self, spectrogram, training=None):
    """Returns the [B, feature_dim] global-max-pooled conv5x features."""
    return self._forward(spectrogram, training)["pool"]

  def stage_outputs(self, spectrogram, training=False) -> Dict[str, object]:
    """Returns every stage's output, for linear probes.

    Args:
      spectrogram: [B, time, freq, 1] batch.
      training: BN mode (False: moving statistics).

    Returns:
      Dict with "conv1", "conv2x" (64-channel block), "conv3x" (128),
      "conv4x" (256), "conv5x" (512) maps [B, T', F', C] and "pool"
      ([B, feature_dim]).
    """
    if not self.built:
      self.build(tuple(spectrogram.shape))
    return self._forward(spectrogram, training)

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
