#!/usr/bin/env python3
"""Builds the embedded default model and data under assets/default/.

- mnist_cnn_small.safetensors + .json: the MIT-licensed MNIST CNN from shared/data/models,
  converted from PyTorch's .pth (weights unchanged) with its model card.
- mnist-test-1000-{images-idx3,labels-idx1}-ubyte.gz: the first 1,000 MNIST test images.

Usage: python3 scripts/make_default_assets.py [path/to/shared/data]
"""
import gzip
import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data"
OUT = ROOT / "assets" / "default"
N = 1000


def idx_subset(src: Path, dst: Path, count: int) -> None:
    raw = gzip.open(src, "rb").read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    item = 1
    for d in dims[1:]:
        item *= d
    header = bytearray(raw[: 4 + 4 * ndim])
    header[4:8] = count.to_bytes(4, "big")
    body = raw[4 + 4 * ndim: 4 + 4 * ndim + count * item]
    # mtime=0 keeps the file byte-identical across runs.
    with open(dst, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as g:
        g.write(bytes(header) + body)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    sd = torch.load(DATA / "models" / "mnist_cnn_small.pth", map_location="cpu", weights_only=True)
    save_file({k: v.contiguous() for k, v in sd.items()}, OUT / "mnist_cnn_small.safetensors")
    card = {
        "architecture": "sequential",
        "input": [1, 28, 28],
        "normalize": {"mean": [0.1307], "std": [0.3081]},
        "classes": [str(i) for i in range(10)],
        "dataset": "mnist",
        "layers": [
            {"type": "conv2d", "key": "features.0", "padding": 1},
            {"type": "relu"},
            {"type": "maxpool2d", "kernel": 2},
            {"type": "conv2d", "key": "features.3", "padding": 1},
            {"type": "relu"},
            {"type": "maxpool2d", "kernel": 2},
            {"type": "flatten"},
            {"type": "linear", "key": "classifier.0"},
            {"type": "relu"},
            {"type": "linear", "key": "classifier.2"},
        ],
    }
    (OUT / "mnist_cnn_small.json").write_text(json.dumps(card, indent=2) + "\n")
    shutil.copy(DATA / "models" / "LICENSE-mnist_cnn_small.txt", OUT / "LICENSE-mnist_cnn_small.txt")
    idx_subset(DATA / "mnist" / "t10k-images-idx3-ubyte.gz", OUT / "mnist-test-1000-images-idx3-ubyte.gz", N)
    idx_subset(DATA / "mnist" / "t10k-labels-idx1-ubyte.gz", OUT / "mnist-test-1000-labels-idx1-ubyte.gz", N)
    print("wrote", sorted(p.name for p in OUT.iterdir()))


if __name__ == "__main__":
    main()
