#!/usr/bin/env bash
# Regenerates the README's screenshots (docs/screenshots/*.png): the app takes each one itself
# (`gui --screenshot`) once the jobs asked for with `--run` are done, all at one window size.
#
# Usage: scripts/screenshots.sh [NAME...]   (default: all of them)
# Environment: BIN (the binary, default target/release/fragility-explorer, built if missing),
# DATA (MNIST for the training run behind the landscape, default ../shared/data/mnist),
# SIZE (window size, default 1400x860), OUT (default docs/screenshots), RUN (a folder of
# checkpoints to reuse for the landscape instead of training one), WGPU_BACKEND (default vulkan).
# Without a DISPLAY it starts Xvfb on a free display from :77 (package xvfb; software Vulkan: mesa-vulkan-drivers);
# with one, keep the pointer off the window.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-target/release/fragility-explorer}
DATA=${DATA:-../shared/data/mnist}
SIZE=${SIZE:-1400x860}
OUT=${OUT:-docs/screenshots}
export WGPU_BACKEND=${WGPU_BACKEND:-vulkan}

[ -x "$BIN" ] || cargo build --release
mkdir -p "$OUT"

work=$(mktemp -d)
xvfb=""
cleanup() {
  if [ -n "$xvfb" ]; then kill "$xvfb" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
  export XDG_RUNTIME_DIR="$work/xdg"
  mkdir -m 700 "$XDG_RUNTIME_DIR"
fi
if [ -z "${DISPLAY:-}" ]; then
  # Twice as wide as the window and then some: the pointer starts at the screen's centre,
  # outside the window (at its top left), so no tooltip shows in a screenshot.
  n=77
  while [ -e "/tmp/.X11-unix/X$n" ] || [ -e "/tmp/.X$n-lock" ]; do n=$((n + 1)); done
  Xvfb ":$n" -screen 0 "$(( 2 * ${SIZE%x*} + 100 ))x$(( ${SIZE#*x} + 40 ))x24" -nolisten tcp >/dev/null 2>&1 &
  xvfb=$!
  export DISPLAY=":$n"
  sleep 1
fi

# Each screenshot starts from fresh settings in a home of its own.
shot() {
  local name=$1
  shift
  echo "$name.png"
  mkdir -p "$work/home-$name"
  HOME="$work/home-$name" "$BIN" gui --fresh --size "$SIZE" "$@" --screenshot "$OUT/$name.png"
}

# The landscape needs a folder of checkpoints: a short training run from scratch of the
# default model's architecture (its card with the layer sizes training needs), two epochs on
# 2,000 MNIST images. Sets `run`.
run_folder() {
  if [ -n "${RUN:-}" ]; then
    run=$RUN
    return
  fi
  [ -d "$DATA" ] || { echo "error: no MNIST at $DATA (set DATA or RUN)" >&2; exit 1; }
  card_file
  "$BIN" train --model-card "$work/card.json" --data "$DATA" --epochs 2 --train-limit 2000 --out "$work/run"
  run=$work/run
}

# The default model's card with the layer sizes training from scratch needs.
card_file() {
  sed -e 's/"key": "features.0",/"key": "features.0", "out_channels": 32, "kernel": 3,/' \
    -e 's/"key": "features.3",/"key": "features.3", "out_channels": 64, "kernel": 3,/' \
    -e 's/"key": "classifier.0"$/"key": "classifier.0", "out_features": 128/' \
    -e 's/"key": "classifier.2"$/"key": "classifier.2", "out_features": 10/' \
    assets/default/mnist_cnn_small.json >"$work/card.json"
}

# The Compare view needs trajectories of two runs: the default model's architecture trained
# on MNIST and on Fashion-MNIST (three epochs on 2,000 images each), each characterised on 200
# test images with 7 thresholds per sweep. Sets `runs` (comma-separated result folders).
compare_runs() {
  local fashion=${FASHION:-$(dirname "$DATA")/fashion-mnist}
  [ -d "$DATA" ] && [ -d "$fashion" ] || { echo "error: no MNIST at $DATA or Fashion-MNIST at $fashion" >&2; exit 1; }
  card_file
  runs=""
  for pair in "mnist:$DATA" "fashion-mnist:$fashion"; do
    local name=${pair%%:*} data=${pair#*:}
    "$BIN" train --model-card "$work/card.json" --data "$data" --epochs 3 --train-limit 2000 --test-limit 200 --out "$work/$name"
    "$BIN" trajectory --checkpoints "$work/$name" --data "$data" --limit 200 --steps 7 --out "$work/$name-trajectory"
    runs=${runs:+$runs,}$work/$name-trajectory
  done
}

take() {
  case $1 in
    mask) shot mask --view mask --run layer:features.3 ;;
    classes) shot classes --view mask --run layer:features.3,characterise,classes ;;
    curves) shot curves --view curves --run layer:features.0,sweep ;;
    perturbation) shot perturbation --view perturbation --run layer:features.0,perturb ;;
    eps) shot eps --view curves --run layer:features.0,eps ;;
    compression) shot compression --view curves --run layer:classifier.2,compression ;;
    scores) shot scores --view scores --run characterise ;;
    dropout) shot dropout --view dropout --run layer:features.0,dropout ;;
    landscape)
      run_folder
      shot landscape --model "$run" --view landscape --run layer:features.3,landscape --eval-images 50 --steps 7
      ;;
    training) shot training --view training --run layer:features.0,train ;;
    compare)
      # The through-training study of docs/STUDY.md when it is there (all four runs), else
      # two small runs made here.
      local study=${STUDY:-docs/study/through-training/results}
      if [ -f "$study/study.json" ]; then
        shot compare --view compare --compare "$study"
      else
        compare_runs
        shot compare --view compare --compare "$runs"
      fi
      ;;
    *)
      echo "error: unknown screenshot $1" >&2
      exit 2
      ;;
  esac
}

names=("$@")
[ ${#names[@]} -gt 0 ] || names=(mask classes curves perturbation eps compression scores dropout landscape training compare)
for n in "${names[@]}"; do
  take "$n"
done
