#!/usr/bin/env python3
"""PyTorch side of examples/bench_engine.rs: the same models, batches and work, on the CPU.

    python3 scripts/bench_torch.py [--json] [--repeats N] [--models ...] [--batches 64,256]
        [--work forward,fgsm,train]

forward: evaluation-mode logits under no_grad. fgsm: forward, input gradient of the exact
logit cotangent (SPEC section 4) with torch.autograd.grad, signed step. train: training-mode
forward, cross-entropy, backward, Adam (lr 1e-3). Median images per second of N repeats after
one warm-up; peak resident memory per configuration (VmHWM, reset before each).
"""
import argparse
import json
import statistics
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


def bench(name, batch, work, repeats):
    ctor, shape = MODELS[name]
    torch.manual_seed(0)
    net = ctor()
    x = torch.randn(batch, *shape)
    y = torch.arange(batch) % 10
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)

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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--models", default="mnist_cnn,resnet18_cifar,resnet18_tv28")
    ap.add_argument("--batches", default="64,256")
    ap.add_argument("--work", default="forward,fgsm,train")
    a = ap.parse_args()
    rows = []
    for m in a.models.split(","):
        for b in map(int, a.batches.split(",")):
            for w in a.work.split(","):
                rate, peak = bench(m, b, w, a.repeats)
                print(f"torch  {m:>15} {w:>8} batch {b:>4}: {rate:>9.1f} img/s, peak {peak:.0} MB", file=sys.stderr)
                rows.append({"model": m, "batch": b, "work": w, "images_per_s": rate, "peak_mb": peak})
    if a.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads", file=sys.stderr)
    main()
