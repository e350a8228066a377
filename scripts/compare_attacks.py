#!/usr/bin/env python3
"""Robust accuracy and time of the engine's attacks against the reference implementations
(torchattacks), same network, same images, same parameters: the shared MNIST CNN on the MNIST
test set, or (--dataset cifar10) a CIFAR-10 ResNet-18 on the CIFAR-10 test set.

    python3 -m pip install torch==2.15.0 torchattacks==3.5.1
    cargo build --release
    python3 scripts/compare_attacks.py [--data ../shared/data] [--limit 1000] [--eps 0.3]
                                       [--steps 100] [--restarts 1] [--queries 5000] [--norm linf]
                                       [--attacks apgd-ce,apgd-dlr,apgd-t,fab-t,square,strong]
    python3 scripts/get_cifar10.py && python3 scripts/train_cifar_resnet.py
    python3 scripts/compare_attacks.py --dataset cifar10 --eps 0.0313725 [--model data/cifar10/resnet18_w8.pth]

`strong` is compared with torchattacks' MultiAttack of the same four attacks (APGD-CE, APGD-T
over 9 target classes, FAB-T over 9 target classes, Square), and `autoattack` runs torchattacks'
standard AutoAttack (which runs its APGD attacks with 10 iterations, not 100) against our
`strong`. FAB-T's first run per target starts at the clean image in both, so with one restart it
is deterministic on both sides.

eps is in pixel units (the image range [0, 1]), as torchattacks takes it; the engine gets the
same ball in its normalised units (eps / std) with --clamp, so both stay inside the image.
Both run single-threaded-agnostic on this machine's CPU; the times include the clean pass.
Random starts differ between the two (each draws its own), so robust accuracies agree to
within what restarts change, not sample for sample.
"""

import argparse
import json
import subprocess
import time
from pathlib import Path

import torch
import torch.nn as nn
import torchattacks

import train_cifar_resnet
from reference_mnist import load_idx, model

# Each data set's normalisation, as the engine's card or default gives it (one value per channel).
NORMALISE = {"mnist": (0.1307, 0.3081), "cifar10": (train_cifar_resnet.MEAN, train_cifar_resnet.STD)}


def reference(name, net, a):
    norm = {"linf": "Linf", "l2": "L2"}[a.norm]
    common = dict(norm=norm, eps=a.eps, seed=a.seed)
    apgd_ce = lambda: torchattacks.APGD(net, steps=a.steps, n_restarts=a.restarts, loss="ce", **common)
    apgd_t = lambda: torchattacks.APGDT(net, steps=a.steps, n_restarts=1, n_classes=10, **common)
    square = lambda: torchattacks.Square(net, n_queries=a.queries, n_restarts=a.restarts, **common)
    fab_t = lambda: torchattacks.FAB(net, norm=norm, eps=a.eps, seed=a.seed, steps=a.steps, n_restarts=a.restarts,
                                     multi_targeted=True, n_classes=10)
    if name == "apgd-ce":
        return apgd_ce()
    if name == "apgd-dlr":
        return torchattacks.APGD(net, steps=a.steps, n_restarts=a.restarts, loss="dlr", **common)
    if name == "apgd-t":
        return apgd_t()
    if name == "square":
        return square()
    if name == "fab-t":
        return fab_t()
    if name == "strong":
        return torchattacks.MultiAttack([apgd_ce(), apgd_t(), fab_t(), square()])
    if name == "autoattack":
        return torchattacks.AutoAttack(net, version="standard", n_classes=10, **common)
    raise SystemExit(f"no reference for {name}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--bin", default="target/release/fragility-explorer")
    ap.add_argument("--limit", type=int, default=1000)
    ap.add_argument("--eps", type=float, default=0.3)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--restarts", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--queries", type=int, default=5000)
    ap.add_argument("--norm", default="linf", choices=["linf", "l2"])
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--attacks", default="apgd-ce,apgd-dlr")
    ap.add_argument("--grad", default="exact", help="the engine's gradient: exact, or autograd as torchattacks")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--dataset", default="mnist", choices=["mnist", "cifar10"])
    ap.add_argument("--cifar", default="data/cifar10", help="the folder scripts/get_cifar10.py wrote")
    ap.add_argument("--model", help="cifar10: a ResNet-18 state_dict with its card beside it")
    a = ap.parse_args()
    data = Path(a.data)
    mean, std = NORMALISE[a.dataset]
    full, x, labels, model_args, data_dir = load_mnist(data, a) if a.dataset == "mnist" else load_cifar10(a)
    full = nn.Sequential(_Normalize(mean, std), full).eval()
    rows = []
    for name in a.attacks.split(","):
        atk = reference(name, full, a)
        start = time.perf_counter()
        robust = 0
        for i in range(0, len(x), a.batch):
            xb, yb = x[i : i + a.batch], labels[i : i + a.batch]
            adv = atk(xb, yb)
            with torch.no_grad():
                robust += (full(adv).argmax(1) == yb).sum().item()
        ref_seconds = time.perf_counter() - start
        cmd = [
            a.bin, "eval", *model_args, "--data", str(data_dir), "--limit", str(a.limit),
            "--attack", "strong" if name == "autoattack" else name,
            "--eps", repr(a.eps / std), "--clamp", "--attack-steps", str(a.steps), "--restarts", str(a.restarts),
            "--queries", str(a.queries), "--norm", a.norm,
            "--seed", str(a.seed), "--batch", str(a.batch), "--grad", a.grad, "--json",
        ]
        start = time.perf_counter()
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        ours_seconds = time.perf_counter() - start
        ours = json.loads(out)
        rows.append({
            "attack": name,
            "images": len(x),
            "eps_pixel": a.eps,
            "steps": a.steps,
            "restarts": a.restarts,
            "queries": a.queries,
            "norm": a.norm,
            "grad": a.grad,
            "reference_robust": robust,
            "ours_robust": ours["correct_adversarial"],
            "difference_points": 100.0 * (ours["correct_adversarial"] - robust) / len(x),
            "reference_seconds": ref_seconds,
            "ours_seconds": ours_seconds,
            "speed_ratio": ref_seconds / ours_seconds,
            "ours_stages": ours.get("stages", []),
            "ours_warnings": ours.get("warnings", []),
        })
    if a.json:
        print(json.dumps(rows, indent=2))
        return
    print(
        f"{len(x)} {a.dataset} test images, {a.norm} eps {a.eps} (pixel units), {a.steps} steps, "
        f"{a.restarts} restart(s), {a.queries} queries, our gradient {a.grad}"
    )
    print("| attack | torchattacks robust | ours robust | difference (points) | torchattacks s | ours s | speed-up |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['attack']} | {r['reference_robust']} | {r['ours_robust']} | {r['difference_points']:+.1f} "
            f"| {r['reference_seconds']:.1f} | {r['ours_seconds']:.1f} | {r['speed_ratio']:.2f}x |"
        )


def load_mnist(data, a):
    """The shared MNIST CNN and the first `limit` MNIST test images in [0, 1]."""
    net = model()
    net.load_state_dict(torch.load(data / "models" / "mnist_cnn_small.pth", map_location="cpu", weights_only=True))
    images = load_idx(data / "mnist" / "t10k-images-idx3-ubyte.gz")[: a.limit]
    labels = torch.from_numpy(load_idx(data / "mnist" / "t10k-labels-idx1-ubyte.gz")[: a.limit].astype("int64"))
    x = torch.from_numpy(images.copy()).float().div(255).unsqueeze(1)
    return net, x, labels, [], data / "mnist"


def load_cifar10(a):
    """A CIFAR-10 ResNet-18 (the width read from its stem) and the first `limit` test images."""
    folder = Path(a.cifar)
    path = Path(a.model or folder / "resnet18_w8.pth")
    state = torch.load(path, map_location="cpu", weights_only=True)
    net = train_cifar_resnet.model(state["conv1.weight"].shape[0])
    net.load_state_dict(state)
    x, y = train_cifar_resnet.load(folder / "cifar-10-batches-bin", ["test_batch"])
    return net, x[: a.limit], y[: a.limit], ["--model", str(path)], folder


class _Normalize(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, x):
        return (x - self.mean) / self.std


if __name__ == "__main__":
    main()
