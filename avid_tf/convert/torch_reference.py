"""The official AVID-CMA networks rebuilt in PyTorch, to verify conversions.

Needs PyTorch (requirements-convert.txt); nothing else in avid_tf imports
this module except `pytorch_checkpoint.verify_conversion`, when called.

The modules' attribute names reproduce the official state_dict keys exactly
(avid_tf.convert.official_layout lists them), so an official checkpoint
loads into `AVModel` with `load_state_dict(strict=True)`. The computation is
the one docs/methods.md, "Architectures", describes (NCTHW video, NCHW
audio of time x frequency); `width_multiplier` scales every channel count
the way avid_tf does, for small test models.
"""

import torch
from torch import nn
from torch.nn import functional as F

from avid_tf.convert import official_layout


class R2Plus1DBlock(nn.Module):
  """(2+1)D residual block: spatial, temporal, spatial, temporal convs."""

  def __init__(self, in_channels, out_channels, stride=1):
    super().__init__()
    self.spt_conv1 = nn.Conv3d(in_channels, out_channels, (1, 3, 3),
                               stride=(1, stride, stride), padding=(0, 1, 1),
                               bias=False)
    self.spt_bn1 = nn.BatchNorm3d(out_channels)
    self.tmp_conv1 = nn.Conv3d(out_channels, out_channels, (3, 1, 1),
                               stride=(stride, 1, 1), padding=(1, 0, 0),
                               bias=False)
    self.tmp_bn1 = nn.BatchNorm3d(out_channels)
    self.spt_conv2 = nn.Conv3d(out_channels, out_channels, (1, 3, 3),
                               padding=(0, 1, 1), bias=False)
    self.spt_bn2 = nn.BatchNorm3d(out_channels)
    self.tmp_conv2 = nn.Conv3d(out_channels, out_channels, (3, 1, 1),
                               padding=(1, 0, 0), bias=False)
    self.out_bn = nn.BatchNorm3d(out_channels)
    if in_channels != out_channels or stride != 1:
      self.res_conv = nn.Conv3d(in_channels, out_channels, 1, stride=stride,
                                bias=False)
    else:
      self.res_conv = None

  def forward(self, x):
    y = F.relu(self.spt_bn1(self.spt_conv1(x)))
    y = F.relu(self.tmp_bn1(self.tmp_conv1(y)))
    y = F.relu(self.spt_bn2(self.spt_conv2(y)))
    y = self.tmp_conv2(y)
    shortcut = x if self.res_conv is None else self.res_conv(x)
    return F.relu(self.out_bn(y + shortcut))


class VideoModel(nn.Module):
  """R(2+1)D-10/18/34 on [B, 3, T, H, W], global max pooling."""

  def __init__(self, arch):
    super().__init__()
    stem = arch.channels(official_layout.STEM_CHANNELS)
    self.conv1 = nn.Sequential(
        nn.Conv3d(3, stem, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3),
                  bias=False),
        nn.BatchNorm3d(stem), nn.ReLU(),
        nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)))
    in_channels = stem
    blocks = official_layout.BLOCKS_PER_STAGE[arch.video_depth]
    for index, (stage, channels, count) in enumerate(zip(
        official_layout.STAGE_NAMES, official_layout.STAGE_CHANNELS, blocks)):
      out_channels = arch.channels(channels)
      stage_blocks = []
      for block in range(count):
        stride = 2 if index > 0 and block == 0 else 1
        stage_blocks.append(R2Plus1DBlock(in_channels, out_channels, stride))
        in_channels = out_channels
      setattr(self, stage, stage_blocks[0] if arch.video_depth == 10
              else nn.Sequential(*stage_blocks))

  def forward(self, x):
    x = self.conv1(x)
    for stage in official_layout.STAGE_NAMES:
      x = getattr(self, stage)(x)
    return torch.amax(x, dim=(2, 3, 4))


class AudioBlock(nn.Module):
  """Two 3x3 conv-BN-ReLU; the first carries the stride."""

  def __init__(self, in_channels, out_channels, stride):
    super().__init__()
    self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride,
                           padding=1, bias=False)
    self.bn1 = nn.BatchNorm2d(out_channels)
    self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1,
                           bias=False)
    self.bn2 = nn.BatchNorm2d(out_channels)

  def forward(self, x):
    x = F.relu(self.bn1(self.conv1(x)))
    return F.relu(self.bn2(self.conv2(x)))


class AudioModel(nn.Module):
  """Audio ConvNet on [B, 1, time, freq], global max pooling."""

  def __init__(self, arch):
    super().__init__()
    stem = arch.channels(official_layout.STEM_CHANNELS)
    self.conv1 = nn.Sequential(
        nn.Conv2d(1, stem, 7, stride=2, padding=3, bias=False),
        nn.BatchNorm2d(stem), nn.ReLU())
    in_channels = stem
    for index, (channels, stride) in enumerate(zip(
        official_layout.STAGE_CHANNELS, (2, 2, 2, 1))):
      out_channels = arch.channels(channels)
      setattr(self, f"block{index + 1}",
              AudioBlock(in_channels, out_channels, stride))
      in_channels = out_channels

  def forward(self, x):
    x = self.conv1(x)
    for index in range(4):
      x = getattr(self, f"block{index + 1}")(x)
    return torch.amax(x, dim=(2, 3))


class Head(nn.Module):
  """Linear layers with a ReLU between two of them (no normalisation)."""

  def __init__(self, arch):
    super().__init__()
    layers, width = [], arch.feature_dim
    for _ in range(arch.head_hidden_layers):
      layers += [nn.Linear(width, arch.head_hidden_dim), nn.ReLU()]
      width = arch.head_hidden_dim
    layers.append(nn.Linear(width, arch.embedding_dim))
    self.projection = nn.Sequential(*layers)

  def forward(self, x):
    return self.projection(x)


class AVModel(nn.Module):
  """The AV model: encoders and heads under the official names."""

  def __init__(self, arch):
    super().__init__()
    self.video_model = VideoModel(arch)
    self.audio_model = AudioModel(arch)
    self.video_proj = Head(arch)
    self.audio_proj = Head(arch)

  def forward(self, video, audio):
    """Returns features and L2-normalised embeddings of both modalities."""
    video_features = self.video_model(video)
    audio_features = self.audio_model(audio)
    return {
        "video_features": video_features,
        "audio_features": audio_features,
        "video_embeddings": F.normalize(self.video_proj(video_features),
                                        dim=1),
        "audio_embeddings": F.normalize(self.audio_proj(audio_features),
                                        dim=1),
    }


def num_parameters(module):
  """Trainable parameters of a module."""
  return sum(p.numel() for p in module.parameters())
