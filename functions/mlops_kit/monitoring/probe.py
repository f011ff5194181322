"""Synthetic probes: every variant, warm fallbacks included, is invoked directly (pinned with
TargetVariant) with rows built from the champion's drift baseline; a fallback that fails its
probe is never a rollback target."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Mapping, Sequence

from mlops_kit.core.metric_catalogue import PROBE_LATENCY, PROBE_SUCCESS, MetricDatum

QUANTILE_PICKS = (0.1, 0.3, 0.5, 0.7, 0.9)

Invoke = Callable[[str, str], tuple[int, str]]
"""(variant_name, CSV body) -> (HTTP status, response body)."""


@dataclass(frozen=True)
class ProbeResult:
    variant_name: str
    ok: bool
    latency_ms: float
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "latency_ms": self.latency_ms, "detail": self.detail}


def baseline_rows(features: Mapping[str, Any], feature_order: Sequence[str]) -> str:
    """CSV rows spanning the baseline: numeric features at several of their quantile edges,
    categorical ones cycling through their most frequent categories."""
    rows = []
    for i, q in enumerate(QUANTILE_PICKS):
        row = []
        for name in feature_order:
            entry = features[name]
            if entry["kind"] == "numeric":
                edges = entry["edges"]
                row.append(repr(float(edges[min(int(q * len(edges)), len(edges) - 1)]))
                           if edges else "")
            else:
                categories = entry["categories"]
                row.append(categories[i % len(categories)] if categories else "")
        rows.append(",".join(row))
    return "\n".join(rows)


def probe_variants(invoke: Invoke, variants: Sequence[str], body: str,
                   max_latency_ms: float = 1000.0) -> list[ProbeResult]:
    expected = body.count("\n") + 1
    results = []
    for variant in variants:
        started = time.perf_counter()
        try:
            status, text = invoke(variant, body)
        except Exception as exc:  # a dead variant must show up as a failed probe
            results.append(ProbeResult(variant, False, (time.perf_counter() - started) * 1e3,
                                       f"invocation failed: {exc}"))
            continue
        latency = (time.perf_counter() - started) * 1e3
        ok, detail = _judge(status, text, expected, latency, max_latency_ms)
        results.append(ProbeResult(variant, ok, latency, detail))
    return results


def _judge(status: int, text: str, expected: int, latency: float,
           max_latency_ms: float) -> tuple[bool, str]:
    if status != 200:
        return False, f"HTTP {status}: {text[:200]}"
    try:
        scores = [float(v) for v in text.replace(",", "\n").split()]
    except ValueError:
        return False, "response is not a list of scores"
    if len(scores) != expected:
        return False, f"{len(scores)} scores for {expected} rows"
    if not all(0.0 <= s <= 1.0 and not math.isnan(s) for s in scores):
        return False, "scores outside [0, 1]"
    if latency > max_latency_ms:
        return False, f"{latency:.0f} ms is over {max_latency_ms:.0f} ms"
    return True, "ok"


def probe_metrics(results: Sequence[ProbeResult], endpoint_name: str, at: datetime
                  ) -> list[MetricDatum]:
    data = []
    for result in results:
        dims = {"EndpointName": endpoint_name, "VariantName": result.variant_name}
        data.append(PROBE_SUCCESS.datum(1.0 if result.ok else 0.0, dims, at))
        data.append(PROBE_LATENCY.datum(result.latency_ms, dims, at))
    return data
