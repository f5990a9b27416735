#!/usr/bin/env bash
# int8 batch-1 latency of every seed model and an edge model, in ONE benchmark run (issue 17's latency view).
#
#     benchmarks/seed_latency.sh runs/<edge run>     # from the repository root, CIFAR-10 from $EDGECIFAR_DATA
#
# Latency depends on the graph, not on the weights, so each seed model is measured through a
# stand-in: its own architecture, trained 1 epoch on 2,000 images (the transfer model on a random
# backbone), exported to int8 TFLite by the same `edgecifar export` as any run. The stand-ins'
# accuracy means nothing; the accuracy on the latency plot comes from the committed export reports
# (export/reports/<model>/, full training), joined by model name in benchmarks/edge_pareto.py.
# Without an argument it only prepares the stand-ins (runs/latency_standins/), which are reused.
set -euo pipefail
runs_dir="${EDGECIFAR_RUNS:-runs}/latency_standins"
out=benchmarks/results/edge_latency
models="seed000_shallow_cnn seed002_m1_cnn seed002_m2_cnn seed002_m3_cnn seed003_bn_cnn seed004_mlp seed004_mobilenetv2_transfer"
standins=()
for m in $models; do
    run="$runs_dir/$m"
    if [ ! -f "$run/export/export_report.json" ]; then
        rm -rf "$run"  # a stand-in that did not finish is redone, not resumed
        extra=()
        [ "$m" = seed004_mobilenetv2_transfer ] && extra=(--backbone-weights random)
        edgecifar train "$m" --epochs 1 --limit 2000 --samples 100 --run-dir "$run" "${extra[@]}"
        edgecifar export "$run" --formats tflite_int8 --plain-int8 --samples 500
    fi
    standins+=("$run")
done
[ $# -ge 1 ] || { echo "stand-ins ready in $runs_dir; next: $0 runs/<edge run>"; exit 0; }
edge="$1"
model="$(python -c 'import json,sys; print(json.load(open(sys.argv[1]))["model"])' "$edge/manifest.json")"
edgecifar benchmark "${standins[@]}" "$edge" --formats tflite_int8 --threads 1 --samples 1000 --out "$out/benchmark" \
    --note "latency of every seed model's architecture and $model in one run; seed models are 1-epoch stand-ins (benchmarks/seed_latency.sh), so their top-1 here means nothing: read it from export/reports"
python benchmarks/edge_pareto.py "export/reports/$model/export_report.json" --latency "$out/benchmark/results.json" --out "$out"
