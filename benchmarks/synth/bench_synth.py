"""`cdk synth` wall time per stage, cold (fresh output folder) and warm.

    .venv/bin/python benchmarks/synth/bench_synth.py [--stages dev,prod] [--repeat 2] [--json PATH]

Runs exactly the command the Makefile's `synth` target runs, with its environment:

    PATH=.venv/bin:$PATH JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20 \
    CDK_DISABLE_VERSION_CHECK=1 CDK_DISABLE_CLI_TELEMETRY=true \
    npx cdk synth -c stage=STAGE --quiet

plus `-o DIR`, so the runs never touch the repository's cdk.out (other work may be using it).
  cold  a new, empty output folder: every Lambda asset is bundled again (copying the handler's
        kit modules; the drift monitor's numpy wheel through `pip --platform`, which asks the
        package index and uses pip's cache), then the app (Python, jsii), cdk-nag, validation
  warm  the same command again into the folder the last cold run filled: assets are reused
Each is repeated --repeat times per stage (a new folder for every cold run); min and median
are reported, and warm/cold as a ratio measured in the same run. cfn-lint and `make
definition` (which `make synth` also runs) are not timed.

Prerequisites: node/npx; node_modules (the script runs `npm ci` when node_modules/.bin/cdk is
missing, and reports its time); the staged pipeline code in pipelines/build/artifact-bucket
(the script runs `mlops pipeline definition` as `make definition` does when it is missing).
Expect ~20 s a cold and ~16 s a warm synth on 2 cores: ~3 min with the defaults.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import (ROOT, add_json_argument, machine_line, report, table,  # noqa: E402
                     write_json)

VENV_BIN = Path(sys.executable).parent
MAKE_ENV = {"JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
            "CDK_DISABLE_VERSION_CHECK": "1", "CDK_DISABLE_CLI_TELEMETRY": "true"}


def environment() -> dict[str, str]:
    return {**os.environ, **MAKE_ENV, "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}"}


def tool_version(command: list[str]) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, cwd=ROOT,
                              env=environment(), timeout=120).stdout.strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "?"


def prerequisites() -> dict[str, float]:
    spent = {}
    if shutil.which("npx") is None:
        raise SystemExit("npx not found: install Node.js (the CDK CLI runs on it)")
    if not (ROOT / "node_modules" / ".bin" / "cdk").exists():
        started = time.perf_counter()
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=ROOT, check=True,
                       env=environment())
        spent["npm_ci_seconds"] = time.perf_counter() - started
    if not (ROOT / "pipelines" / "build" / "artifact-bucket").is_dir():
        started = time.perf_counter()
        subprocess.run([str(VENV_BIN / "mlops"), "pipeline", "definition", "--out",
                        "pipelines/definition.json", "--assets",
                        "pipelines/build/artifact-bucket"], cwd=ROOT, check=True,
                       env=environment())
        spent["definition_seconds"] = time.perf_counter() - started
    return spent


def synth(stage: str, outdir: Path) -> float:
    command = ["npx", "cdk", "synth", "-c", f"stage={stage}", "--quiet", "-o", str(outdir)]
    started = time.perf_counter()
    out = subprocess.run(command, cwd=ROOT, env=environment(), capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if out.returncode != 0:
        raise SystemExit(f"`{' '.join(command)}` failed ({out.returncode}):\n"
                         f"{(out.stderr or out.stdout)[-4000:]}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", default="dev,prod")
    parser.add_argument("--repeat", type=int, default=2, help="cold and warm runs per stage")
    add_json_argument(parser)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    spent = prerequisites()
    stages = []
    with tempfile.TemporaryDirectory(prefix="bench-synth-") as tmp:
        for stage in [s.strip() for s in args.stages.split(",") if s.strip()]:
            cold, warm = [], []
            for i in range(args.repeat):
                outdir = Path(tmp) / f"{stage}-{i}"
                cold.append(synth(stage, outdir))
                print(f"{stage}: cold {cold[-1]:.1f} s", file=sys.stderr)
            for _ in range(args.repeat):
                warm.append(synth(stage, outdir))
                print(f"{stage}: warm {warm[-1]:.1f} s", file=sys.stderr)
            assets = sum(1 for p in outdir.iterdir() if p.name.startswith("asset."))
            stages.append({"stage": stage, "cold_seconds": cold, "warm_seconds": warm,
                           "cold_min": min(cold), "cold_median": statistics.median(cold),
                           "warm_min": min(warm), "warm_median": statistics.median(warm),
                           "warm_over_cold": statistics.median(warm) / statistics.median(cold),
                           "assets": assets,
                           "command": f"npx cdk synth -c stage={stage} --quiet -o DIR"})
    doc = report("cdk_synth", {"stages": stages, "prerequisites": spent,
                               "environment": MAKE_ENV},
                 started=started, packages=("aws-cdk-lib", "cdk-nag", "jsii", "constructs"),
                 node=tool_version(["node", "--version"]),
                 cdk_cli=tool_version(["npx", "cdk", "--version"]))
    print_report(doc)
    if args.json:
        write_json(args.json, doc)
    return 0


def print_report(doc: dict) -> None:
    m = doc["machine"]
    print(machine_line(m) + f"; node {m['node']}, CDK CLI {m['cdk_cli']}\n")
    print(table(["stage", "cold min", "cold median", "warm min", "warm median", "warm / cold",
                 "runs each"],
                [[s["stage"], f"{s['cold_min']:.1f} s", f"{s['cold_median']:.1f} s",
                  f"{s['warm_min']:.1f} s", f"{s['warm_median']:.1f} s",
                  f"{s['warm_over_cold']:.2f}", len(s["cold_seconds"])]
                 for s in doc["results"]["stages"]]))
    for key, value in doc["results"]["prerequisites"].items():
        print(f"\n(prerequisite {key.removesuffix('_seconds')}: {value:.1f} s, not counted)")


if __name__ == "__main__":
    sys.exit(main())
