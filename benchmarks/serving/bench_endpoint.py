"""Benchmark the local endpoint, batch scoring and the in-process baselines; print a table.

    .venv/bin/python benchmarks/serving/bench_endpoint.py [--model-dir DIR] [--seconds 10]
        [--json [PATH]]

`--json` alone prints the results as JSON instead of the tables; `--json PATH` prints the
tables and also writes the results, with benchmarks/_common.py's machine block and the command
line, to PATH (atomically).

Without --model-dir it trains the model the default pipeline trains (100,000 sample rows, the
pipeline's hyperparameters) into a temporary directory first (~30 s). Load comes from `wrk`
(`apt-get install wrk`), one client thread, on the same machine as the server: the numbers
include the load generator's CPU use, as a co-located client's would.

Measured:
  in-process  one CSV row per call, 5,000 calls after 500 warm-up:
              handlers  input_fn -> predict_fn -> output_fn (inference.py as shipped)
              parse + inplace_predict  input_fn -> encode -> Booster.inplace_predict
              kernel    the endpoint's own path (serving/kernel.py), no HTTP
  endpoint    `mlops serve` (2 workers), POST one CSV row per request, keep-alive, at
              concurrency 1 and 8, capture 0 % and 100 %: req/s, p50, p99 (wrk --latency)
  batch       rows/s of `score_file` (CSV and Parquet in, same format out) against
              Booster.inplace_predict alone (all cores) on the already-encoded matrix
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import report as json_report, write_json  # noqa: E402

ENDPOINT = "bench-endpoint"
ROW_CALLS = 5000


def train_default_model(root: Path) -> Path:
    from mlops_kit.data.synthetic import generate
    from mlops_pipelines.steps import _io, preprocess, train
    from mlops_pipelines.steps.schema import FRAUD_SAMPLE_SCHEMA

    _io.write_table(generate(100_000, seed=42), root / "data.parquet")
    preprocess.run(root / "data.parquet", root / "prepared", schema=FRAUD_SAMPLE_SCHEMA,
                   validation_fraction=0.15, test_fraction=0.15, seed=42, bins=10)
    train.run(root / "prepared" / "train", root / "prepared" / "validation", root / "model",
              root / "output", dict(train.HYPERPARAMETER_DEFAULTS))
    return root / "model"


def csv_lines(model, rows: int, seed: int = 11) -> list[str]:
    import pandas as pd

    from mlops_kit.data.synthetic import generate

    frame = generate(rows, seed=seed)
    lines = []
    for row in frame[list(model.spec.features)].itertuples(index=False):
        lines.append(",".join("" if pd.isna(v) else str(v) for v in row))
    return lines


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def bench_in_process(model, lines: list[str]) -> list[dict]:
    from mlops_kit.serving.kernel import ModelKernel
    from mlops_pipelines.steps import inference

    kernel = ModelKernel(model)
    bodies = [line.encode() for line in lines]
    cases = {
        "handlers (input_fn → predict_fn → output_fn)":
            lambda b: inference.output_fn(inference.predict_fn(
                inference.input_fn(b, "text/csv"), model), "text/csv"),
        "parse + inplace_predict":
            lambda b: model.booster.inplace_predict(
                inference.encode(inference.input_fn(b, "text/csv"), model),
                validate_features=False),
        "endpoint kernel, no HTTP (parse + direct predict + output)":
            lambda b: inference.output_fn(kernel.score_payload(b, "text/csv"), "text/csv"),
    }
    results = []
    for name, call in cases.items():
        for body in bodies[:500]:
            call(body)
        samples = []
        for i in range(ROW_CALLS):
            body = bodies[i % len(bodies)]
            started = time.perf_counter()
            call(body)
            samples.append(time.perf_counter() - started)
        p50, p99 = percentiles(samples)
        results.append({"case": name, "p50_ms": p50 * 1e3, "p99_ms": p99 * 1e3,
                        "calls_per_s": len(samples) / sum(samples)})
    return results


def start_server(home: Path, capture_percent: float, *, workers: int = 2,
                 python_path: str | None = None) -> tuple[subprocess.Popen, int]:
    """`mlops serve` on a free port; `python_path` (PYTHONPATH) can switch in a baseline."""
    env = {**os.environ, "MLOPS_HOME": str(home)}
    env.pop("PYTHONPATH", None)
    if python_path:
        env["PYTHONPATH"] = python_path
    process = subprocess.Popen(
        [sys.executable, "-m", "mlops_kit.cli.serving", "serve", "--endpoint", ENDPOINT,
         "--port", "0", "--workers", str(workers), "--capture-percent", str(capture_percent)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = process.stdout.readline().decode()
        found = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        if found:
            return process, int(found.group(1))
        if not line and process.poll() is not None:
            break
    process.kill()
    raise RuntimeError("the endpoint did not start")


def _to_ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def run_wrk(port: int, body: str, connections: int, seconds: int, workdir: Path) -> dict:
    script = workdir / "post.lua"
    script.write_text('wrk.method = "POST"\nwrk.body = %s\nwrk.headers["Content-Type"] = '
                      '"text/csv"\n' % json.dumps(body))
    url = f"http://127.0.0.1:{port}/endpoints/{ENDPOINT}/invocations"
    subprocess.run(["wrk", "-t1", f"-c{connections}", "-d2s", "-s", str(script), url],
                   check=True, capture_output=True)  # warm-up
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
                          "-s", str(script), url], check=True, capture_output=True,
                         text=True).stdout
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.MULTILINE))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    failed = re.search(r"Socket errors: (.*)", out)
    return {"req_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50_ms": _to_ms(latency["50"]), "p99_ms": _to_ms(latency["99"]),
            "non_2xx": int(errors.group(1)) if errors else 0,
            "socket_errors": failed.group(1) if failed else "none"}


def bench_endpoint(model_dir: Path, body: str, seconds: int, workdir: Path) -> list[dict]:
    from mlops_kit.clock import utc_now_iso
    from mlops_kit.endpoint_state import EndpointState, ServedVariant, save_state

    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install wrk")
    results = []
    for capture in (0.0, 100.0):
        home = workdir / f"home-{capture:g}"
        variants = tuple(ServedVariant(f"v{v}", v, str(model_dir), 1.0 if v == 3 else 0.0)
                         for v in (3, 2, 1))
        save_state(home, EndpointState(ENDPOINT, "InService", variants, "bench", utc_now_iso(), 1))
        process, port = start_server(home, capture)
        try:
            for connections in (1, 8):
                result = run_wrk(port, body, connections, seconds, workdir)
                results.append({"capture_percent": capture, "concurrency": connections,
                                **result})
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    return results


def bench_batch(model_dir: Path, rows: int, workdir: Path) -> list[dict]:
    import pandas as pd
    import pyarrow.parquet as pq

    from mlops_kit.data.synthetic import generate
    from mlops_kit.serving.batch import _threads, score_file
    from mlops_kit.serving.router import ScoringRouter
    from mlops_kit.clock import utc_now_iso
    from mlops_kit.endpoint_state import EndpointState, ServedVariant, save_state
    from mlops_pipelines.steps import inference
    from mlops_pipelines.steps.train import encode_frame

    home = workdir / "home-batch"
    save_state(home, EndpointState(ENDPOINT, "InService",
                                   (ServedVariant("v3", 3, str(model_dir), 1.0),), "b", utc_now_iso(), 1))
    frame = generate(rows, seed=5)
    parquet, csv = workdir / "batch.parquet", workdir / "batch.csv"
    frame.to_parquet(parquet)
    frame.to_csv(csv, index=False)
    model = inference.model_fn(str(model_dir))
    booster = model.booster.copy()
    booster.set_param({"nthread": _threads()})
    matrix = encode_frame(pq.read_table(parquet).to_pandas(), model.spec)
    booster.inplace_predict(matrix[:1000], validate_features=False)
    results = []
    best = min(_timed(lambda: booster.inplace_predict(matrix, validate_features=False))
               for _ in range(3))
    results.append({"case": f"Booster.inplace_predict alone ({_threads()} threads, "
                            f"pre-encoded matrix)", "rows_per_s": rows / best})
    best = min(_timed(lambda: booster.inplace_predict(
        encode_frame(pd.read_parquet(parquet), model.spec), validate_features=False))
        for _ in range(3))
    results.append({"case": "read_parquet + encode_frame + inplace_predict, one chunk, "
                            "no output", "rows_per_s": rows / best})
    router = ScoringRouter(home, ENDPOINT)
    for source, suffix in ((parquet, ".parquet"), (csv, ".csv")):
        target = workdir / f"scored{suffix}"
        runs = [score_file(router, source, target, chunk_rows=100_000) for _ in range(3)]
        fastest = min(runs, key=lambda s: s.seconds)
        results.append({"case": f"score_file {suffix[1:]} → {suffix[1:]} "
                                f"(chunks of 100,000 rows, atomic write)",
                        "rows_per_s": fastest.rows_per_second})
    return results


def _timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--seconds", type=int, default=10, help="wrk duration per case")
    parser.add_argument("--batch-rows", type=int, default=1_000_000)
    parser.add_argument("--json", nargs="?", const="-", default=None, metavar="PATH",
                        help="print the results as JSON (no PATH), or also write them to PATH")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    from mlops_pipelines.steps import inference

    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        workdir = Path(tmp)
        model_dir = args.model_dir or train_default_model(workdir / "train")
        model = inference.model_fn(str(model_dir))
        lines = csv_lines(model, 2000)
        report = {
            "machine": f"{os.cpu_count()} cores, {os.uname().machine}, Python "
                       f"{sys.version.split()[0]}, load average before "
                       f"{os.getloadavg()[0]:.2f}",
            "model": f"{model.booster.num_boosted_rounds()} trees, {model.width} features",
            "in_process": bench_in_process(model, lines),
            "endpoint": bench_endpoint(model_dir, lines[0], args.seconds, workdir),
            "batch": bench_batch(model_dir, args.batch_rows, workdir),
        }
    if args.json == "-":
        print(json.dumps(report, indent=2))
        return 0
    print_report(report)
    if args.json:
        write_json(args.json, json_report(
            "serving", report, started=started,
            packages=("numpy", "pandas", "pyarrow", "xgboost-cpu", "xgboost")))
    return 0


def print_report(report: dict) -> None:
    print(f"machine: {report['machine']}; model: {report['model']}\n")
    print("| in-process, one CSV row | p50 | p99 | calls/s |\n|---|---|---|---|")
    for r in report["in_process"]:
        print(f"| {r['case']} | {r['p50_ms']:.3f} ms | {r['p99_ms']:.3f} ms | "
              f"{r['calls_per_s']:,.0f} |")
    print("\n| endpoint, one CSV row per request | capture | req/s | p50 | p99 | errors |"
          "\n|---|---|---|---|---|---|")
    for r in report["endpoint"]:
        print(f"| concurrency {r['concurrency']} | {r['capture_percent']:g} % | "
              f"{r['req_per_s']:,.0f} | {r['p50_ms']:.2f} ms | {r['p99_ms']:.2f} ms | "
              f"{r['non_2xx']} non-2xx, socket errors: {r['socket_errors']} |")
    print("\n| batch | rows/s |\n|---|---|")
    for r in report["batch"]:
        print(f"| {r['case']} | {r['rows_per_s']:,.0f} |")


if __name__ == "__main__":
    sys.exit(main())
