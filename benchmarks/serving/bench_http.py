"""The endpoint's HTTP/1.1 protocol side by side: llhttp (`serving/http.py`) against the
hand-written parser it replaced, in one run, alternating.

    .venv/bin/python benchmarks/serving/bench_http.py [--model-dir DIR] [--rounds 3]
        [--seconds 10] [--skip-stall] [--json PATH]

The hand-written parser runs through the benchmark-only switch in `baseline/` (a
`sitecustomize.py` on PYTHONPATH that swaps `HttpProtocol` in every process of the server).

Measured, per round and per parser, on a fresh `mlops serve` (capture 0 %):
  throughput  2 workers, wrk (one thread) POSTing one CSV row per request, keep-alive, at
              concurrency 1 and 8: req/s, p50, p99 (wrk --latency), after a 2 s warm-up
  stall       1 worker (`--workers 1`): one client uploads while another sends GET /ping on a
              kept-alive connection every 2 ms until the upload is over; the second client's
              p50 / p99 / max latency, and with no upload as the reference. Uploads: 200 MB
              chunked in 16-byte chunks and in 64 KiB chunks (both refused with 413 once past
              6 MB), a legal 6 MB chunked body in 16-byte chunks sent slowly (64 KiB every
              5 ms, to POST /ping: answered 405 once read, so scoring is not in the figure),
              and 200 MB announced by Content-Length (refused before the body)
Rounds alternate the parsers (new, old, new, old, ...); medians over the rounds are reported,
and every round's figures are in the JSON. wrk and the server share the 2 cores.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
from _common import percentile, report as json_report, write_json  # noqa: E402
from bench_endpoint import (ENDPOINT, csv_lines, run_wrk, train_default_model,  # noqa: E402
                            start_server as start_endpoint)

BASELINE = HERE / "baseline"
PARSERS = {"llhttp": None, "hand-written": str(BASELINE)}


def start_server(home: Path, parser: str, workers: int) -> tuple[subprocess.Popen, int]:
    return start_endpoint(home, 0, workers=workers, python_path=PARSERS[parser])


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)


def check_parser(parser: str) -> None:
    """The switch takes effect (in a process started as the server's are)."""
    env = {**os.environ}
    env.pop("PYTHONPATH", None)
    if PARSERS[parser]:
        env["PYTHONPATH"] = PARSERS[parser]
    module = subprocess.run(
        [sys.executable, "-c", "import mlops_kit.serving.wire as w; print(w.HttpProtocol.__module__)"],
        env=env, capture_output=True, text=True, check=True).stdout.strip()
    expected = "mlops_kit.serving.http" if PARSERS[parser] is None else \
        "mlops_bench_handwritten_http"
    if module != expected:
        raise SystemExit(f"{parser}: HttpProtocol comes from {module}, not {expected}")


# -- stall --------------------------------------------------------------------------------------
CHUNKED_HEAD = b"POST /ping HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
TINY = b"10\r\n" + b"a" * 16 + b"\r\n"
TINY_BLOCK = TINY * (65536 // len(TINY))
LARGE = b"10000\r\n" + b"a" * 65536 + b"\r\n"
UPLOADS = {
    "none (reference)": None,
    "chunked 200 MB, 16-byte chunks (413 at 6 MB)": (CHUNKED_HEAD, TINY_BLOCK, 9000, 0.0),
    "chunked 200 MB, 64 KiB chunks (413 at 6 MB)": (CHUNKED_HEAD, LARGE, 3200, 0.0),
    "chunked 6 MB legal, 16-byte chunks, 64 KiB / 5 ms": (CHUNKED_HEAD, TINY_BLOCK, 130, 0.005),
    "Content-Length 200 MB (413 before the body)": (
        b"POST /ping HTTP/1.1\r\nContent-Length: 209715200\r\n\r\n", b"a" * 65536, 3200, 0.0),
}


def upload(port: int, head: bytes, piece: bytes, count: int, pause: float, result: dict) -> None:
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        try:
            sock.sendall(head)
            for _ in range(count):
                sock.sendall(piece)
                if pause:
                    time.sleep(pause)
            if head == CHUNKED_HEAD:
                sock.sendall(b"0\r\n\r\n")
        except OSError as exc:
            result["send_error"] = type(exc).__name__
        try:
            answer = sock.recv(65536)
            result["status"] = answer[9:12].decode() if answer.startswith(b"HTTP/1.1 ") else None
        except OSError as exc:
            result["recv_error"] = type(exc).__name__
    result["seconds"] = round(time.perf_counter() - started, 3)


def pings(port: int, until, minimum: int = 200) -> list[float]:
    latencies = []
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while until() or len(latencies) < minimum:
            started = time.perf_counter()
            sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while not answer.rstrip().endswith(b"}"):
                data = sock.recv(65536)
                if not data:
                    raise RuntimeError("the server closed the ping connection")
                answer += data
            latencies.append(time.perf_counter() - started)
            time.sleep(0.002)
    return latencies


def bench_stall(home: Path, parser: str) -> list[dict]:
    process, port = start_server(home, parser, workers=1)
    results = []
    try:
        pings(port, lambda: False, 100)  # warm-up
        for name, spec in UPLOADS.items():
            result: dict = {}
            if spec is None:
                latencies = pings(port, lambda: False, 500)
            else:
                head, piece, count, pause = spec
                thread = threading.Thread(target=upload,
                                          args=(port, head, piece, count, pause, result))
                thread.start()
                latencies = pings(port, thread.is_alive)
                thread.join()
            ms = [x * 1e3 for x in latencies]
            results.append({"upload": name, "requests": len(ms),
                            "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99),
                            "max_ms": max(ms), "upload_result": result})
    finally:
        stop(process)
    return results


# -- throughput ---------------------------------------------------------------------------------
def bench_throughput(home: Path, parser: str, body: str, seconds: int, workdir: Path) -> list:
    process, port = start_server(home, parser, workers=2)
    try:
        return [{"concurrency": c, **run_wrk(port, body, c, seconds, workdir)} for c in (1, 8)]
    finally:
        stop(process)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10, help="wrk duration per case")
    parser.add_argument("--skip-stall", action="store_true")
    parser.add_argument("--json", default=None, metavar="PATH")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    from mlops_kit.clock import utc_now_iso
    from mlops_kit.endpoint_state import EndpointState, ServedVariant, save_state
    from mlops_pipelines.steps import inference

    for name in PARSERS:
        check_parser(name)
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        workdir = Path(tmp)
        model_dir = args.model_dir or train_default_model(workdir / "train")
        body = csv_lines(inference.model_fn(str(model_dir)), 10)[0]
        home = workdir / "home"
        variants = (ServedVariant("v1", 1, str(model_dir), 1.0),)
        save_state(home, EndpointState(ENDPOINT, "InService", variants, "bench", utc_now_iso(), 1))
        rounds = []
        for index in range(args.rounds):
            order = list(PARSERS) if index % 2 == 0 else list(reversed(PARSERS))
            for name in order:
                entry = {"round": index + 1, "parser": name,
                         "throughput": bench_throughput(home, name, body, args.seconds, workdir)}
                if not args.skip_stall:
                    entry["stall"] = bench_stall(home, name)
                rounds.append(entry)
                print(f"round {index + 1} {name}: " + ", ".join(
                    f"c{r['concurrency']} {r['req_per_s']:,.0f} req/s p99 {r['p99_ms']:.2f} ms"
                    for r in entry["throughput"]), file=sys.stderr, flush=True)
    results = {"rounds": rounds, "summary": summarise(rounds)}
    print_report(results)
    if args.json:
        write_json(args.json, json_report("serving_http", results, started=started,
                                          packages=("httptools", "xgboost-cpu", "numpy")))
    return 0


def summarise(rounds: list[dict]) -> dict:
    summary: dict = {"throughput": [], "stall": []}
    for concurrency in (1, 8):
        row = {"concurrency": concurrency}
        for name in PARSERS:
            runs = [r for entry in rounds if entry["parser"] == name
                    for r in entry["throughput"] if r["concurrency"] == concurrency]
            for key in ("req_per_s", "p50_ms", "p99_ms"):
                row[f"{name} {key}"] = statistics.median(r[key] for r in runs)
            row[f"{name} errors"] = sum(r["non_2xx"] for r in runs)
        row["req/s new/old"] = row["llhttp req_per_s"] / row["hand-written req_per_s"]
        row["p99 new/old"] = row["llhttp p99_ms"] / row["hand-written p99_ms"]
        summary["throughput"].append(row)
    for upload_name in UPLOADS:
        row = {"upload": upload_name}
        for name in PARSERS:
            runs = [s for entry in rounds if entry["parser"] == name
                    for s in entry.get("stall", []) if s["upload"] == upload_name]
            if not runs:
                continue
            row[f"{name} p99_ms"] = statistics.median(s["p99_ms"] for s in runs)
            row[f"{name} max_ms"] = max(s["max_ms"] for s in runs)
            row[f"{name} upload"] = sorted({str(s["upload_result"].get("status")) for s in runs})
        if len(row) > 1:
            summary["stall"].append(row)
    return summary


def print_report(results: dict) -> None:
    rounds = max(entry["round"] for entry in results["rounds"])
    print(f"medians of {rounds} alternating rounds\n")
    print("| concurrency | llhttp req/s | hand-written req/s | new/old | llhttp p50 / p99 | "
          "hand-written p50 / p99 | p99 new/old |\n|---|---|---|---|---|---|---|")
    for r in results["summary"]["throughput"]:
        print(f"| {r['concurrency']} | {r['llhttp req_per_s']:,.0f} | "
              f"{r['hand-written req_per_s']:,.0f} | {r['req/s new/old']:.3f} | "
              f"{r['llhttp p50_ms']:.2f} / {r['llhttp p99_ms']:.2f} ms | "
              f"{r['hand-written p50_ms']:.2f} / {r['hand-written p99_ms']:.2f} ms | "
              f"{r['p99 new/old']:.3f} |")
    if results["summary"]["stall"]:
        print("\n| upload on the same worker | llhttp: other client p99 / max | "
              "hand-written: p99 / max | upload answered |\n|---|---|---|---|")
        for r in results["summary"]["stall"]:
            print(f"| {r['upload']} | {r['llhttp p99_ms']:.1f} / {r['llhttp max_ms']:.1f} ms | "
                  f"{r['hand-written p99_ms']:.1f} / {r['hand-written max_ms']:.1f} ms | "
                  f"new {', '.join(r['llhttp upload'])}; old "
                  f"{', '.join(r['hand-written upload'])} |")


if __name__ == "__main__":
    sys.exit(main())
