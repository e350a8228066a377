#!/usr/bin/env python3
"""Robust accuracy and time of the engine's attacks against the reference implementations
(torchattacks) on the shared MNIST CNN, same images, same parameters.

    python3 -m pip install torch==2.15.0 torchattacks==3.5.1
    cargo build --release
    python3 scripts/compare_attacks.py [--data ../shared/data] [--limit 1000] [--eps 0.3]
                                       [--steps 100] [--restarts 1] [--queries 5000] [--norm linf]
                                       [--attacks apgd-ce,apgd-dlr,apgd-t,fab-t,square,strong]

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

from reference_mnist import load_idx, model

MEAN, STD = 0.1307, 0.3081


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
    a = ap.parse_args()
    data = Path(a.data)
    net = model()
    net.load_state_dict(torch.load(data / "models" / "mnist_cnn_small.pth", map_location="cpu", weights_only=True))
    # torchattacks takes images in [0, 1]: the normalisation goes inside the model.
    full = nn.Sequential(_Normalize(), net).eval()
    images = load_idx(data / "mnist" / "t10k-images-idx3-ubyte.gz")[: a.limit]
    labels = torch.from_numpy(load_idx(data / "mnist" / "t10k-labels-idx1-ubyte.gz")[: a.limit].astype("int64"))
    x = torch.from_numpy(images.copy()).float().div(255).unsqueeze(1)
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
            a.bin, "eval", "--data", str(data / "mnist"), "--limit", str(a.limit),
            "--attack", "strong" if name == "autoattack" else name,
            "--eps", repr(a.eps / STD), "--clamp", "--attack-steps", str(a.steps), "--restarts", str(a.restarts),
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
        f"{len(x)} MNIST test images, {a.norm} eps {a.eps} (pixel units), {a.steps} steps, "
        f"{a.restarts} restart(s), {a.queries} queries, our gradient {a.grad}"
    )
    print("| attack | torchattacks robust | ours robust | difference (points) | torchattacks s | ours s | speed-up |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['attack']} | {r['reference_robust']} | {r['ours_robust']} | {r['difference_points']:+.1f} "
            f"| {r['reference_seconds']:.1f} | {r['ours_seconds']:.1f} | {r['speed_ratio']:.2f}x |"
        )


class _Normalize(nn.Module):
    def forward(self, x):
        return (x - MEAN) / STD


if __name__ == "__main__":
    main()
