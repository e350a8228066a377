#!/usr/bin/env bash
# Regenerates the seed results the fuzz harness mutates (tests/fuzz/corpus/results/): one
# small file of every kind `figure` reads, from the tiny fixture model on its 60 images.
#     cargo build --release && tests/fuzz/corpus/make_results.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
bin="$root/target/release/fragility-explorer"
fx="$root/tests/fixtures/analysis"
out="$root/tests/fuzz/corpus/results"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The fixture's 60 test images serve as both splits.
mkdir "$work/data"
for f in images-idx3-ubyte.gz labels-idx1-ubyte.gz; do
  cp "$fx/t10k-$f" "$work/data/t10k-$f"
  cp "$fx/t10k-$f" "$work/data/train-$f"
done
# A card that declares its sizes, so that training can start from it.
sed -e 's/"key": "features.0"/"key": "features.0", "out_channels": 4, "kernel": 3/' \
    -e 's/"key": "features.4"/"key": "features.4", "out_channels": 8, "kernel": 3/' \
    -e 's/"key": "classifier.0"/"key": "classifier.0", "out_features": 16/' "$fx/tiny_cnn.json" > "$work/card.json"

m=(--model "$fx/tiny_cnn.safetensors" --data "$work/data")
"$bin" sweep "${m[@]}" --steps 5 --layers features.4,classifier.2 --out "$work/sweep"
"$bin" dropout "${m[@]}" --out "$work/dropout"
"$bin" train --model-card "$work/card.json" --data "$work/data" --epochs 2 --test-limit 20 --out "$work/train"
"$bin" landscape --checkpoints "$work/train" --data "$work/data" --steps 3 --layers features.4 --out "$work/landscape"
"$bin" trajectory --checkpoints "$work/train" --data "$work/data" --steps 3 --layers features.4 --limit 20 \
  --out "$work/trajectory"
first=$(ls "$work/train"/checkpoint-epoch-*[0-9].safetensors | head -1)
"$bin" selective --checkpoint "$first" --data "$work/data" --epochs 2 --char-limit 20 --steps 3 --out "$work/selective"
for e in 0 0.1 0.3; do "$bin" eval "${m[@]}" --eps "$e" --json; done | python3 -c '
import json, sys
text, dec, out, i = sys.stdin.read(), json.JSONDecoder(), [], 0
while text[i:].strip():
    obj, i = dec.raw_decode(text, i + len(text[i:]) - len(text[i:].lstrip()))
    out.append(obj)
print(json.dumps(out))' > "$work/evals.json"

mkdir -p "$out"
cp "$work/sweep/sweep.json" "$work/dropout/dropout.json" "$work/train/train.json" \
   "$work/landscape/landscape.json" "$work/trajectory/trajectory.json" "$work/selective/selective.json" "$work/evals.json" "$out/"
ls -l "$out"
