"""PyTorch side of the flow-nn3d benchmark: the same shapes, model and steps as
bench/nn3d_bench.rs. Prints one JSON object per measurement. Run with the same thread count.
--device cuda runs it on the GPU (each timed call ends with torch.cuda.synchronize())."""
import json
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

reps = int(sys.argv[sys.argv.index("--reps") + 1]) if "--reps" in sys.argv else 5
quick = "--quick" in sys.argv
threads = int(sys.argv[sys.argv.index("--threads") + 1]) if "--threads" in sys.argv else torch.get_num_threads()
torch.set_num_threads(threads)
# --memory: only the peak memory of two U-Net training iterations (a process of its own).
memory = "--memory" in sys.argv
# --only NAME: only the measurements whose name starts with NAME (as nn3d_bench's --only).
only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else ""
device = torch.device(sys.argv[sys.argv.index("--device") + 1] if "--device" in sys.argv else "cpu")
if memory and device.type != "cpu":
    sys.exit("--memory measures the process's resident memory: CPU only")
torch.set_default_device(device)


def sync():
    if device.type == "cuda":
        torch.cuda.synchronize()


def status_kib(field):
    """A VmRSS/VmHWM line of /proc/self/status, in KiB."""
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def wanted(name):
    return name.startswith(only)


def timed(n, f):
    f()
    sync()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        sync()
        out.append(time.perf_counter() - t)
    return out


def report(name, times, gflop=None):
    med = statistics.median(times)
    print(json.dumps({"impl": "torch", "name": name, "median_s": round(med, 6), "runs": len(times),
                      "gflops": round(gflop / med, 2) if gflop else None}), flush=True)


if not memory:
    s = 32 if quick else 64
    x = torch.randn(1, 32, s, s, s)
    w = torch.randn(32, 32, 3, 3, 3) * 0.05
    gflop = 2 * 32 * 32 * 27 * s ** 3 / 1e9
    with torch.no_grad():
        if wanted(f"conv3d_fwd_{s}"):
            report(f"conv3d_fwd_{s}", timed(reps, lambda: F.conv3d(x, w, padding=1)), gflop)
    xv = x.clone().requires_grad_()
    wv = w.clone().requires_grad_()
    g = torch.randn(1, 32, s, s, s)


    def fwd_bwd():
        xv.grad = None
        wv.grad = None
        y = F.conv3d(xv, wv, padding=1)
        (y * g).sum().backward()


    if wanted(f"conv3d_fwd_bwd_{s}"):
        report(f"conv3d_fwd_bwd_{s}", timed(reps, fwd_bwd), 3 * gflop)


class Block(nn.Sequential):
    def __init__(self, cin, cout, stride):
        layers = []
        for i in range(2):
            layers += [nn.Conv3d(cin if i == 0 else cout, cout, 3, stride if i == 0 else 1, 1),
                       nn.InstanceNorm3d(cout, eps=1e-5, affine=True), nn.LeakyReLU(0.01)]
        super().__init__(*layers)


class UNet(nn.Module):
    """PlainConvUNet as in flow_nn3d::UNet3d (default: base 16, 5 levels, cap 256; the heads of
    every decoder level exist, as with flow's deep supervision)."""

    def __init__(self, cin=1, classes=3, base=16, levels=5, cap=256):
        super().__init__()
        ch = [min(base * 2 ** l, cap) for l in range(levels)]
        self.enc = nn.ModuleList([Block(cin if l == 0 else ch[l - 1], ch[l], 1 if l == 0 else 2) for l in range(levels)])
        self.up = nn.ModuleList([nn.ConvTranspose3d(ch[l + 1], ch[l], 2, 2) for l in range(levels - 1)])
        self.dec = nn.ModuleList([Block(2 * ch[l], ch[l], 1) for l in range(levels - 1)])
        self.head = nn.ModuleList([nn.Conv3d(ch[l], classes, 1) for l in range(levels - 1)])

    def forward(self, x, all_outputs=True):
        skips = []
        for b in self.enc:
            x = b(x)
            skips.append(x)
        outs = []
        for l in reversed(range(len(self.dec))):
            x = self.dec[l](torch.cat([self.up[l](x), skips[l]], 1))
            if all_outputs or l == 0:
                outs.append(self.head[l](x))
        return outs[::-1]


def dice_ce(logits, target):
    c = logits.shape[1]
    onehot = F.one_hot(target[:, 0].long(), c).permute(0, 4, 1, 2, 3).float()
    ce = F.cross_entropy(logits, target[:, 0].long())
    p = logits.softmax(1)[:, 1:]
    gt = onehot[:, 1:]
    dims = (0, 2, 3, 4)
    tp = (p * gt).sum(dims)
    dc = (2 * tp + 1e-5) / torch.clamp(p.sum(dims) + gt.sum(dims) + 1e-5, min=1e-8)
    return ce - dc.mean()


net = UNet()
opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.99, nesterov=True, weight_decay=3e-5)
ps = 32 if quick else 64
img = torch.randn(2, 1, ps, ps, ps)
lab = torch.randint(0, 3, (2, 1, ps, ps, ps)).float()
wts = [0.5 ** i for i in range(4)]
wts[-1] = 0
wts = [v / sum(wts) for v in wts]


def train_iter():
    opt.zero_grad()
    outs = net(img)
    loss = 0
    for o, wt in zip(outs, wts):
        if wt == 0:
            continue
        t = F.interpolate(lab, size=o.shape[2:], mode="nearest") if o.shape[2:] != lab.shape[2:] else lab
        loss = loss + wt * dice_ce(o, t)
    loss.backward()
    opt.step()


if memory:
    # Growth above the resident set before the first iteration (the model, optimiser and batch
    # exist), so the Python runtime does not count; VmHWM reset through clear_refs.
    before = status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    for _ in range(2):
        train_iter()
    peak = status_kib("VmHWM") - before
    print(json.dumps({"impl": "torch", "name": f"unet_train_iter_b2_{ps}_memory",
                      "peak_mib": round(peak / 1024, 1)}), flush=True)
    sys.exit(0)

if wanted(f"unet_train_iter_b2_{ps}"):
    report(f"unet_train_iter_b2_{ps}", timed(min(reps, 3), train_iter))

vs = 64 if quick else 128
vol = torch.randn(1, 1, vs, vs, vs)


def sliding_window():
    """Same windows, Gaussian weighting and x-mirroring as flow's predict_sliding_window."""
    import math
    p = ps
    n = math.ceil((vs - p) / (p * 0.5)) + 1
    step = (vs - p) / (n - 1) if n > 1 else 0
    starts = [round(i * step) for i in range(n)]
    ax = torch.exp(-((torch.arange(p) - p // 2) ** 2) / (2 * (p / 8) ** 2))
    gauss = ax[:, None, None] * ax[None, :, None] * ax[None, None, :]
    gauss = gauss / gauss.max()
    acc = torch.zeros(3, vs, vs, vs)
    wsum = torch.zeros(vs, vs, vs)
    with torch.no_grad():
        for a in starts:
            for b in starts:
                for c in starts:
                    crop = vol[:, :, a:a + p, b:b + p, c:c + p]
                    pr = net(crop, all_outputs=False)[0].softmax(1)
                    pr = pr + net(crop.flip(4), all_outputs=False)[0].softmax(1).flip(4)
                    acc[:, a:a + p, b:b + p, c:c + p] += pr[0] / 2 * gauss
                    wsum[a:a + p, b:b + p, c:c + p] += gauss
    return acc / wsum


if wanted(f"sliding_window_{vs}"):
    report(f"sliding_window_{vs}", timed(1, sliding_window))


# The rsna7 demo profile's three nets (as DEMO_NETS in nn3d_bench.rs): one training iteration,
# no deep supervision. (name, in channels, classes, base, levels, cap, patch zyx, batch)
DEMO_NETS = [
    ("demo_fracture", 1, 2, 6, 3, 48, (32, 32, 32), 2),
    ("demo_stage1_fullres", 1, 2, 8, 4, 64, (32, 32, 32), 2),
    ("demo_stage1_lowres", 2, 9, 8, 4, 64, (48, 24, 24), 1),
]
for name, cin, classes, base, levels, cap, shape, b in DEMO_NETS:
    torch.manual_seed(0)
    dnet = UNet(cin, classes, base, levels, cap)
    dnet.head = nn.ModuleList([dnet.head[0]])  # one head: no deep supervision
    dopt = torch.optim.SGD(dnet.parameters(), lr=0.01, momentum=0.99, nesterov=True, weight_decay=3e-5)
    dimg = torch.randn(b, cin, *shape)
    dlab = torch.randint(0, classes, (b, 1, *shape)).float()

    def demo_iter():
        dopt.zero_grad()
        x = dimg
        skips = []
        for blk in dnet.enc:
            x = blk(x)
            skips.append(x)
        for l in reversed(range(len(dnet.dec))):
            x = dnet.dec[l](torch.cat([dnet.up[l](x), skips[l]], 1))
        dice_ce(dnet.head[0](x), dlab).backward()
        dopt.step()

    if wanted(f"{name}_train_iter"):
        report(f"{name}_train_iter", timed(reps * 4, demo_iter))
