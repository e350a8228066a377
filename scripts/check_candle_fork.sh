#!/usr/bin/env bash
# Checks that vendor/candle-core is exactly the published candle-core 0.11.1 with
# vendor/candle-core.patch applied, so the fork carries no change that the patch does not show.
# Exits non-zero and prints the differences when it is not.
#
# The published source comes through cargo only: a throw-away project that depends on
# candle-core =0.11.1, `cargo fetch`, then the .crate from cargo's registry cache.
#
# Differences this check allows, each by name (anything else fails):
# - files cargo adds when it packages a crate, which the vendored copy lacks:
#   .cargo_vcs_info.json, Cargo.toml.orig and Cargo.lock;
# - the crate's benches/, examples/ and tests/, left out when it was vendored (commit
#   "Vendor candle-core 0.11.1 ..."), and the [[bench]], [[example]] and [[test]] tables of the
#   generated Cargo.toml that point at them.
set -euo pipefail

version=0.11.1
root="$(cd "$(dirname "$0")/.." && pwd)"
vendored="$root/vendor/candle-core"
patch_file="$root/vendor/candle-core.patch"
cargo_home="${CARGO_HOME:-$HOME/.cargo}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The published crate.
mkdir -p "$work/fetch/src"
cat >"$work/fetch/Cargo.toml" <<EOF
[package]
name = "check-candle-fork"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
candle-core = { version = "=$version", default-features = false }

[workspace]
EOF
echo 'fn main() {}' >"$work/fetch/src/main.rs"
host="$(rustc -vV | sed -n 's/^host: //p')"
(cd "$work/fetch" && { cargo fetch --quiet --target "$host" || cargo fetch --quiet --offline --target "$host"; })

shopt -s nullglob
crates=("$cargo_home"/registry/cache/*/"candle-core-$version.crate")
shopt -u nullglob
if [ ${#crates[@]} -eq 0 ]; then
  echo "check_candle_fork: cargo fetched no candle-core-$version.crate into $cargo_home/registry/cache" >&2
  exit 1
fi
mkdir "$work/published"
tar -xzf "${crates[0]}" -C "$work/published"
expected="$work/published/candle-core-$version"

# Published + patch, less what the vendored copy deliberately leaves out (see the top).
if command -v patch >/dev/null 2>&1; then
  patch --quiet --batch --forward --no-backup-if-mismatch -p1 -d "$expected" <"$patch_file"
else
  # git takes the file's name from the +++ line (vendor/candle-core/src/...), hence -p2.
  (cd "$expected" && git apply -p2 "$patch_file")
fi
rm -rf "$expected"/{.cargo_vcs_info.json,Cargo.toml.orig,Cargo.lock,benches,examples,tests}
# Drop every [[bench]], [[example]] and [[test]] table (each runs to the next table header).
awk '
  /^\[\[(bench|example|test)\]\]$/ { skip = 1; next }
  /^\[/ { skip = 0 }
  !skip
' "$expected/Cargo.toml" >"$work/Cargo.toml"
mv "$work/Cargo.toml" "$expected/Cargo.toml"

if diff -r "$expected" "$vendored" >"$work/diff"; then
  echo "vendor/candle-core is candle-core $version with vendor/candle-core.patch applied"
else
  echo "vendor/candle-core differs from candle-core $version with vendor/candle-core.patch applied" >&2
  echo "(< published + patch, > vendor/candle-core):" >&2
  sed -e "s#$work/published/candle-core-$version#candle-core-$version+patch#g" -e "s#$root/##g" "$work/diff" >&2
  exit 1
fi
