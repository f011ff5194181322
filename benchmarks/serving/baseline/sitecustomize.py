"""Benchmark-only switch: run `mlops serve` (supervisor and workers) on the hand-written HTTP/1.1
parser the endpoint had before llhttp, for side-by-side figures (`bench_http.py`).

    PYTHONPATH=benchmarks/serving/baseline .venv/bin/python -m mlops_kit.cli.serving serve ...

Python imports `sitecustomize` at start-up from the path, in every process the server starts;
this replaces `mlops_kit.serving.http.HttpProtocol` before `serving.wire` and `serving.worker`
import it. `handwritten_http.py` is a frozen copy of `functions/mlops_kit/serving/http.py` as it
was then, known bugs included (docs/performance.md): never import it from the kit.
"""

import importlib.util
import os
from pathlib import Path

_path = Path(__file__).with_name("handwritten_http.py")
_spec = importlib.util.spec_from_file_location("mlops_bench_handwritten_http", _path)
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)

import mlops_kit.serving.http as _http  # noqa: E402

_http.HttpProtocol = _module.HttpProtocol
os.environ["MLOPS_BENCH_HTTP"] = "handwritten"  # for the benchmark to check it took effect
