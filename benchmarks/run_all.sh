#!/usr/bin/env bash
# Run every benchmark one after the other; each writes its figures as JSON (and its markdown
# tables as .md) into benchmarks/results/. Stops at the first failure.
#
#   benchmarks/run_all.sh                 # full sizes: 15-16 min on the 2-core machine (measured run: docs/performance.md)
#   BENCH_QUICK=1 benchmarks/run_all.sh   # small sizes, a smoke test of every script (~7 min)
#
# Environment: PYTHON (default .venv/bin/python), BENCH_RESULTS (default benchmarks/results),
# BENCH_ONLY="rollback pipeline" to run a subset, BENCH_PEERS_ARGS for the peers script. Run it on a quiet machine: other work on the
# two cores shows up in every figure (each JSON records the load average at its start).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-.venv/bin/python}
OUT=${BENCH_RESULTS:-benchmarks/results}
ONLY=${BENCH_ONLY:-}
mkdir -p "$OUT"

if [[ -n "${BENCH_QUICK:-}" ]]; then
  SERVING=(--seconds 1 --batch-rows 20000)
  SERVING_HTTP=(--seconds 1 --rounds 1)
  DRIFT=(--rows 100000 --reference 20000 --repeat 1)
  ROLLBACK=(--rows 5000 --repeat 5)
  COLD=(--repeat 2)
  PIPELINE=(--sizes 5k,10k)
  SYNTH=(--repeat 1 --stages dev)
  : "${BENCH_PEERS_ARGS:=--rows 100000 --reference 20000 --repeat 1}"
else
  SERVING=() SERVING_HTTP=() DRIFT=() ROLLBACK=() COLD=() PIPELINE=() SYNTH=()
fi
# Arguments for the drift-vs-peers benchmark (the lead's script), e.g. a smaller size.
read -r -a PEERS <<< "${BENCH_PEERS_ARGS:-}"

run() {
  local name=$1; shift
  if [[ -n "$ONLY" && " $ONLY " != *" $name "* ]]; then return 0; fi
  echo "== $name: $*" >&2
  local started=$SECONDS
  "$@" --json "$OUT/$name.json" | tee "$OUT/$name.md"
  echo "== $name: done in $((SECONDS - started)) s" >&2
}

run serving     "$PY" benchmarks/serving/bench_endpoint.py "${SERVING[@]}"
run serving_http "$PY" benchmarks/serving/bench_http.py "${SERVING_HTTP[@]}"
run drift       "$PY" benchmarks/drift/bench_drift.py "${DRIFT[@]}"
if [[ -x .venv-bench/bin/python && -f benchmarks/drift/bench_drift_peers.py ]]; then
  run drift_peers .venv-bench/bin/python benchmarks/drift/bench_drift_peers.py "${PEERS[@]}"
else
  echo "== drift_peers: skipped (needs .venv-bench and benchmarks/drift/bench_drift_peers.py)" >&2
fi
run rollback    "$PY" benchmarks/rollback/bench_rollback.py "${ROLLBACK[@]}"
run lambda_cold "$PY" benchmarks/lambda_cold/bench_cold_import.py "${COLD[@]}"
run pipeline    "$PY" benchmarks/pipeline/bench_pipeline.py "${PIPELINE[@]}"
run synth       "$PY" benchmarks/synth/bench_synth.py "${SYNTH[@]}"
echo "== all benchmarks done; results in $OUT" >&2
