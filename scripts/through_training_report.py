#!/usr/bin/env python3
"""Writes the through-training section of docs/STUDY.md from a study's results.

    fragility-explorer study docs/study/through-training/study.toml --out docs/study/through-training/results
    python3 scripts/through_training_report.py [--results docs/study/through-training/results]
                                               [--bin target/release/fragility-explorer]

Every number comes from the runs' trajectory.json and the study's study.json; the figures are
the study's own (results/compare/) and two comparisons of one architecture on both datasets,
drawn here with `fragility-explorer compare` (results/compare-ARCH/). The section replaces
what follows MARKER in docs/STUDY.md up to ATTACKS_MARKER (examples/study.rs keeps it when it rewrites
the rest).
"""

import argparse
import shutil
import sys
import tempfile
import json
import math
import subprocess
from pathlib import Path

MARKER = "<!-- through-training: written by scripts/through_training_report.py -->"
ATTACKS_MARKER = "<!-- attacks: written by scripts/attack_classes_report.py -->"
PAPER_FILTERS = ["h1", "h2", "h3"]
# Runs by their study names: (dataset, architecture).
RUNS = {
    "mnist-cnn": ("mnist", "cnn"),
    "fashion-mnist-cnn": ("fashion-mnist", "cnn"),
    "mnist-resnet18": ("mnist", "resnet18"),
    "fashion-mnist-resnet18": ("fashion-mnist", "resnet18"),
}


def pearson(a, b):
    n = len(a)
    ma, mb = sum(a) / n, sum(b) / n
    va = sum((x - ma) ** 2 for x in a)
    vb = sum((y - mb) ** 2 for y in b)
    if va == 0 or vb == 0:
        return None
    return sum((x - ma) * (y - mb) for x, y in zip(a, b)) / math.sqrt(va * vb)


def record(entry, layer, filt):
    return next(r for r in entry["sweep"]["records"] if r["layer"] == layer and r["filter"] == filt)


def landscape_similarity(a, b, layer):
    """Pearson r of the epoch-by-step adversarial accuracy maps (each normalised by its own
    unfiltered accuracy) of one layer on two runs, and the share of (epoch, step) cells whose
    adversarial step class agrees, over h1-h3 and the epochs both runs have."""
    xs, ys, same, cells = [], [], 0, 0
    for ea, eb in zip(a["checkpoints"], b["checkpoints"]):
        for f in PAPER_FILTERS:
            ra, rb = record(ea, layer, f), record(eb, layer, f)
            base_a = max(ea["sweep"]["baseline"]["adv_correct"], 1)
            base_b = max(eb["sweep"]["baseline"]["adv_correct"], 1)
            xs += [c / base_a for c in ra["adv_correct"]]
            ys += [c / base_b for c in rb["adv_correct"]]
            same += sum(x == y for x, y in zip(ra["step_class_adv"], rb["step_class_adv"]))
            cells += len(ra["step_class_adv"])
    return pearson(xs, ys), same / max(cells, 1)


def most_fragile_layer(run, i):
    classes = [(c["mean_s_adv"][i], c["layer"]) for c in run["layer_classes"] if i < len(c["mean_s_adv"])]
    return min(classes)[1] if classes else None


def kernel_d(run):
    """Per checkpoint: the mean d over the consistently fragile kernels and over the others."""
    cf = set(run["consistently_fragile"])
    out = []
    for e in run["checkpoints"]:
        d = e["dropout"]["d_per_kernel"]
        inside = [v for k, v in enumerate(d) if k in cf and v is not None]
        outside = [v for k, v in enumerate(d) if k not in cf and v is not None]
        mean = lambda v: sum(v) / len(v) if v else None
        out.append((mean(inside), mean(outside)))
    return out


def _median(values):
    values = sorted(values)
    return values[len(values) // 2] if values else float("-inf")


def fmt(v, digits=4, signed=False):
    if v is None:
        return "-"
    return f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"


def pct(v):
    return f"{100 * v:.1f} %"


def link(results_rel, path, alt):
    return f"![{alt}]({results_rel}/{path})"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--results", default="docs/study/through-training/results")
    p.add_argument("--bin", default="target/release/fragility-explorer")
    p.add_argument("--study-md", default="docs/STUDY.md")
    p.add_argument(
        "--seconds",
        action="append",
        default=[],
        metavar="NAME=S",
        help="a run's compute time when an earlier invocation of the study computed it (study.json then "
        "holds the seconds of reusing its parts)",
    )
    a = p.parse_args()
    results = Path(a.results)
    study = json.loads((results / "study.json").read_text())
    runs = {r["name"]: json.loads((results / r["results"]).read_text()) for r in study["runs"]}
    names = [r["name"] for r in study["runs"]]
    seconds = {r["name"]: r["seconds"] for r in study["runs"]}
    earlier = dict(kv.split("=", 1) for kv in a.seconds)
    for name, value in earlier.items():
        seconds[name] = float(value)
    # One architecture on both datasets, on shared axes: the landscapes side by side. Every
    # layer's figures are drawn; those shown here are kept (with their tables) in compare-ARCH/.
    for arch, layer in [("cnn", "features.0"), ("resnet18", "conv1")]:
        pair = [n for n in names if RUNS[n][1] == arch]
        keep = results / f"compare-{arch}"
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [a.bin, "compare", *[str(results / "runs" / n) for n in pair], "--out", tmp],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            shutil.rmtree(keep, ignore_errors=True)
            keep.mkdir(parents=True)
            for f in Path(tmp).iterdir():
                if f.name.startswith(tuple(f"compare-run{i}-landscape-{layer}-h1-adv." for i in (1, 2))):
                    shutil.copy(f, keep / f.name)
    rel = Path(a.results).relative_to("docs") if a.results.startswith("docs/") else Path(a.results)
    rel = rel.as_posix()

    L = [MARKER, "", "## Through training: the method's claims, tested", ""]
    first = runs[names[0]]
    cfg = first["config"]
    L += [
        "Made by the app's own `train` and `study` commands, then this section by "
        "`python3 scripts/through_training_report.py`:",
        "",
        "    for model in cnn resnet18; do for ds in mnist fashion-mnist; do",
        "      fragility-explorer train --model-card docs/study/through-training/cards/$model-$ds.json \\",
        "        --data ../shared/data/$ds --split train --train-limit 20000 --epochs 5 --every 1 --seed 0 \\",
        "        --out docs/study/through-training/$ds/$model/checkpoints",
        "    done; done",
        "    fragility-explorer study docs/study/through-training/study.toml --out docs/study/through-training/results",
        "    python3 scripts/through_training_report.py " + " ".join(sys.argv[1:]),
        "",
        "- Training: the small CNN (421,642 parameters) and ResNet-18 (torchvision stem, one input "
        "channel, 11.2 M parameters), Adam (learning rate 1e-3, batch 100), seed 0, on the first 20,000 "
        "training images of each dataset, a checkpoint after each of 5 epochs.",
        f"- Characterisation of every checkpoint ([`study.toml`](study/through-training/study.toml)): "
        f"local sweeps of every layer and a global sweep, h1, h2 and h3, FGSM at eps "
        f"{cfg['sweep']['attack']['eps']} (normalised units) regenerated against every filtered network "
        "(exact direction), nodal dropout of the first convolution; per run: "
        + "; ".join(
            f"{n}: {runs[n]['config']['sweep']['steps']} thresholds, {runs[n]['run']['data']}" for n in names
        )
        + ".",
        f"- Results: [`{rel}/`]({rel}/) (each run's `trajectory.json`; `compare/` for all four runs, "
        "`compare-cnn/` and `compare-resnet18/` for one architecture on both datasets).",
        "",
        "| run | epochs | test clean / FGSM at the last checkpoint (sweep images) | layers fragile at every checkpoint | most fragile layer per epoch |",
        "|---|---|---|---|---|",
    ]
    for n in names:
        r = runs[n]
        last = r["checkpoints"][-1]["sweep"]["baseline"]
        per_epoch = [most_fragile_layer(r, i) for i in range(len(r["epochs"]))]
        L.append(
            f"| {n} | {len(r['epochs'])} | {pct(last['clean_accuracy'])} / {pct(last['adv_accuracy'])} "
            f"| {', '.join(r['consistently_targeted']) or 'none'} | {', '.join(per_epoch)} |"
        )
    L.append("")

    # Claim 1: consistently targeted layers.
    consistent = [n for n in names if runs[n]["consistently_targeted"]]
    same_top = [n for n in names if len({most_fragile_layer(runs[n], i) for i in range(len(runs[n]["epochs"]))}) == 1]
    L += [
        "### 1. Certain layers are consistently targeted through training",
        "",
        f"**{'Reproduced' if len(consistent) == len(names) else 'Partly reproduced' if consistent else 'Refuted'}** "
        f"in {len(consistent)} of {len(names)} runs: a layer is fragile (mean S_adv over h1-h3 below -tau) "
        f"at every checkpoint in {', '.join(consistent) or 'none'}; the most fragile layer is the same at "
        f"every epoch in {len(same_top)} of {len(names)} runs ({', '.join(same_top) or 'none'}).",
        "",
    ]
    for i, n in enumerate(names):
        L.append(link(rel, f"compare/compare-run{i + 1}-scores-s-adv.png", f"S_adv per layer through training, {n}"))
    L.append("")

    # Claim 2: the same layer on two datasets.
    L += ["### 2. The same layer has similar landscapes on different datasets", ""]
    L += [
        "Per layer, the epoch-by-step maps of adversarial accuracy (each normalised by its unfiltered "
        "accuracy) on MNIST and on Fashion-MNIST, h1-h3 together: their Pearson correlation, and the "
        "share of (epoch, step) cells whose adversarial step class (fragile, robust, antifragile) agrees.",
        "",
        "| architecture | layer | correlation | same step class |",
        "|---|---|---|---|",
    ]
    sims = []
    for arch in ["cnn", "resnet18"]:
        m, f = runs[f"mnist-{arch}"], runs[f"fashion-mnist-{arch}"]
        for c in m["layer_classes"]:
            r, agree = landscape_similarity(m, f, c["layer"])
            sims.append((arch, r, agree))
            L.append(f"| {arch} | {c['layer']} | {fmt(r, 3)} | {pct(agree)} |")
    L.append("")
    for arch in ["cnn", "resnet18"]:
        rs = [r for a_, r, _ in sims if a_ == arch and r is not None]
        ag = [g for a_, _, g in sims if a_ == arch]
        L.append(
            f"- {arch}: median correlation {fmt(sorted(rs)[len(rs) // 2], 3) if rs else '-'} over {len(rs)} layers, "
            f"median agreement of step classes {pct(sorted(ag)[len(ag) // 2])}."
        )
    similar = [arch for arch in ["cnn", "resnet18"] if _median([r for a_, r, _ in sims if a_ == arch and r is not None]) >= 0.5]
    L += [
        "",
        f"**{'Reproduced' if len(similar) == 2 else 'Partly reproduced' if similar else 'Refuted'}**, taking a "
        "median correlation of at least 0.5 as similar: "
        + (f"so for {', '.join(similar)}" if similar else "for neither architecture")
        + ".",
        "",
        link(rel, "compare-cnn/compare-run1-landscape-features.0-h1-adv.png", "features.0 on MNIST")
        + " "
        + link(rel, "compare-cnn/compare-run2-landscape-features.0-h1-adv.png", "features.0 on Fashion-MNIST"),
        "",
        link(rel, "compare-resnet18/compare-run1-landscape-conv1-h1-adv.png", "conv1 on MNIST")
        + " "
        + link(rel, "compare-resnet18/compare-run2-landscape-conv1-h1-adv.png", "conv1 on Fashion-MNIST"),
        "",
    ]

    # Claim 3: convergence.
    L += ["### 3. Scores converge as training proceeds", ""]
    L += [
        "The mean |change| of the local S_adv scores (every layer, h1-h3) from one checkpoint to the next:",
        "",
        "| run | epoch 1→2 | 2→3 | 3→4 | 4→5 | falls |",
        "|---|---|---|---|---|---|",
    ]
    falling = 0
    for n in names:
        ch = runs[n]["score_change"]
        falls = ch[0] is not None and ch[-1] is not None and ch[-1] < ch[0]
        falling += falls
        L.append(f"| {n} | " + " | ".join(fmt(c) for c in ch) + f" | {'yes' if falls else 'no'} |")
    L += [
        "",
        f"**{'Reproduced' if falling == len(names) else 'Partly reproduced' if falling else 'Refuted'}**: the last "
        f"change is smaller than the first in {falling} of {len(names)} runs.",
        "",
        link(rel, "compare/compare-score-change.png", "score change per epoch")
        + " "
        + link(rel, "compare/compare-global-s-adv.png", "global S_adv per epoch"),
        "",
    ]

    # Claim 4: consistently fragile kernels, and the attack targets them.
    L += ["### 4. Consistently fragile kernels exist, and the attack targets them (d_F > d_N)", ""]
    L += [
        "Nodal dropout of the first convolution at every checkpoint: a kernel is fragile when removing it "
        "leaves accuracy below the mean over kernels; d is the mean |perturbation| the attack puts on a "
        "kernel's output.",
        "",
        "| run | kernels | consistently fragile | fragile per epoch | d_F > d_N per epoch | d of consistently fragile vs other kernels, last epoch |",
        "|---|---|---|---|---|---|",
    ]
    exist, targeted_all = 0, 0
    for n in names:
        r = runs[n]
        k = r["kernels"]
        cf = r["consistently_fragile"]
        exist += bool(cf)
        targeted = sum(k["targeted"])
        targeted_all += targeted == len(k["targeted"])
        d_in, d_out = kernel_d(r)[-1]
        L.append(
            f"| {n} | {k['kernels']} | {len(cf)} {cf if cf else ''} | "
            + ", ".join(str(len(f)) for f in k["fragile"])
            + f" | {targeted} of {len(k['targeted'])} | {fmt(d_in, 4)} vs {fmt(d_out, 4)} |"
        )
    checkpoints_targeted = sum(sum(runs[n]["kernels"]["targeted"]) for n in names)
    checkpoints_all = sum(len(runs[n]["kernels"]["targeted"]) for n in names)
    L += [
        "",
        f"**{'Reproduced' if exist == len(names) else 'Partly reproduced' if exist else 'Refuted'}** for the "
        f"existence of consistently fragile kernels ({exist} of {len(names)} runs have any); "
        f"**{'reproduced' if targeted_all == len(names) else 'not reproduced'}** for the targeting: d_F > d_N at "
        f"{checkpoints_targeted} of {checkpoints_all} checkpoints, at every checkpoint of a run in {targeted_all} of "
        f"{len(names)} runs. Where consistently fragile kernels exist, the last column compares the attack's "
        "perturbation on them with the rest.",
        "",
    ]
    for i, n in enumerate(names):
        L.append(link(rel, f"compare/compare-run{i + 1}-kernels.png", f"fragile and null kernels by epoch, {n}"))
    L.append("")
    for i, n in enumerate(names):
        L.append(link(rel, f"compare/compare-run{i + 1}-targeting.png", f"d_F and d_N by epoch, {n}"))
    L.append("")

    # Claim 5: size.
    L += ["### 5. Larger networks have proportionally more fragile kernels", ""]
    L += ["| dataset | CNN: fragile fraction per epoch | ResNet-18: fragile fraction per epoch | ResNet-18 higher at |", "|---|---|---|---|"]
    higher_total, epochs_total = 0, 0
    for ds in ["mnist", "fashion-mnist"]:
        c, r = runs[f"{ds}-cnn"]["fragile_fraction"], runs[f"{ds}-resnet18"]["fragile_fraction"]
        higher = sum(b > a for a, b in zip(c, r))
        higher_total += higher
        epochs_total += min(len(c), len(r))
        L.append(
            f"| {ds} | {', '.join(pct(v) for v in c)} | {', '.join(pct(v) for v in r)} | {higher} of {min(len(c), len(r))} epochs |"
        )
    verdict = "Reproduced" if higher_total == epochs_total else "Refuted" if higher_total == 0 else "Not clearly either way"
    L += [
        "",
        f"**{verdict}**: ResNet-18's first convolution (64 kernels) has the larger fragile fraction than the "
        f"CNN's (32 kernels) at {higher_total} of {epochs_total} matched checkpoints. Two architectures are "
        "two points; the claim needs more sizes to be tested as a trend.",
        "",
        link(rel, "compare/compare-fragile-vs-size.png", "fragile fraction against parameters")
        + " "
        + link(rel, "compare/compare-fragile-fraction.png", "fragile fraction per epoch"),
        "",
    ]

    # Time.
    L += [
        "### Compute time",
        "",
        "Wall-clock seconds of each run's characterisation on this 2-core machine (upper bounds: "
        "builds and tests ran beside the study at times)."
        + (
            f" {', '.join(sorted(earlier))} came from an earlier invocation of the same study, which the "
            "last one reused; their times are that invocation's (`--seconds` of this script)."
            if earlier
            else ""
        ),
        "",
        "| run | checkpoints | seconds | per checkpoint |",
        "|---|---|---|---|",
    ]
    for n in names:
        k = len(runs[n]["epochs"])
        L.append(f"| {n} | {k} | {seconds[n]:.0f} | {seconds[n] / k:.0f} |")
    L += [f"| whole study | | {sum(seconds[n] for n in names):.0f} | |", ""]

    md = Path(a.study_md)
    text = md.read_text()
    head = text.split(MARKER)[0].rstrip() + "\n\n"
    # The FGSM-against-APGD section (scripts/attack_classes_report.py) follows this one: kept.
    tail = text[text.index(ATTACKS_MARKER):] if ATTACKS_MARKER in text else ""
    md.write_text(head + "\n".join(L) + ("\n\n" + tail if tail else ""))
    print(f"wrote {md}")


if __name__ == "__main__":
    main()
