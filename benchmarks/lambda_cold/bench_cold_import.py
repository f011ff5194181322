"""Cold import of every Lambda handler (functions/*/handler.py), each in a fresh interpreter.

    .venv/bin/python benchmarks/lambda_cold/bench_cold_import.py [--repeat 5] [--json PATH]

Per handler and repetition, one new `python` process (no `-X importtime`: it slows imports)
measures, with time.perf_counter inside the process:
  import         executing functions/<name>/handler.py as a module (the handler's top level:
                 Powertools, boto3, the kit, settings read from the environment)
  with adapters  import, then building what the Lambda builds on its first event: controller(route)
                 for the deployment and rollback controllers, dependencies(route) for the drift
                 monitor and probe, settings() + the sagemaker-runtime client for the stream
                 scorer (what it does at cold start inside Lambda)
and, from outside, the wall time of the whole process (interpreter start-up included).
Reported: min and median of each over the repetitions. This is how the figures in
docs/performance.md ("import", "with adapters") were taken; the process wall time is extra.

Bytecode decides these figures, so both cases run, independent of the venv's state:
  source  no .pyc: PYTHONDONTWRITEBYTECODE=1 and an empty PYTHONPYCACHEPREFIX, every module
          compiled on every start. This is the project machine's default (uv installs without
          compiling and the environment sets PYTHONDONTWRITEBYTECODE=1), hence what the earlier
          figures (1.0-1.5 s) measured; a Lambda whose bundle ships no .pyc does the same (its
          code folder is read-only, nothing is cached between cold starts)
  pyc     .pyc cached in a PYTHONPYCACHEPREFIX filled by one untimed run first
`--bytecode source` or `pyc` runs one of them; the table gives pyc/source as a ratio.

One more process per handler runs with `-X importtime` (in the first bytecode case) only to
name the heaviest top-level imports (cumulative µs as CPython reports them). The check: after building the adapters no
handler has pandas, scikit-learn, xgboost, scipy, mlflow or the SageMaker SDK in sys.modules;
numpy only where expected (the drift monitor). A violation fails the run (exit 1).

The environment is the function's own variables as the stack sets them (fake names), fake
credentials, region us-east-1, no AWS_LAMBDA_FUNCTION_NAME (so Powertools' Tracer stays off and
aws_xray_sdk is not imported, as in the tests). Nothing calls AWS: clients are only built.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import (ROOT, add_json_argument, machine_line, report, table,  # noqa: E402
                     write_json)

FUNCTIONS = ROOT / "functions"
FORBIDDEN = ("pandas", "sklearn", "xgboost", "scipy", "mlflow", "sagemaker", "pyarrow")
EXPECTED = {"drift_monitor": {"numpy"}}
"""Heavy packages a handler is expected to import (the drift maths need numpy)."""
WATCHED = FORBIDDEN + ("numpy",)

ENV = {
    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true", "POWERTOOLS_LOG_LEVEL": "INFO",
    "ENDPOINT_NAME": "fraud-scorer-prod", "MLOPS_MODEL_GROUP": "fraud-scorer",
    "LEDGER_TABLE_NAME": "mlops-ledger", "IDEMPOTENCY_TABLE_NAME": "mlops-idempotency",
    "SAGEMAKER_EXECUTION_ROLE_ARN": "arn:aws:iam::123456789012:role/sagemaker-execution",
    "DATA_CAPTURE_S3_URI": "s3://kit-capture/capture", "DATA_CAPTURE_SAMPLING_PERCENT": "20",
    "ENDPOINT_INSTANCE_TYPE": "ml.m5.large", "CHAMPION_INSTANCE_COUNT": "2",
    "FALLBACK_INSTANCE_COUNT": "1", "WARM_FALLBACKS": "2", "SCHEDULE_MINUTES": "10",
    "GROUND_TRUTH_S3_URI": "s3://kit-capture/ground-truth",
    "NOTIFICATION_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:mlops-notifications",
    "OUTPUT_STREAM_NAME": "scored", "POWERTOOLS_SERVICE_NAME": "bench",
}

ADAPTERS = {
    "deployment_controller": "module.controller(module.runtime.routes.only)",
    "rollback_controller": "module.controller(module.runtime.routes.only)",
    "drift_monitor": "module.dependencies(module.runtime.routes.only)",
    "probe": "module.dependencies(module.runtime.routes.only)",
    "stream_scorer": "module.settings(); module.clients('sagemaker-runtime')",
}

CHILD = r"""
import time
t0 = time.perf_counter()
import importlib.util, json, sys
path, adapters, watched = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
spec = importlib.util.spec_from_file_location("handler", path)
module = importlib.util.module_from_spec(spec)
sys.modules["handler"] = module
spec.loader.exec_module(module)
t1 = time.perf_counter()
exec(adapters, {"module": module})
t2 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "with_adapters": t2 - t0,
                  "loaded": sorted({m for m in watched if m in sys.modules}),
                  "modules": len(sys.modules)}))
"""


def handlers() -> list[str]:
    return sorted(p.parent.name for p in FUNCTIONS.glob("*/handler.py"))


def environment(bytecode: str, cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "POWERTOOLS_")) and k not in ENV}
    env.update(ENV)
    for name in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX"):
        env.pop(name, None)
    env["PYTHONPYCACHEPREFIX"] = str(cache / bytecode)
    if bytecode == "source":
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run_once(name: str, env: dict[str, str]) -> dict:
    adapters = ADAPTERS.get(name, "pass")
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD, str(FUNCTIONS / name / "handler.py"),
                          adapters, ",".join(WATCHED)],
                         env=env, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if out.returncode != 0:
        raise SystemExit(f"{name}: the import failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process"] = wall
    return result


def heaviest(name: str, env: dict[str, str], top: int) -> list[dict]:
    """Top-level imports by cumulative time, from one `-X importtime` run."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", CHILD,
                          str(FUNCTIONS / name / "handler.py"), ADAPTERS.get(name, "pass"),
                          ",".join(WATCHED)], env=env, cwd=ROOT, capture_output=True, text=True)
    rows = []
    for line in out.stderr.splitlines():
        found = re.match(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|( *)(\S+)", line)
        if found and len(found.group(3)) == 1:  # depth 0: imported by the handler or the kit
            rows.append({"module": found.group(4), "cumulative_ms": int(found.group(2)) / 1e3})
    rows.sort(key=lambda r: -r["cumulative_ms"])
    return rows[:top]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="fresh processes per handler")
    parser.add_argument("--top", type=int, default=5, help="heaviest imports to list")
    parser.add_argument("--only", nargs="*", default=None, help="handlers to measure")
    parser.add_argument("--bytecode", choices=("both", "source", "pyc"), default="both")
    add_json_argument(parser)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    modes = ("source", "pyc") if args.bytecode == "both" else (args.bytecode,)
    names = args.only or handlers()
    results, problems = [], []
    with tempfile.TemporaryDirectory(prefix="bench-cold-pycache-") as cache:
        for name in names:
            entry = {"function": name, "repeat": args.repeat,
                     "adapters": ADAPTERS.get(name, "")}
            loaded: set[str] = set()
            for mode in modes:
                env = environment(mode, Path(cache))
                if mode == "pyc":
                    run_once(name, env)  # fills the cache, not counted
                runs = [run_once(name, env) for _ in range(args.repeat)]
                loaded |= set().union(*(set(r["loaded"]) for r in runs))
                entry["modules_loaded"] = runs[-1]["modules"]
                if "heaviest_imports" not in entry:
                    entry["heaviest_imports"] = heaviest(name, env, args.top)
                    entry["heaviest_imports_bytecode"] = mode
                entry[mode] = {}
                for key in ("import", "with_adapters", "process"):
                    samples = [r[key] for r in runs]
                    entry[mode][key] = {"min_s": min(samples),
                                        "median_s": statistics.median(samples),
                                        "samples_s": samples}
                print(f"{name} ({mode}): import median "
                      f"{entry[mode]['import']['median_s']:.3f} s", file=sys.stderr)
            if len(modes) == 2:
                entry["pyc_over_source"] = {
                    key: entry["pyc"][key]["median_s"] / entry["source"][key]["median_s"]
                    for key in ("import", "with_adapters", "process")}
            entry["heavy_modules_loaded"] = sorted(loaded)
            entry["unexpected_heavy_modules"] = sorted(loaded - EXPECTED.get(name, set()))
            if entry["unexpected_heavy_modules"]:
                problems.append(f"{name} imports {', '.join(entry['unexpected_heavy_modules'])}")
            results.append(entry)
    doc = report("lambda_cold_import", {"functions": results, "problems": problems,
                                        "bytecode_modes": list(modes),
                                        "environment": {k: ENV[k] for k in sorted(ENV)}},
                 started=started, packages=("boto3", "botocore", "aws-lambda-powertools",
                                            "numpy", "aws-xray-sdk"))
    print_report(doc)
    if args.json:
        write_json(args.json, doc)
    if problems:
        print("\nFAILED: " + "; ".join(problems), file=sys.stderr)
        return 1
    return 0


LABELS = {"source": "no .pyc (compiled at every start)", "pyc": "cached .pyc"}


def print_report(doc: dict) -> None:
    print(machine_line(doc["machine"]) + "\n")
    functions = doc["results"]["functions"]
    for mode in doc["results"]["bytecode_modes"]:
        rows = []
        for r in functions:
            m = r[mode]
            rows.append([r["function"],
                         f"{m['import']['min_s']:.3f} s", f"{m['import']['median_s']:.3f} s",
                         f"{m['with_adapters']['min_s']:.3f} s",
                         f"{m['with_adapters']['median_s']:.3f} s",
                         f"{m['process']['median_s']:.3f} s",
                         ", ".join(r["heavy_modules_loaded"]) or "none"])
        print(f"Cold import, {LABELS[mode]}, fresh interpreter per run, "
              f"{functions[0]['repeat']} runs per handler:\n")
        print(table(["function", "import min", "import median", "with adapters min",
                     "with adapters median", "process wall median",
                     "numpy/pandas/sklearn/xgboost/…"], rows) + "\n")
    if len(doc["results"]["bytecode_modes"]) == 2:
        print("Cached .pyc against compiling from source (medians, same run):\n")
        print(table(["function", "import pyc/source", "with adapters pyc/source",
                     "process pyc/source"],
                    [[r["function"], *(f"{r['pyc_over_source'][k]:.2f}"
                                       for k in ("import", "with_adapters", "process"))]
                     for r in functions]) + "\n")
    print(f"Heaviest top-level imports (one `-X importtime` run, "
          f"{LABELS[functions[0]['heaviest_imports_bytecode']]}, cumulative):\n")
    print(table(["function", "heaviest imports"],
                [[r["function"], ", ".join(f"{h['module']} {h['cumulative_ms']:.0f} ms"
                                            for h in r["heaviest_imports"])]
                 for r in doc["results"]["functions"]]))
    if doc["results"]["problems"]:
        print("\nUNEXPECTED heavy imports: " + "; ".join(doc["results"]["problems"]))
    else:
        print("\nNo handler imports pandas, scikit-learn, xgboost, scipy, pyarrow, MLflow or the "
              "SageMaker SDK; numpy only the drift monitor.")


if __name__ == "__main__":
    sys.exit(main())
