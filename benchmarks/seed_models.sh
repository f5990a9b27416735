#!/usr/bin/env bash
# Regenerate benchmarks/results/seed_models/: the latest finished seed002_m1_cnn and seed003_bn_cnn runs,
# every format, full test set. Exports a run first if it has none (--export). Run from the repository root:
#     benchmarks/seed_models.sh [extra edgecifar benchmark options, e.g. --compare OLD.json]
# The exact `edgecifar benchmark` command it ran is printed at the top of the report.
set -euo pipefail
runs_dir="${EDGECIFAR_RUNS:-runs}"
latest() {  # newest run of a model that finished (has manifest.json)
    ls -1dt "$runs_dir"/"$1"-*/manifest.json 2>/dev/null | head -n 1 | xargs -r dirname
}
m1="$(latest seed002_m1_cnn)"
s3="$(latest seed003_bn_cnn)"
for pair in "seed002_m1_cnn:$m1" "seed003_bn_cnn:$s3"; do
    if [ -z "${pair#*:}" ]; then
        echo "no finished ${pair%%:*} run in $runs_dir; train it first: edgecifar train ${pair%%:*}" >&2
        exit 2
    fi
done
exec edgecifar benchmark "$m1" "$s3" --out benchmarks/results/seed_models --export "$@"
