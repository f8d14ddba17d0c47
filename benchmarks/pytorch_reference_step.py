"""A PyTorch training step equivalent to the official AVID one (comparison only).

Not part of avid_tf and not installed by requirements.txt. It times, on
in-memory tensors, the step that `python scripts/benchmark.py
--what=train_step` times for avid_tf, written the way the official PyTorch
code does it: R(2+1)D-18 and the audio ConvNet with the published parameter
counts (asserted), 512-512-128 heads, Cross-AVID NCE against memory rows
with Z frozen from the first step, Adam with weight_decay 1e-5 and the EMA
memory update. Run both on one machine and compare the ratio:

  pip install torch   # a CPU build is enough
  python benchmarks/pytorch_reference_step.py   # env: B (batch), STEPS

Prints one JSON line with clips_per_second and step_seconds_median.
"""

import json
import os
import statistics
import time

import torch
from torch import nn
from torch.nn import functional as F

NUM_DATA = 10000
NUM_NEGATIVES = 1024
TEMPERATURE = 0.07
MOMENTUM = 0.5


class R2Plus1DBlock(nn.Module):
  """Spatial 1x3x3 -> temporal 3x1x1, twice; BN after the residual sum."""

  def __init__(self, in_channels, out_channels, stride):
    super().__init__()
    t, s = stride
    self.convs = nn.ModuleList([
        nn.Conv3d(in_channels, out_channels, (1, 3, 3), (1, s, s), (0, 1, 1),
                  bias=False),
        nn.Conv3d(out_channels, out_channels, (3, 1, 1), (t, 1, 1),
                  (1, 0, 0), bias=False),
        nn.Conv3d(out_channels, out_channels, (1, 3, 3), 1, (0, 1, 1),
                  bias=False),
        nn.Conv3d(out_channels, out_channels, (3, 1, 1), 1, (1, 0, 0),
                  bias=False),
    ])
    self.norms = nn.ModuleList([nn.BatchNorm3d(out_channels)
                                for _ in range(4)])
    changes_shape = in_channels != out_channels or s != 1
    self.shortcut = (nn.Conv3d(in_channels, out_channels, 1, (t, s, s),
                               bias=False) if changes_shape else None)

  def forward(self, x):
    y = x
    for conv, norm in zip(self.convs[:3], self.norms[:3]):
      y = F.relu(norm(conv(y)))
    y = self.convs[3](y)
    residual = x if self.shortcut is None else self.shortcut(x)
    return F.relu(self.norms[3](y + residual))


class R2Plus1D18(nn.Module):
  """Video encoder, NCTHW input, global max pooling to 512."""

  def __init__(self):
    super().__init__()
    self.stem = nn.Sequential(
        nn.Conv3d(3, 64, (3, 7, 7), (1, 2, 2), (1, 3, 3), bias=False),
        nn.BatchNorm3d(64), nn.ReLU(),
        nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)))
    blocks, channels_in = [], 64
    for stage, channels in enumerate((64, 128, 256, 512)):
      for index in range(2):
        stride = (2, 2) if stage > 0 and index == 0 else (1, 1)
        blocks.append(R2Plus1DBlock(channels_in, channels, stride))
        channels_in = channels
    self.blocks = nn.Sequential(*blocks)

  def forward(self, x):
    return torch.amax(self.blocks(self.stem(x)), dim=(2, 3, 4))


class AudioConvNet(nn.Module):
  """Audio encoder: 9 conv-BN-ReLU, global max pooling to 512."""

  def __init__(self):
    super().__init__()

    def conv_bn_relu(channels_in, channels, kernel, stride, padding):
      return [nn.Conv2d(channels_in, channels, kernel, stride, padding,
                        bias=False), nn.BatchNorm2d(channels), nn.ReLU()]

    layers, channels_in = conv_bn_relu(1, 64, 7, 2, 3), 64
    for channels, stride in ((64, 2), (128, 2), (256, 2), (512, 1)):
      layers += conv_bn_relu(channels_in, channels, 3, stride, 1)
      layers += conv_bn_relu(channels, channels, 3, 1, 1)
      channels_in = channels
    self.layers = nn.Sequential(*layers)

  def forward(self, x):
    return torch.amax(self.layers(x), dim=(2, 3))


def projection_head():
  return nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 512),
                       nn.ReLU(), nn.Linear(512, 128))


def num_parameters(module):
  return sum(p.numel() for p in module.parameters())


def main():
  batch_size = int(os.environ.get("B", 8))
  steps = int(os.environ.get("STEPS", 10))
  torch.manual_seed(0)
  video_encoder, audio_encoder = R2Plus1D18(), AudioConvNet()
  assert num_parameters(video_encoder) == 15379136
  assert num_parameters(audio_encoder) == 4725696
  video_head, audio_head = projection_head(), projection_head()
  modules = (video_encoder, audio_encoder, video_head, audio_head)
  optimizer = torch.optim.Adam([p for m in modules for p in m.parameters()],
                               lr=2e-4, weight_decay=1e-5)
  video_bank = F.normalize(torch.randn(NUM_DATA, 128), dim=1)
  audio_bank = F.normalize(torch.randn(NUM_DATA, 128), dim=1)
  video = torch.randn(batch_size, 3, 8, 112, 112)
  audio = torch.randn(batch_size, 1, 200, 257)
  partition = []  # Z, estimated on the first step.

  def nce(anchors, bank, indices, negatives):
    rows = bank[torch.cat([indices[:, None], negatives], 1)]  # [B, 1 + K, D]
    scores = torch.exp(torch.bmm(rows, anchors[:, :, None])[..., 0]
                       / TEMPERATURE)
    if not partition:
      partition.append(scores[:, 1:].mean().item())
    noise = NUM_NEGATIVES * partition[0]
    positive = torch.log(scores[:, 0] / (scores[:, 0] + noise))
    negative = torch.log(noise / (scores[:, 1:] + noise)).sum(1)
    return -(positive + negative).mean()

  def train_step():
    indices = torch.randint(0, NUM_DATA, (batch_size,))
    negatives = torch.randint(0, NUM_DATA - 1, (batch_size, NUM_NEGATIVES))
    negatives += (negatives >= indices[:, None]).long()
    v = F.normalize(video_head(video_encoder(video)), dim=1)
    a = F.normalize(audio_head(audio_encoder(audio)), dim=1)
    loss = 0.5 * (nce(v, audio_bank, indices, negatives)
                  + nce(a, video_bank, indices, negatives))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    with torch.no_grad():
      for bank, x in ((video_bank, v), (audio_bank, a)):
        bank[indices] = F.normalize(
            MOMENTUM * bank[indices] + (1 - MOMENTUM) * x, dim=1)

  for _ in range(3):
    train_step()
  seconds = []
  for _ in range(steps):
    start = time.perf_counter()
    train_step()
    seconds.append(time.perf_counter() - start)
  median = statistics.median(seconds)
  print(json.dumps({
      "impl": "pytorch", "torch": torch.__version__,
      "threads": torch.get_num_threads(), "batch_size": batch_size,
      "step_seconds_median": round(median, 4),
      "clips_per_second": round(batch_size / median, 2)}))


if __name__ == "__main__":
  main()
