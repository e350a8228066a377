#!/usr/bin/env python3
"""PyTorch reference numbers for the shared MNIST CNN on the full MNIST test set.

Prints clean accuracy, FGSM accuracy (eps 0.3, normalised units, no clamp) with the exact
gradient direction of METHOD.md section 4, and with PyTorch's own float32 autograd of batch-mean
cross-entropy, plus the number of saturated samples. Used to check `fragility-explorer eval`.

Usage: python3 scripts/reference_mnist.py [path/to/shared/data] [--batch 100] [--limit N]
"""
import argparse
import gzip
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def load_idx(path: Path) -> np.ndarray:
    raw = gzip.open(path, "rb").read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def model() -> nn.Module:
    m = nn.Module()
    m.features = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                               nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
    m.classifier = nn.Sequential(nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))
    m.forward = lambda x: m.classifier(torch.flatten(m.features(x), 1))
    return m


def exact_cotangent(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """METHOD.md section 4: c_j = exp(z_j - r) for j != y, c_y = -sum; float64, cast back."""
    z = z.detach().double()
    onehot = F.one_hot(y, z.shape[1]).bool()
    r = z.masked_fill(onehot, float("-inf")).max(dim=1, keepdim=True).values
    c = torch.exp(z - r).masked_fill(onehot, 0.0)
    c = c - onehot.double() * c.sum(dim=1, keepdim=True)
    return c.float()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", nargs="?", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--limit", type=int, default=10000)
    ap.add_argument("--eps", type=float, default=0.3)
    a = ap.parse_args()
    data = Path(a.data)
    torch.set_grad_enabled(True)
    net = model()
    net.load_state_dict(torch.load(data / "models" / "mnist_cnn_small.pth", map_location="cpu", weights_only=True))
    net.eval()
    images = load_idx(data / "mnist" / "t10k-images-idx3-ubyte.gz")[: a.limit]
    labels = torch.from_numpy(load_idx(data / "mnist" / "t10k-labels-idx1-ubyte.gz")[: a.limit].astype(np.int64))
    x_all = (torch.from_numpy(images.copy()).float().div(255).unsqueeze(1) - 0.1307) / 0.3081
    clean = exact = auto = saturated = 0
    for s in range(0, len(labels), a.batch):
        x, y = x_all[s: s + a.batch].clone().requires_grad_(True), labels[s: s + a.batch]
        z = net(x)
        clean += (z.argmax(1) == y).sum().item()
        saturated += (F.softmax(z, 1).gather(1, y[:, None]) == 1.0).sum().item()
        (g_exact,) = torch.autograd.grad((z * exact_cotangent(z, y)).sum(), x, retain_graph=True)
        (g_auto,) = torch.autograd.grad(F.cross_entropy(z, y), x)
        with torch.no_grad():
            exact += (net(x + a.eps * g_exact.sign()).argmax(1) == y).sum().item()
            auto += (net(x + a.eps * g_auto.sign()).argmax(1) == y).sum().item()
    n = len(labels)
    print(f"n={n} batch={a.batch} eps={a.eps}")
    print(f"clean {clean}/{n}  fgsm_exact {exact}/{n}  fgsm_autograd {auto}/{n}  saturated {saturated}")


if __name__ == "__main__":
    main()
