#!/usr/bin/env python3
"""A CIFAR-10 ResNet-18 (3x3 stride-1 stem, stage widths w, 2w, 4w, 8w) trained with PyTorch, for
the attack comparison on CIFAR-10 (scripts/compare_attacks.py --dataset cifar10).

    python3 scripts/get_cifar10.py
    python3 scripts/train_cifar_resnet.py [--data data/cifar10] [--width 8] [--epochs 15]

Writes OUT (default data/cifar10/resnet18_w8.pth, a state_dict) and its card beside it
(resnet18_w8.json: architecture resnet18, input 3x32x32, the app's CIFAR-10 normalisation, mean
and std 0.5 per channel, so that eps 8/255 in pixels is 16/255 in the model's units). SGD with
momentum 0.9, Nesterov, weight decay 5e-4, batch 128, a one-cycle learning rate peaking at 0.1,
random crops (4-pixel zero padding) and horizontal flips, seed 0. Prints the test accuracy.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from make_fixtures import BasicBlock, ResNet

MEAN, STD = 0.5, 0.5


def load(folder: Path, names):
    raw = np.concatenate([np.fromfile(folder / f"{n}.bin", dtype=np.uint8).reshape(-1, 3073) for n in names])
    x = torch.from_numpy(raw[:, 1:].reshape(-1, 3, 32, 32).copy()).float().div(255)
    return x, torch.from_numpy(raw[:, 0].astype(np.int64))


def model(width):
    return ResNet(BasicBlock, [2, 2, 2, 2], width=width, stem="cifar", in_channels=3, num_classes=10)


def augment(x, g):
    n = x.shape[0]
    padded = F.pad(x, (4, 4, 4, 4))
    dy, dx = torch.randint(0, 9, (n,), generator=g), torch.randint(0, 9, (n,), generator=g)
    out = torch.stack([padded[i, :, dy[i] : dy[i] + 32, dx[i] : dx[i] + 32] for i in range(n)])
    flip = torch.rand(n, generator=g) < 0.5
    out[flip] = out[flip].flip(3)
    return out


def accuracy(net, x, y):
    net.eval()
    with torch.no_grad():
        return sum((net((x[i : i + 500] - MEAN) / STD).argmax(1) == y[i : i + 500]).sum().item()
                   for i in range(0, len(x), 500)) / len(x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="data/cifar10")
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--out")
    a = ap.parse_args()
    folder = Path(a.data) / "cifar-10-batches-bin"
    out = Path(a.out or Path(a.data) / f"resnet18_w{a.width}.pth")
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x, y = load(folder, [f"data_batch_{i}" for i in range(1, 6)])
    xt, yt = load(folder, ["test_batch"])
    net = model(a.width)
    steps = a.epochs * (len(x) // 128)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=steps, pct_start=0.25)
    start = time.time()
    for epoch in range(a.epochs):
        net.train()
        order = torch.randperm(len(x), generator=g)
        for i in range(len(x) // 128):
            idx = order[i * 128 : (i + 1) * 128]
            loss = F.cross_entropy(net((augment(x[idx], g) - MEAN) / STD), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        print(f"epoch {epoch + 1}/{a.epochs}: loss {loss.item():.3f}, test accuracy {accuracy(net, xt, yt):.4f}, "
              f"{time.time() - start:.0f} s", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), out)
    card = {"architecture": "resnet18", "input": [3, 32, 32], "normalize": {"mean": [MEAN] * 3, "std": [STD] * 3}}
    out.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    print(f"{out}: test accuracy {accuracy(net, xt, yt):.4f}")


if __name__ == "__main__":
    main()
