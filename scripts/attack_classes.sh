#!/usr/bin/env bash
# The layer classes under FGSM against APGD-CE (docs/STUDY.md, "Do the classes survive a
# strong attack?"): the same sweeps (every layer, h1-h3, 13 thresholds, the first 200 test
# images, regenerated per filtered network) run with each attack, on the embedded MNIST CNN
# (eps 0.3 in normalised units, the default, where APGD-CE leaves 4 %; and eps 0.15, where it
# leaves half) and on a small CNN trained on Fashion-MNIST by `train` (eps 0.1: at 0.3 FGSM
# already leaves 13 % and APGD-CE almost nothing to measure).
# Writes docs/study/attacks/<model>/<attack>/ (delete a folder to recompute it), then
# scripts/attack_classes_report.py writes the section of docs/STUDY.md. Needs ../shared/data
# (Fashion-MNIST) beside the repository.
#
#     scripts/attack_classes.sh [BINARY]     (default: target/release/fragility-explorer)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/fragility-explorer}
out=docs/study/attacks
fashion=../shared/data/fashion-mnist
sweep_opts=(--limit 200 --steps 13 --filters h1,h2,h3)

# A sweep is kept once its sweep.json is there.
sweep() { # NAME ATTACK MODEL_ARGS...
  local dir=$out/$1/$2
  if [ -f "$dir/sweep.json" ]; then echo "kept $dir"; return; fi
  local start=$SECONDS
  "$bin" sweep "${@:3}" "${sweep_opts[@]}" --attack "$2" --out "$dir"
  echo "$((SECONDS - start))" > "$dir/seconds.txt"
}

ckpt=$out/fashion-mnist-cnn/checkpoints
if [ ! -d "$ckpt" ]; then
  "$bin" train --model-card docs/study/through-training/cards/cnn-fashion-mnist.json --data "$fashion" \
    --train-limit 20000 --test-limit 1000 --epochs 2 --seed 0 --no-adversarial-test --out "$ckpt"
fi
last=$(ls "$ckpt"/checkpoint-epoch-*.safetensors | grep -v optim | sort -V | tail -1)

for attack in fgsm apgd-ce; do
  sweep mnist-cnn "$attack" --eps 0.3
  sweep mnist-cnn-eps0.15 "$attack" --eps 0.15
  sweep fashion-mnist-cnn "$attack" --model "$last" --data "$fashion" --eps 0.1
done
python3 scripts/attack_classes_report.py
