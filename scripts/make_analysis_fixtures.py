#!/usr/bin/env python3
"""Independent PyTorch reference for the fragility analysis of docs/METHOD.md sections 1-7.

Trains a tiny, seeded MNIST CNN on the CPU, then runs synaptic filtering sweeps (local and global,
filters h0-h3), FGSM with the exact logit cotangent, filtering scores, step / weight / layer
characterisation and nodal dropout with adversarial targeting on the first 60 test images.

Writes tests/fixtures/analysis/:
    tiny_cnn.safetensors, tiny_cnn.json        the trained model and its model card
    t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz
                                               the 60 evaluation images (IDX, gzip mtime 0)
    reference.json                             every number the Rust analysis is compared with

Usage: python3 scripts/make_analysis_fixtures.py [--data /work/shared/data/mnist] [--out DIR]

Everything runs single-threaded in float32 on the CPU with deterministic algorithms; threshold
arithmetic, filter comparisons, cotangents, scores and classes are float64.
"""

import argparse
import gzip
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SEED = 0
MEAN, STD = 0.1307, 0.3081
EPS = 0.3
DELTA = 0.01
TAU = 0.02
SAMPLES = 60
LR = 1e-3
BATCH = 100
TRAIN_BATCHES = 600  # one full epoch of the 60000 training images

FILTERABLE = ["features.0", "features.4", "classifier.0", "classifier.2"]
FILTERS = ["h0", "h1", "h2", "h3"]
CLASS_LETTER = {"fragile": "f", "robust": "r", "antifragile": "a"}

MODEL_CARD = {
    "architecture": "sequential",
    "input": [1, 28, 28],
    "normalize": {"mean": [MEAN], "std": [STD]},
    "dataset": "mnist",
    "layers": [
        {"type": "conv2d", "key": "features.0", "padding": 1},
        {"type": "batchnorm2d", "key": "features.1"},
        {"type": "relu"},
        {"type": "maxpool2d", "kernel": 2},
        {"type": "conv2d", "key": "features.4", "padding": 1},
        {"type": "relu"},
        {"type": "maxpool2d", "kernel": 2},
        {"type": "flatten"},
        {"type": "linear", "key": "classifier.0"},
        {"type": "relu"},
        {"type": "linear", "key": "classifier.2"},
    ],
}


class Check(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Check("self-check failed: " + what)


# ----------------------------------------------------------------------------------------------
# Data


def read_idx(path):
    """IDX file (optionally gzip): big-endian magic (0, 0, dtype, ndim), one big-endian u32 per dim."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    check(zero == 0 and dtype == 0x08, f"{path}: expected u8 IDX data")
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    check(data.size == int(np.prod(dims)), f"{path}: size does not match header")
    return data.reshape(dims)


def write_idx_gz(path, array):
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    with open(path, "wb") as f:
        f.write(gzip.compress(header + array.tobytes(), compresslevel=9, mtime=0))


def normalise(pixels):
    """(pixel/255 - mean)/std, evaluated literally in float32; returns [N,1,28,28]."""
    p = pixels.astype(np.float32)
    x = (p / np.float32(255.0) - np.float32(MEAN)) / np.float32(STD)
    return torch.from_numpy(x.reshape(-1, 1, 28, 28).astype(np.float32))


# ----------------------------------------------------------------------------------------------
# Model and training


class TinyCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(4, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Linear(392, 16), nn.ReLU(), nn.Linear(16, 10))

    def forward(self, x):
        x = self.features(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


def train(data_dir):
    torch.manual_seed(SEED)
    model = TinyCNN()
    x_train = normalise(read_idx(os.path.join(data_dir, "train-images-idx3-ubyte.gz")))
    y_train = torch.from_numpy(read_idx(os.path.join(data_dir, "train-labels-idx1-ubyte.gz")).astype(np.int64))
    gen = torch.Generator().manual_seed(SEED)
    order = torch.randperm(x_train.shape[0], generator=gen)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    model.train()
    for b in range(TRAIN_BATCHES):
        idx = order[b * BATCH : (b + 1) * BATCH]
        opt.zero_grad()
        loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
        loss.backward()
        opt.step()
    model.eval()
    return model


@torch.no_grad()
def test_accuracy(model, x, y):
    correct = 0
    for s in range(0, x.shape[0], 1000):
        correct += int((model(x[s : s + 1000]).argmax(1) == y[s : s + 1000]).sum())
    return correct / x.shape[0]


# ----------------------------------------------------------------------------------------------
# Thresholds and masks (float64)


def thresholds(lo, hi, r):
    """a_i = lo + i*(hi-lo)/(R-1), i = 0..R-1, in float64, ends exact. Ascending."""
    a = [lo + i * (hi - lo) / (r - 1) for i in range(r)]
    a[0], a[-1] = lo, hi
    return a


def sweep_plan(filt, values, r, scope_range=None):
    """(alphas in sweep order, pulse width, (lo, hi) window clip) for one filter.

    values: float64 numpy array of the filtered set (local) or None (global, scope_range given).
    """
    if scope_range is None:
        lo, hi = float(values.min()), float(values.max())
        m = float(np.abs(values).max())
    else:
        lo, hi = scope_range
        m = hi
    if filt == "h0":
        return thresholds(0.0, m, r), 0.0, None
    up = thresholds(lo, hi, r)
    if filt == "h1":
        return up, 0.0, None
    if filt == "h2":
        return up[::-1], 0.0, None
    if filt == "h3":
        return up, (hi - lo) / r, (lo, hi)
    raise ValueError(filt)


def removed_mask(filt, w64, a, width=0.0, clip=None):
    """Boolean array, True where the filter at threshold a removes the weight (w64 float64)."""
    if filt == "h0":
        return np.abs(w64) <= a
    if filt == "h1":
        return w64 <= a
    if filt == "h2":
        return w64 >= a
    if filt == "h3":
        rem = (a - width / 2 <= w64) & (w64 < a + width / 2)
        if clip is not None:
            # docs/METHOD.md 3: weights outside the configured range are never inside a pulse window. A no-op
            # for local sweeps (the range is the layer's own [min, max]).
            rem &= (w64 >= clip[0]) & (w64 <= clip[1])
        return rem
    raise ValueError(filt)


# ----------------------------------------------------------------------------------------------
# Filtered evaluation and the attack


class Filterable:
    """The tensors of a filtered set, flattened and concatenated in order (e.g. weight then bias)."""

    def __init__(self, model, keys):
        sd = model.state_dict()
        self.keys = keys
        self.originals = [sd[k].detach().clone() for k in keys]
        self.values = np.concatenate([t.double().numpy().reshape(-1) for t in self.originals])
        self.n = int(self.values.size)

    def apply(self, model, removed):
        """Load the originals with removed elements set to exactly 0.0 (None: unfiltered)."""
        offset = 0
        with torch.no_grad():
            params = dict(model.named_parameters())
            for key, orig in zip(self.keys, self.originals):
                count = orig.numel()
                if removed is None:
                    params[key].copy_(orig)
                else:
                    rem = torch.from_numpy(removed[offset : offset + count].reshape(orig.shape))
                    params[key].copy_(torch.where(rem, torch.zeros_like(orig), orig))
                offset += count


def cotangent(z, y):
    """Exact logit cotangent of docs/METHOD.md 4 per sample, float64, cast to float32."""
    z64 = z.detach().double().numpy()
    c = np.zeros_like(z64)
    for s in range(z64.shape[0]):
        t = int(y[s])
        others = [j for j in range(z64.shape[1]) if j != t]
        r = max(z64[s, j] for j in others)
        total = 0.0
        for j in others:
            c[s, j] = math.exp(z64[s, j] - r)
            total += c[s, j]
        c[s, t] = -total
    return torch.from_numpy(c).to(z.dtype)


def fgsm(model, x, y, eps=EPS):
    """x + eps * sign(g), g the input gradient of sum z*c; torch.sign (sign(0) = 0), no clamp."""
    x = x.detach().clone().requires_grad_(True)
    z = model(x)
    (g,) = torch.autograd.grad(z, x, grad_outputs=cotangent(z, y))
    return (x + eps * torch.sign(g)).detach()


@torch.no_grad()
def correct_count(model, x, y):
    return int((model(x).argmax(1) == y).sum())


def evaluate(model, x, y, x_adv_fixed=None):
    """(clean correct, adversarial correct); the attack is regenerated unless x_adv_fixed given."""
    clean = correct_count(model, x, y)
    x_adv = fgsm(model, x, y) if x_adv_fixed is None else x_adv_fixed
    return clean, correct_count(model, x_adv, y)


# ----------------------------------------------------------------------------------------------
# Scores and classes


def simpson(g):
    r = len(g)
    check(r >= 3 and r % 2 == 1, "Simpson needs an odd R >= 3")
    odd = sum(g[i] for i in range(1, r - 1, 2))
    even = sum(g[i] for i in range(2, r - 1, 2))
    return (1.0 / (3 * (r - 1))) * (g[0] + 4 * odd + 2 * even + g[-1])


def score(acc, base_acc, rho):
    if base_acc < 1e-6:
        print("warning: baseline accuracy below 1e-6, score not normalised", file=sys.stderr)
        hat = list(acc)
    else:
        hat = [p / base_acc for p in acc]
    return simpson([h - q for h, q in zip(hat, rho)])


def step_class(c, c_base, delta=DELTA):
    c, c_base = float(c), float(c_base)
    if c < (1 - delta) * c_base:
        return "fragile"
    if c > (1 + delta) * c_base:
        return "antifragile"
    return "robust"


def layer_class(mean_s_adv, tau=TAU):
    if mean_s_adv < -tau:
        return "fragile"
    if mean_s_adv > tau:
        return "antifragile"
    return "robust"


def weight_classes(values, centres, classes):
    """Class of the h3 step whose centre is nearest (ties to the lower i) for every weight."""
    dist = np.abs(values[:, None] - np.asarray(centres, dtype=np.float64)[None, :])
    nearest = np.argmin(dist, axis=1)  # first minimum: ties go to the lower i
    return "".join(CLASS_LETTER[classes[i]] for i in nearest)


# ----------------------------------------------------------------------------------------------
# Sweeps


def run_filter(model, fset, name, filt, r, x, y, baseline, scope_range=None, x_adv_fixed=None):
    alphas, width, clip = sweep_plan(filt, fset.values, r, scope_range)
    removed, clean, adv, masks = [], [], [], []
    for a in alphas:
        rem = removed_mask(filt, fset.values, a, width, clip)
        fset.apply(model, rem)
        c, d = evaluate(model, x, y, x_adv_fixed)
        removed.append(int(rem.sum()))
        clean.append(c)
        adv.append(d)
        masks.append(rem)
    fset.apply(model, None)
    n = fset.n
    clean_acc = [c / SAMPLES for c in clean]
    adv_acc = [c / SAMPLES for c in adv]
    rho = [1 - z / n for z in removed]
    s_clean = score(clean_acc, baseline["clean_accuracy"], rho)
    s_adv = score(adv_acc, baseline["adv_accuracy"], rho)
    record = {
        "layer": name,
        "filter": filt,
        "alphas": alphas,
        "width": width,
        "n": n,
        "removed": removed,
        "clean_correct": clean,
        "adv_correct": adv,
        "clean_accuracy": clean_acc,
        "adv_accuracy": adv_acc,
        "rho": rho,
        "s_clean": s_clean,
        "s_adv": s_adv,
        "s_diff": s_adv - s_clean,
        "step_class_clean": [step_class(c, baseline["clean_correct"]) for c in clean],
        "step_class_adv": [step_class(c, baseline["adv_correct"]) for c in adv],
    }
    self_check_record(record, masks, baseline, local=scope_range is None)
    return record


def baseline_of(model, x, y):
    clean, adv = evaluate(model, x, y)
    return {
        "samples": SAMPLES,
        "clean_correct": clean,
        "adv_correct": adv,
        "clean_accuracy": clean / SAMPLES,
        "adv_accuracy": adv / SAMPLES,
    }


def sweep(model, x, y, r, scope, layers, filters, include_biases=False, transfer=False, scope_range=(-1.0, 1.0)):
    """One sweep result: baseline, records (layer-major, then filter), layer classes."""
    baseline = baseline_of(model, x, y)
    x_adv_fixed = fgsm(model, x, y) if transfer else None
    records = []
    if scope == "global":
        fset = Filterable(model, [k + ".weight" for k in layers])
        for filt in filters:
            records.append(run_filter(model, fset, "global", filt, r, x, y, baseline, scope_range, x_adv_fixed))
    else:
        for layer in layers:
            keys = [layer + ".weight"] + ([layer + ".bias"] if include_biases else [])
            fset = Filterable(model, keys)
            for filt in filters:
                records.append(run_filter(model, fset, layer, filt, r, x, y, baseline, None, x_adv_fixed))
    result = {"baseline": baseline, "records": records}
    if scope == "local" and all(f in filters for f in ("h1", "h2", "h3")):
        rows = []
        for layer in layers:
            s = {rec["filter"]: rec["s_adv"] for rec in records if rec["layer"] == layer}
            mean = (s["h1"] + s["h2"] + s["h3"]) / 3
            rows.append({"layer": layer, "mean_s_adv": mean, "class": layer_class(mean)})
        result["layer_classes"] = sorted(rows, key=lambda row: row["mean_s_adv"])
    return result


def self_check_record(rec, masks, baseline, local):
    n, last = rec["n"], len(rec["removed"]) - 1
    if local and rec["filter"] in ("h0", "h1", "h2"):
        check(rec["removed"][last] == n, f"{rec['layer']} {rec['filter']}: last step must remove every weight")
    for i, z in enumerate(rec["removed"]):
        if z == 0:
            check(
                rec["clean_correct"][i] == baseline["clean_correct"] and rec["adv_correct"][i] == baseline["adv_correct"],
                f"{rec['layer']} {rec['filter']} step {i}: removes nothing but counts differ from baseline",
            )
    if rec["filter"] == "h3":
        cover = np.sum(np.stack(masks).astype(np.int64), axis=0)
        check(int(cover.max()) <= 1, f"{rec['layer']} h3: a weight lies in two pulse windows")
        check(int(cover.sum()) == sum(rec["removed"]), f"{rec['layer']} h3: removed counts inconsistent")
    if rec["filter"] in ("h1", "h3", "h0"):
        check(rec["alphas"] == sorted(rec["alphas"]), f"{rec['layer']} {rec['filter']}: alphas must ascend")
    if rec["filter"] == "h2":
        check(rec["alphas"] == sorted(rec["alphas"], reverse=True), f"{rec['layer']} h2: alphas must descend")


# ----------------------------------------------------------------------------------------------
# Nodal dropout (METHOD.md section 7)


def dropout(model, x, y, layer="features.0"):
    conv = model.get_submodule(layer)
    base = correct_count(model, x, y)
    w0, b0 = conv.weight.detach().clone(), conv.bias.detach().clone()
    correct = []
    for k in range(w0.shape[0]):
        with torch.no_grad():
            conv.weight[k].zero_()
            conv.bias[k].zero_()
        correct.append(correct_count(model, x, y))
        with torch.no_grad():
            conv.weight.copy_(w0)
            conv.bias.copy_(b0)
    acc = [c / SAMPLES for c in correct]
    mu = sum(acc) / len(acc)
    fragile = [k for k, a in enumerate(acc) if a < mu]
    null = [k for k, c in enumerate(correct) if c >= base]
    x_adv = fgsm(model, x, y)
    with torch.no_grad():
        diff = (conv(x_adv).double() - conv(x).double()).abs()  # raw conv output, before BN/ReLU
    d = [float(diff[:, k].mean()) for k in range(w0.shape[0])]
    others = [k for k in range(len(d)) if k not in fragile]
    d_f = sum(d[k] for k in fragile) / len(fragile) if fragile else None
    d_n = sum(d[k] for k in others) / len(others) if others else None
    return {
        "layer": layer,
        "samples": SAMPLES,
        "baseline_correct": base,
        "accuracy_per_kernel": acc,
        "correct_per_kernel": correct,
        "mean": mu,
        "fragile": fragile,
        "null": null,
        "d_per_kernel": d,
        "d_fragile": d_f,
        "d_other": d_n,
        "targeted": bool(d_f is not None and d_n is not None and d_f > d_n),
    }


# ----------------------------------------------------------------------------------------------


def global_self_checks():
    for r in (3, 5, 9, 25):
        for c in (0.0, 1.0, -0.37, 0.1):
            check(abs(simpson([c] * r) - c) <= 1e-12 * max(1.0, abs(c)), f"Simpson of constant {c}, R={r}")
        a = thresholds(-0.7, 0.3, r)
        check(a[0] == -0.7 and a[-1] == 0.3 and len(a) == r, "threshold ends")


def summary(ref, test_acc):
    print(f"tiny CNN test accuracy (10000 images): {test_acc:.4f}")
    b = ref["local"]["baseline"]
    print(f"baseline on {b['samples']} images: clean {b['clean_correct']}, adversarial {b['adv_correct']} (eps {EPS})")
    print(f"{'layer':<14}{'filter':<8}{'S_clean':>10}{'S_adv':>10}{'S_diff':>10}")
    for rec in ref["local"]["records"] + ref["global"]["records"]:
        print(f"{rec['layer']:<14}{rec['filter']:<8}{rec['s_clean']:>10.4f}{rec['s_adv']:>10.4f}{rec['s_diff']:>10.4f}")
    print(f"global: {ref['global']['outside_range']} weights outside [-1, 1]")
    print("layer classes:", ", ".join(f"{r['layer']} {r['class']} ({r['mean_s_adv']:+.4f})" for r in ref["local"]["layer_classes"]))
    d = ref["dropout"]
    print(
        f"dropout {d['layer']}: correct per kernel {d['correct_per_kernel']} (baseline {d['baseline_correct']}), "
        f"fragile {d['fragile']}, null {d['null']}, d_F {d['d_fragile']}, d_N {d['d_other']}, targeted {d['targeted']}"
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="/work/shared/data/mnist")
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "analysis"))
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    global_self_checks()

    model = train(args.data)
    test_images = read_idx(os.path.join(args.data, "t10k-images-idx3-ubyte.gz"))
    test_labels = read_idx(os.path.join(args.data, "t10k-labels-idx1-ubyte.gz")).astype(np.int64)
    test_acc = test_accuracy(model, normalise(test_images), torch.from_numpy(test_labels))

    os.makedirs(args.out, exist_ok=True)
    sd = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(sd, os.path.join(args.out, "tiny_cnn.safetensors"))
    os.chmod(os.path.join(args.out, "tiny_cnn.safetensors"), 0o644)  # save_file creates it 0600
    with open(os.path.join(args.out, "tiny_cnn.json"), "w") as f:
        json.dump(MODEL_CARD, f, indent=2)
        f.write("\n")
    write_idx_gz(os.path.join(args.out, "t10k-images-idx3-ubyte.gz"), test_images[:SAMPLES])
    write_idx_gz(os.path.join(args.out, "t10k-labels-idx1-ubyte.gz"), test_labels[:SAMPLES].astype(np.uint8))

    # Evaluate from exactly what was written.
    x = normalise(read_idx(os.path.join(args.out, "t10k-images-idx3-ubyte.gz")))
    y = torch.from_numpy(read_idx(os.path.join(args.out, "t10k-labels-idx1-ubyte.gz")).astype(np.int64))
    check(x.shape[0] == SAMPLES, "60 evaluation images")
    model.eval()

    local = sweep(model, x, y, 9, "local", FILTERABLE, FILTERS)
    glob = sweep(model, x, y, 9, "global", FILTERABLE, FILTERS, scope_range=(-1.0, 1.0))
    allw = np.concatenate([model.get_submodule(k).weight.detach().double().numpy().reshape(-1) for k in FILTERABLE])
    glob["outside_range"] = int(((allw < -1.0) | (allw > 1.0)).sum())
    transfer = sweep(model, x, y, 5, "local", ["features.4"], ["h1", "h3"], transfer=True)
    biases = sweep(model, x, y, 5, "local", ["classifier.0"], ["h1"], include_biases=True)

    wc = []
    for layer in FILTERABLE:
        rec = next(r for r in local["records"] if r["layer"] == layer and r["filter"] == "h3")
        values = model.get_submodule(layer).weight.detach().double().numpy().reshape(-1)
        wc.append(
            {
                "layer": layer,
                "clean": weight_classes(values, rec["alphas"], rec["step_class_clean"]),
                "adv": weight_classes(values, rec["alphas"], rec["step_class_adv"]),
            }
        )

    ref = {
        "config": {"eps": EPS, "delta": DELTA, "tau": TAU, "samples": SAMPLES},
        "model": {"test_accuracy": test_acc, "train_batches": TRAIN_BATCHES, "seed": SEED},
        "local": local,
        "global": glob,
        "transfer": transfer,
        "biases": biases,
        "weight_classes": wc,
        "dropout": dropout(model, x, y),
    }
    with open(os.path.join(args.out, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    summary(ref, test_acc)


if __name__ == "__main__":
    try:
        main()
    except Check as e:
        print(e, file=sys.stderr)
        sys.exit(1)
