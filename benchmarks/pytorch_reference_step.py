"""A PyTorch training step equivalent to the official AVID one (comparison only).

Not part of avid_tf and not installed by requirements.txt: it times, on
in-memory tensors, the step that `python scripts/benchmark.py
--what=train_step` times for avid_tf, written the way the official PyTorch
code does it (R(2+1)D-18 and the audio ConvNet with the published parameter
counts, 512-512-128 heads, NCE against memory rows with Z frozen from the
first step, Adam with weight_decay 1e-5, EMA memory update), so the two can
be compared as a ratio on one machine:

  pip install torch   # a CPU build is enough
  python benchmarks/pytorch_reference_step.py   # env B (batch), STEPS

Prints one JSON line with clips_per_second and step_seconds_median.
"""
import json, os, statistics, time
import torch, torch.nn as nn, torch.nn.functional as F

def bn3(c): return nn.BatchNorm3d(c)
class Block(nn.Module):
  def __init__(s, cin, cout, stride):
    super().__init__()
    t, sp = stride
    s.c1 = nn.Conv3d(cin, cout, (1,3,3), (1,sp,sp), (0,1,1), bias=False); s.b1 = bn3(cout)
    s.c2 = nn.Conv3d(cout, cout, (3,1,1), (t,1,1), (1,0,0), bias=False); s.b2 = bn3(cout)
    s.c3 = nn.Conv3d(cout, cout, (1,3,3), 1, (0,1,1), bias=False); s.b3 = bn3(cout)
    s.c4 = nn.Conv3d(cout, cout, (3,1,1), 1, (1,0,0), bias=False)
    s.short = nn.Conv3d(cin, cout, 1, (t,sp,sp), bias=False) if (cin != cout or sp != 1) else None
    s.out_bn = bn3(cout)
  def forward(s, x):
    y = F.relu(s.b1(s.c1(x))); y = F.relu(s.b2(s.c2(y))); y = F.relu(s.b3(s.c3(y))); y = s.c4(y)
    r = s.short(x) if s.short is not None else x
    return F.relu(s.out_bn(y + r))
class R2P1D(nn.Module):
  def __init__(s, blocks=(2,2,2,2)):
    super().__init__()
    s.stem = nn.Sequential(nn.Conv3d(3,64,(3,7,7),(1,2,2),(1,3,3),bias=False), bn3(64), nn.ReLU(), nn.MaxPool3d((1,3,3),(1,2,2),(0,1,1)))
    layers, cin = [], 64
    for i, (c, n) in enumerate(zip((64,128,256,512), blocks)):
      for j in range(n):
        layers.append(Block(cin, c, (2,2) if (i > 0 and j == 0) else (1,1))); cin = c
    s.layers = nn.Sequential(*layers)
  def forward(s, x): return torch.amax(s.layers(s.stem(x)), dim=(2,3,4))
class AudioCNN(nn.Module):
  def __init__(s):
    super().__init__()
    def cbr(i,o,k,st,p): return [nn.Conv2d(i,o,k,st,p,bias=False), nn.BatchNorm2d(o), nn.ReLU()]
    L = cbr(1,64,7,2,3); cin = 64
    for c, st in ((64,2),(128,2),(256,2),(512,1)):
      L += cbr(cin,c,3,st,1) + cbr(c,c,3,1,1); cin = c
    s.net = nn.Sequential(*L)
  def forward(s, x): return torch.amax(s.net(x), dim=(2,3))
def head(): return nn.Sequential(nn.Linear(512,512), nn.ReLU(), nn.Linear(512,512), nn.ReLU(), nn.Linear(512,128))

def main():
  B = int(os.environ.get("B", 8)); N = 10000; K = 1024; tau = 0.07; steps = int(os.environ.get("STEPS", 10))
  torch.manual_seed(0)
  vid, aud, hv, ha = R2P1D(), AudioCNN(), head(), head()
  nparams = lambda m: sum(p.numel() for p in m.parameters())
  assert nparams(vid) == 15379136, nparams(vid)
  assert nparams(aud) == 4725696, nparams(aud)
  params = [p for m in (vid, aud, hv, ha) for p in m.parameters()]
  opt = torch.optim.Adam(params, lr=2e-4, weight_decay=1e-5)
  vbank = F.normalize(torch.randn(N, 128), dim=1); abank = F.normalize(torch.randn(N, 128), dim=1)
  video = torch.randn(B, 3, 8, 112, 112); audio = torch.randn(B, 1, 200, 257)
  Z = [None]
  def nce(x, bank, idx, neg):
    rows = bank[torch.cat([idx[:, None], neg], 1)]          # [B, K+1, D]
    e = torch.exp(torch.bmm(rows, x[:, :, None]).squeeze(2) / tau)
    if Z[0] is None: Z[0] = e[:, 1:].mean().item()
    pn = K * Z[0]
    return (-(torch.log(e[:, 0] / (e[:, 0] + pn))) - torch.log(pn / (e[:, 1:] + pn)).sum(1)).mean()
  def step():
    idx = torch.randint(0, N, (B,))
    neg = torch.randint(0, N - 1, (B, K)); neg = neg + (neg >= idx[:, None]).long()
    v = F.normalize(hv(vid(video)), dim=1); a = F.normalize(ha(aud(audio)), dim=1)
    loss = 0.5 * (nce(v, abank, idx, neg) + nce(a, vbank, idx, neg))
    opt.zero_grad(); loss.backward(); opt.step()
    with torch.no_grad():
      vbank[idx] = F.normalize(0.5 * vbank[idx] + 0.5 * v, dim=1)
      abank[idx] = F.normalize(0.5 * abank[idx] + 0.5 * a, dim=1)
  for _ in range(3): step()
  times = []
  for _ in range(steps):
    t = time.perf_counter(); step(); times.append(time.perf_counter() - t)
  med = statistics.median(times)
  print(json.dumps({"impl": "pytorch", "torch": torch.__version__, "threads": torch.get_num_threads(), "batch_size": B, "step_seconds_median": round(med, 4), "clips_per_second": round(B / med, 2)}))
main()
