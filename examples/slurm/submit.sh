#!/bin/bash
# Queues a study as an array of N shards and a merge that runs when all have succeeded.
#
#     examples/slurm/submit.sh STUDY_FILE RESULTS_DIR [N]
#
# FRAGILITY_EXPLORER names the binary when it is not on PATH; extra sbatch options (a
# partition, an account) go in SBATCH_OPTIONS.
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 STUDY_FILE RESULTS_DIR [N]" >&2
    exit 2
fi
STUDY=$(realpath "$1")
RESULTS=$(realpath -m "$2")
N=${3:-8}
HERE=$(dirname "$(realpath "$0")")
mkdir -p "$RESULTS"
export STUDY RESULTS

# shellcheck disable=SC2086
array=$(sbatch --parsable ${SBATCH_OPTIONS:-} --array="0-$((N - 1))" --export=ALL "$HERE/shard.sbatch")
array=${array%%;*}
# shellcheck disable=SC2086
merge=$(sbatch --parsable ${SBATCH_OPTIONS:-} --dependency="afterok:$array" --export=ALL "$HERE/merge.sbatch")
echo "queued shards as job $array (tasks 0-$((N - 1))) and the merge as job ${merge%%;*}"
echo "results: $RESULTS/merged"
