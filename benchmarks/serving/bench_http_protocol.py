"""The HTTP protocol's own cost per request, in process: one request (a 97-byte head, an
80-byte CSV body, as wrk sends it) fed to `data_received` of the llhttp protocol
(`serving/http.py`) and of the hand-written one it replaced (`baseline/`), the answer formatted,
no scoring, a stub transport. Prints the best of 9 × 20,000 per parser in µs; `--profile`
adds cProfile's split of the llhttp side. Figures: docs/performance.md.

    .venv/bin/python benchmarks/serving/bench_http_protocol.py [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "baseline"))

import handwritten_http  # noqa: E402

from mlops_kit.serving import http  # noqa: E402

REQUEST = (b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Length: 80\r\n"
           b"Content-Type: text/csv\r\n\r\n" + b"1" * 80)


class StubTransport:
    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass


def answer(method, target, headers, body):
    return 200, b"text/csv", b"0.5\n", b""


def connection(protocol_class):
    protocol = protocol_class(answer, http.ConnectionRegistry())
    protocol.connection_made(StubTransport())
    return protocol


def per_request_us(protocol_class, requests: int = 20_000, repeats: int = 9) -> float:
    protocol = connection(protocol_class)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(requests):
            protocol.data_received(REQUEST)
        best = min(best, (time.perf_counter() - started) / requests)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    print(f"llhttp       {per_request_us(http.HttpProtocol):.2f} µs per request")
    print(f"hand-written {per_request_us(handwritten_http.HttpProtocol):.2f} µs per request")
    if args.profile:
        protocol = connection(http.HttpProtocol)
        profile = cProfile.Profile()
        profile.runcall(lambda: [protocol.data_received(REQUEST) for _ in range(50_000)])
        pstats.Stats(profile).sort_stats("tottime").print_stats(10)


if __name__ == "__main__":
    main()
