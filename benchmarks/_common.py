"""Helpers every benchmark shares: the machine block, atomic JSON output, percentiles and
markdown tables. Standard library only, so a script imports it before anything heavy.

A script in benchmarks/<name>/ imports it with:

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from _common import ...
"""

from __future__ import annotations

import json
import math
import os
import platform
import shlex
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Sequence

ROOT = Path(__file__).resolve().parents[1]
"""The repository root."""

DEFAULT_PACKAGES = ("numpy", "pandas", "pyarrow", "xgboost-cpu", "xgboost", "mlflow", "boto3",
                    "botocore", "moto", "aws-lambda-powertools", "aws-cdk-lib")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_versions(names: Iterable[str]) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def bytecode() -> dict[str, Any]:
    """Whether imports here read cached .pyc or compile from source: it changes every import-
    heavy figure (uv installs without compiling, and PYTHONDONTWRITEBYTECODE=1 keeps it so)."""
    import sysconfig

    site = Path(sysconfig.get_paths()["purelib"])
    probe = next((p for p in ("botocore", "boto3", "numpy") if (site / p).is_dir()), None)
    return {"PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE", ""),
            "PYTHONPYCACHEPREFIX": os.environ.get("PYTHONPYCACHEPREFIX", ""),
            "site_packages_has_pyc": (probe is not None
                                      and (site / probe / "__pycache__").is_dir())}


def machine(packages: Iterable[str] = DEFAULT_PACKAGES, **extra: Any) -> dict[str, Any]:
    """Where and with what the figures were taken (goes into every JSON result)."""
    return {"cpu_count": os.cpu_count(), "cpu_model": cpu_model(),
            "machine": platform.machine(), "kernel": platform.release(),
            "memory_gib": memory_gib(),
            "python": platform.python_version(), "python_executable": sys.executable,
            "bytecode": bytecode(), "packages": package_versions(packages),
            "load_average_at_start": list(os.getloadavg()), **extra}


def command_line() -> str:
    """The exact command that produced the figures."""
    return shlex.join([sys.executable, *sys.argv])


def report(benchmark: str, results: dict[str, Any], *,
           packages: Iterable[str] = DEFAULT_PACKAGES, started: float | None = None,
           **machine_extra: Any) -> dict[str, Any]:
    """The JSON document of one run: what, when, where, how, then the figures."""
    doc = {"benchmark": benchmark,
           "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "command": command_line(), "cwd": os.getcwd(),
           "machine": machine(packages, **machine_extra)}
    if started is not None:
        doc["wall_seconds"] = round(time.perf_counter() - started, 3)
    doc["results"] = results
    return doc


def write_json(path: str | Path, document: Any) -> Path:
    """Write atomically: a temporary file in the same folder, then rename over the target."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(document, handle, indent=2, sort_keys=False, default=str)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it 0600; a result is for everyone
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear interpolation between closest ranks (numpy's
    default), so p50 of an even count is the mean of the middle two."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(samples: Sequence[float], scale: float = 1.0) -> dict[str, float]:
    """min / p50 / p95 / max / mean (and n) of samples, multiplied by scale (1e3: s → ms)."""
    if not samples:
        return {"n": 0}
    return {"n": len(samples), "min": min(samples) * scale,
            "p50": percentile(samples, 50) * scale, "p95": percentile(samples, 95) * scale,
            "max": max(samples) * scale, "mean": sum(samples) / len(samples) * scale}


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        lines.append("| " + " | ".join(str(cell) for cell in row) + " |")
    return "\n".join(lines)


def machine_line(doc_machine: dict[str, Any]) -> str:
    packages = ", ".join(f"{k} {v}" for k, v in doc_machine.get("packages", {}).items())
    load = doc_machine.get("load_average_at_start") or [0.0]
    code = doc_machine.get("bytecode", {})
    if code.get("site_packages_has_pyc"):
        pyc = "site-packages has .pyc"
    elif code.get("PYTHONDONTWRITEBYTECODE"):
        pyc = "no .pyc, PYTHONDONTWRITEBYTECODE set: every import compiles"
    else:
        pyc = "no .pyc yet in site-packages"
    return (f"machine: {doc_machine['cpu_count']} × {doc_machine['cpu_model']}, Python "
            f"{doc_machine['python']} ({pyc}), load average at start {load[0]:.2f}"
            + (f"; {packages}" if packages else ""))


def add_json_argument(parser) -> None:
    parser.add_argument("--json", metavar="PATH", type=Path, default=None,
                        help="also write the figures as JSON to PATH (atomically)")
