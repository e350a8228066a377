#!/usr/bin/env python3
"""PyTorch side of examples/bench_engine.rs: the same models, batches and work, on the CPU.

    python3 scripts/bench_torch.py [--json] [--repeats N] [--models ...] [--batches 64,256]
        [--work forward,fgsm,train]

forward: evaluation-mode logits under no_grad. fgsm: forward, input gradient of the exact
logit cotangent (METHOD.md section 4) with torch.autograd.grad, signed step. train: training-mode
forward, cross-entropy, backward, Adam (lr 1e-3). Median images per second of N repeats after
one warm-up; peak resident memory per configuration (VmHWM, reset before each).
"""
import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parent.parent


def mnist_cnn() -> nn.Module:
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                          nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
            self.classifier = nn.Sequential(nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))

        def forward(self, x):
            return self.classifier(torch.flatten(self.features(x), 1))

    net = Net()
    net.load_state_dict(load_file(ROOT / "assets/default/mnist_cnn_small.safetensors"))
    return net


def resnet18(channels: int, cifar_stem: bool) -> nn.Module:
    net = torchvision.models.resnet18(num_classes=10)
    if cifar_stem:
        net.conv1 = nn.Conv2d(channels, 64, 3, 1, 1, bias=False)
        net.maxpool = nn.Identity()
    else:
        net.conv1 = nn.Conv2d(channels, 64, 7, 2, 3, bias=False)
    return net


MODELS = {
    "mnist_cnn": (mnist_cnn, (1, 28, 28)),
    "resnet18_cifar": (lambda: resnet18(3, True), (3, 32, 32)),
    "resnet18_tv28": (lambda: resnet18(1, False), (1, 28, 28)),
}


def peak_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def exact_cotangent(z, y):
    z = z.detach().double()
    onehot = F.one_hot(y, z.shape[1]).bool()
    r = z.masked_fill(onehot, float("-inf")).max(dim=1, keepdim=True).values
    c = torch.exp(z - r).masked_fill(onehot, 0.0)
    return (c - onehot.double() * c.sum(dim=1, keepdim=True)).float()


# The attack rows' budget, as examples/bench_engine.rs: 10 iterations of PGD and APGD-CE from
# the clean image, Square 100 queries, eps 8/255 and PGD step 2/255 in pixel units, seed 0.
ATTACK_STEPS, SQUARE_QUERIES, ATTACK_EPS, PGD_STEP = 10, 100, 8 / 255, 2 / 255


class Normalise(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, x):
        return (x - self.mean) / self.std


def attack_row(work, net):
    """The torchattacks attack of an attack row, or None."""
    if work not in ("pgd", "apgd-ce", "square"):
        return None
    import torchattacks  # only the attack rows need it

    if work == "pgd":
        return torchattacks.PGD(net, eps=ATTACK_EPS, alpha=PGD_STEP, steps=ATTACK_STEPS, random_start=False)
    if work == "apgd-ce":
        return torchattacks.APGD(net, norm="Linf", eps=ATTACK_EPS, steps=ATTACK_STEPS, n_restarts=1, loss="ce", seed=0)
    return torchattacks.Square(net, norm="Linf", eps=ATTACK_EPS, n_queries=SQUARE_QUERIES, n_restarts=1, p_init=0.8,
                               seed=0)


def bench(name, batch, work, repeats):
    ctor, shape = MODELS[name]
    torch.manual_seed(0)
    net = ctor()
    x = torch.randn(batch, *shape)
    y = torch.arange(batch) % 10
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    # The attack rows attack pixels: normalise them as the engine's cards do.
    mean, std = (0.1307, 0.3081) if name == "mnist_cnn" else (0.5, 0.5)
    atk = attack_row(work, nn.Sequential(Normalise(mean, std), net).eval())
    if atk is not None:
        # Pixels in [0, 1], labelled with the network's own predictions: every image is attacked.
        x = torch.rand(batch, *shape)
        with torch.no_grad():
            y = atk.model(x).argmax(1)

    def run():
        if work == "forward":
            net.eval()
            with torch.no_grad():
                net(x).sum().item()
        elif work == "fgsm":
            net.eval()
            xv = x.clone().requires_grad_(True)
            z = net(xv)
            (g,) = torch.autograd.grad((z * exact_cotangent(z, y)).sum(), xv)
            (x + 0.1 * g.sign()).sum().item()
        elif atk is not None:
            atk(x, y).sum().item()
        elif work == "train":
            net.train()
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(x), y).backward()
            opt.step()
        else:
            raise ValueError(work)

    reset_peak()
    run()
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        run()
        rates.append(batch / (time.perf_counter() - t))
    return statistics.median(rates), peak_mb()


# --------------------------------------------------------------------------------------------------
# The straightforward docs/METHOD.md sweep loop (the baseline for the engine's sweep benchmark)
# --------------------------------------------------------------------------------------------------


def load_idx(path):
    import gzip

    import numpy as np

    raw = gzip.open(path, "rb").read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def sweep_model(name, checkpoint):
    """The network to sweep: the MNIST CNN, or a ResNet-18 (torchvision stem, 1 channel)."""
    if name == "mnist_cnn":
        return mnist_cnn()
    net = resnet18(1, False)
    if checkpoint:
        net.load_state_dict(load_file(checkpoint))
    return net


def thresholds(kind, lo, hi, steps):
    a = [lo] + [lo + i * (hi - lo) / (steps - 1) for i in range(1, steps - 1)] + [hi]
    return (a[::-1] if kind == "h2" else a), (hi - lo) / steps


def removed(kind, w, a, width, lo, hi):
    w = w.double()
    if kind == "h1":
        return w <= a
    if kind == "h2":
        return w >= a
    return (a - width / 2 <= w) & (w < a + width / 2) & (w >= lo) & (w <= hi)


def run_sweep(a):
    """Every filterable layer x h1, h2, h3 x R steps: mask, clean accuracy, FGSM regenerated
    against the filtered network (exact direction), adversarial accuracy. Prints JSON."""
    torch.manual_seed(0)
    net = sweep_model(a.sweep, a.checkpoint).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    data = Path(a.data)
    x_all = torch.from_numpy(load_idx(data / "t10k-images-idx3-ubyte.gz")[: a.images].copy()).float().div(255)
    x_all = ((x_all - 0.1307) / 0.3081).unsqueeze(1)
    y_all = torch.from_numpy(load_idx(data / "t10k-labels-idx1-ubyte.gz")[: a.images].astype("int64"))
    layers = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    if a.layers:
        layers = [layers[i] for i in map(int, a.layers.split(","))]
    step_times, records = [], []
    for layer in layers:
        w0 = layer.weight.data.clone()
        lo, hi = w0.min().item(), w0.max().item()
        for kind in ("h1", "h2", "h3"):
            alphas, width = thresholds(kind, lo, hi, a.steps)
            clean_c, adv_c = [], []
            for alpha in alphas[: a.max_steps or None]:
                t = time.perf_counter()
                layer.weight.data = w0 * (~removed(kind, w0, alpha, width, lo, hi)).float()
                clean = adv = 0
                for s in range(0, len(y_all), a.batch):
                    x, y = x_all[s: s + a.batch], y_all[s: s + a.batch]
                    with torch.no_grad():
                        clean += (net(x).argmax(1) == y).sum().item()
                    xv = x.clone().requires_grad_(True)
                    z = net(xv)
                    (g,) = torch.autograd.grad((z * exact_cotangent(z, y)).sum(), xv)
                    with torch.no_grad():
                        adv += (net(x + a.eps * g.sign()).argmax(1) == y).sum().item()
                step_times.append(time.perf_counter() - t)
                clean_c.append(clean)
                adv_c.append(adv)
            records.append({"filter": kind, "clean_correct": clean_c, "adv_correct": adv_c})
        layer.weight.data = w0
    print(json.dumps({"step_seconds": step_times, "records": records,
                      "median_step_seconds": statistics.median(step_times)}))


def conv_layers(spec, batch, repeats):
    """examples/bench_engine/conv.rs' per-convolution times: forward, and the input's gradient for
    an output gradient of ones; spec is CIxCOxSIDExKxSTRIDExPAD,... Median ms after one warm-up."""
    torch.manual_seed(0)
    rows = []
    for layer in spec.split(","):
        ci, co, side, k, s, p = map(int, layer.split("x"))
        x = torch.randn(batch, ci, side, side, requires_grad=True)
        w = torch.randn(co, ci, k, k) * 0.1
        fwd, grad = [], []
        for i in range(repeats + 1):
            t = time.perf_counter()
            y = F.conv2d(x, w, None, s, p)
            y.view(-1)[0].item()
            f = time.perf_counter() - t
            t = time.perf_counter()
            (g,) = torch.autograd.grad(y, x, torch.ones_like(y))
            g.view(-1)[0].item()
            if i > 0:
                fwd.append(f * 1e3)
                grad.append((time.perf_counter() - t) * 1e3)
        rows.append({"forward_ms": statistics.median(fwd), "input_grad_ms": statistics.median(grad)})
    print(json.dumps(rows))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--conv-layers", help="CIxCOxSIDExKxSTRIDExPAD,...: time these convolutions alone (conv.rs)")
    ap.add_argument("--sweep", choices=["mnist_cnn", "resnet18_tv28"], help="run docs/METHOD.md sweep loop instead")
    ap.add_argument("--checkpoint", help="--sweep resnet18_tv28: trained weights (safetensors)")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "mnist"))
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--max-steps", type=int, default=0, help="time only the first K steps of each sweep")
    ap.add_argument("--layers", default="", help="indices of the layers to sweep (default all)")
    ap.add_argument("--eps", type=float, default=0.3)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--models", default="mnist_cnn,resnet18_cifar,resnet18_tv28")
    ap.add_argument("--batches", default="64,256")
    ap.add_argument("--work", default="forward,fgsm,train")
    ap.add_argument("--row", help="MODEL,BATCH,WORK: measure one configuration (used by the driver)")
    a = ap.parse_args()
    if a.conv_layers:
        conv_layers(a.conv_layers, a.batch, a.repeats)
        return
    if a.sweep:
        run_sweep(a)
        return
    if a.row:
        m, b, w = a.row.split(",")
        rate, peak = bench(m, int(b), w, a.repeats)
        print(json.dumps({"model": m, "batch": int(b), "work": w, "images_per_s": rate, "peak_mb": peak}))
        return
    rows = []
    for m in a.models.split(","):
        for b in map(int, a.batches.split(",")):
            for w in a.work.split(","):
                # A child process per configuration, so its peak memory is its own.
                out = subprocess.run([sys.executable, __file__, "--row", f"{m},{b},{w}", "--repeats", str(a.repeats)],
                                     check=True, capture_output=True, text=True).stdout
                r = json.loads(out.strip().splitlines()[-1])
                rate, peak = r["images_per_s"], r["peak_mb"]
                print(f"torch  {m:>15} {w:>8} batch {b:>4}: {rate:>9.1f} img/s, peak {peak:.0f} MB", file=sys.stderr)
                rows.append({"model": m, "batch": b, "work": w, "images_per_s": rate, "peak_mb": peak})
    if a.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    if "--row" not in sys.argv and "--conv-layers" not in sys.argv:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads", file=sys.stderr)
    main()
