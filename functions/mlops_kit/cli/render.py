"""How results look in a terminal: rich tables and progress bars."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from mlops_kit.core.gates import GateVerdict


class StepProgress:
    """Reporter for the pipeline runner: a bar per step, boosting rounds for training."""

    def __init__(self, console: Console, enabled: bool = True):
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description:<12}"),
                                 BarColumn(), TextColumn("{task.fields[note]}"),
                                 TimeElapsedColumn(), console=console, disable=not enabled,
                                 transient=False)
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> "StepProgress":
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def step_started(self, step: str, total: int | None = None) -> None:
        self.tasks[step] = self.progress.add_task(step, total=total, note="")

    def step_progress(self, step: str, completed: int, total: int, note: str = "") -> None:
        self.progress.update(self.tasks[step], completed=completed, total=total, note=note)

    def step_finished(self, step: str, seconds: float, note: str = "") -> None:
        if step not in self.tasks:
            self.tasks[step] = self.progress.add_task(step, total=1, note="")
        task = self.tasks[step]
        total = self.progress.tasks[task].total or 1
        self.progress.update(task, completed=total, total=total,
                             note=note or f"{seconds:.1f}s")


def gate_table(verdicts: list[GateVerdict]) -> Table:
    table = Table(title="Quality gates")
    table.add_column("gate", no_wrap=True)
    table.add_column("measured", no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("threshold", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    table.add_column("margin", justify="right", no_wrap=True)
    for v in verdicts:
        table.add_row(v.gate, v.json_path, f"{v.value:.5g}", f"{v.comparison} {v.threshold:.5g}",
                      "[green]pass[/]" if v.passed else "[bold red]FAIL[/]", f"{v.margin:+.4g}")
    return table


def metrics_line(evaluation: dict[str, Any]) -> str:
    m, lat = evaluation["metrics"], evaluation["latency"]
    return (f"AUPR {m['aupr']:.4f}  ROC AUC {m['roc_auc']:.4f}  Brier {m['brier']:.4f}  "
            f"ECE {m['ece']:.4f}  score PSI {m['score_psi']:.4f}  "
            f"latency p50 {lat['p50_ms']:.3f} ms / p99 {lat['p99_ms']:.3f} ms")


def versions_table(model_group: str, versions: list) -> Table:
    table = Table(title=f"Model group {model_group}")
    for column in ("v", "status", "created (UTC)", "AUPR", "ΔAUPR vs champion, 90%",
                   "ECE", "PSI", "p99 ms", "run", "data", "code"):
        table.add_column(column, no_wrap=True)
    for v in versions:
        table.add_row(str(v.version), str(v.status), v.created_at[:19].replace("T", " "),
                      f"{v.metrics.get('aupr', float('nan')):.4f}",
                      champion_comparison_text(v, versions, compact=True),
                      f"{v.metrics.get('ece', float('nan')):.4f}",
                      f"{v.metrics.get('score_psi', float('nan')):.4f}",
                      f"{v.latency.get('p99_ms', float('nan')):.3f}",
                      v.training_run_id[:8] or "-",
                      v.lineage.get("data", {}).get("sha256", "")[:8],
                      v.lineage.get("code", {}).get("version", "").removeprefix("git:")[:12])
    if not versions:
        table.caption = "no versions yet: run `mlops pipeline run`"
    return table


def champion_comparison_text(version, versions: list, compact: bool = False) -> str:
    """AUPR gained against the champion of the time, on the candidate's test rows, with the
    paired interval (from the candidate's own evaluation): each version's AUPR alone is on its
    own test split and does not compare."""
    metrics = version.metrics
    compared = version.lineage.get("champion_compared", "")
    if not (compared or metrics.get("champion_compared")) or "aupr_regression" not in metrics:
        return "no champion then"
    champion = next((f"v{v.version}" for v in versions if v.model_uri == compared), "champion")
    gained = -metrics["aupr_regression"]
    if compact:
        text = f"{gained:+.3f} vs {champion}"
    else:
        of = f" ({metrics['champion_aupr']:.4f})" if "champion_aupr" in metrics else ""
        text = f"{gained:+.4f} vs {champion}{of}, 90%"
    if "aupr_regression_lower" in metrics and "aupr_regression_upper" in metrics:
        digits = 3 if compact else 4
        text += (f" [{-metrics['aupr_regression_upper']:+.{digits}f}, "
                 f"{-metrics['aupr_regression_lower']:+.{digits}f}]")
    return text


def version_detail(version, transitions: list, versions: list | None = None) -> Table:
    table = Table(title=f"{version.model_group} version {version.version}", show_header=False)
    table.add_column("field")
    table.add_column("value", overflow="fold")
    for key, value in version.to_dict().items():
        if key == "gates" and isinstance(value, list):
            table.add_row(key, _gates_table(value))
            continue
        if key in ("metrics", "latency") and isinstance(value, dict):
            table.add_row(key, "\n".join(f"{k}: {v:.6g}" if isinstance(v, (int, float))
                                         else f"{k}: {v}" for k, v in sorted(value.items())))
            continue
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, indent=1)
        table.add_row(key, str(text))
    table.add_row("AUPR vs champion", champion_comparison_text(version, versions or [version]))
    table.add_row("audit trail", "\n".join(
        f"{t.at} {t.from_status or '(new)'} → {t.to_status} by {t.actor}: {t.reason}"
        for t in transitions))
    return table


def _gates_table(gates: list) -> Table:
    table = Table(show_edge=False, pad_edge=False)
    for column in ("gate", "value", "needs", "verdict", "margin"):
        table.add_column(column, no_wrap=True)
    for gate in gates:
        def number(key):
            value = gate.get(key)
            return f"{value:.5g}" if isinstance(value, (int, float)) else str(value or "")
        table.add_row(str(gate.get("gate", "")), number("value"),
                      f"{gate.get('comparison', '')} {number('threshold')}".strip(),
                      "[green]pass[/]" if gate.get("passed") else "[bold red]FAIL[/]",
                      f"{gate['margin']:+.4g}" if isinstance(gate.get("margin"), (int, float))
                      else "")
    return table


def deployment_outcome(outcome) -> str:
    if outcome.action == "deployed":
        lineup = ", ".join(f"v{v.version}={v.weight:g}" for v in outcome.variants)
        return f"[bold green]deployed[/]: {lineup} (attempts: {outcome.attempts})"
    return f"deployment {outcome.action}: {outcome.reason}"


def status_panel(report: dict[str, Any]):
    """The endpoint's variants, then the story: alarms, last rollback, cooldown, next step."""
    from rich.console import Group
    from rich.text import Text

    table = Table(title=f"Endpoint {report['endpoint']}: {report['status']}"
                        + (f" (config {report['config_name']})" if report["config_name"] else ""))
    for column in ("variant", "version", "weight", "instances", "approval", "AUPR", "role"):
        table.add_column(column, no_wrap=True)
    for v in report["variants"]:
        role = ("champion" if v["version"] == report["champion"] else
                "warm fallback" if v["version"] in report.get("lineup", ()) else
                "warm, not a fallback (rolled back or rejected)")
        aupr = f"{v['aupr']:.4f}" if v["aupr"] is not None else "-"
        table.add_row(v["variant_name"], str(v["version"]), f"{v['weight']:g}",
                      str(v["instance_count"]), v["approval_status"], aupr, role)
    if report["exists"] and report["champion_since"]:
        table.caption = f"champion v{report['champion']} since {report['champion_since']}"
    lines: list[Text] = []
    alarms = report.get("alarms") or []
    if alarms:
        prefix = f"{report['endpoint']}-"
        by_state: dict[str, list[str]] = {}
        for alarm in alarms:
            by_state.setdefault(alarm["state"], []).append(alarm["name"].removeprefix(prefix))
        order = ("ALARM", "MISSING", "INSUFFICIENT_DATA", "OK")
        parts = [f"{state} {', '.join(by_state[state])}"
                 for state in sorted(by_state, key=lambda s: order.index(s) if s in order else 9)]
        lines.append(Text.assemble(("alarms  ", "bold"), " · ".join(parts)))
    rollback = report.get("last_rollback")
    if rollback:
        how = f"by alarm {rollback['alarm']}" if rollback["automatic"] else \
            f"by {rollback['actor']}"
        lines.append(Text.assemble(
            ("last rollback  ", "bold"), f"{rollback['at']}: v{rollback['from_version']} → "
            f"v{rollback['to_version']} {how}: {rollback['reason']}"))
    cooldown = report.get("cooldown")
    if cooldown:
        lines.append(Text.assemble(("cooldown  ", "bold"), (
            f"active until {cooldown['until']}" if cooldown["active"]
            else f"over since {cooldown['until']}")))
    for step in report.get("next_steps") or []:
        lines.append(Text.assemble(("next  ", "bold yellow"), step))
    return Group(table, *lines)


def lineage_tree(walk: dict[str, Any]):
    from rich.tree import Tree

    tree = Tree(f"[bold]{walk['model_group']} version {walk['version']}[/]")
    data = tree.add("data")
    for key in ("uri", "sha256", "rows"):
        if key in walk["data"]:
            data.add(f"{key}: {walk['data'][key]}")
    code = tree.add(f"code: {walk['code'].get('version', '?')}")
    for name, digest in sorted(walk["code"].get("step_scripts", {}).items()):
        code.add(f"{name}: {digest[:12]}")
    run = tree.add(f"run: {walk['run']['training_run_id'] or '-'} "
                   f"(pipeline {walk['run']['pipeline_run'] or '-'})")
    run.add("parameters: " + ", ".join(f"{k}={v}" for k, v in walk["run"]["parameters"].items()))
    model = tree.add(f"version: {walk['model']['status']}, model {walk['model']['sha256'][:12]}")
    for t in walk["model"]["transitions"]:
        model.add(f"{t['at']} {t['from_status'] or '(new)'} → {t['to_status']} by {t['actor']}: "
                  f"{t['reason']}")
    deployments = tree.add(f"deployments: {len(walk['deployments'])}")
    for d in walk["deployments"]:
        deployments.add(f"{d['at']} {d['endpoint']} {d['kind']}: {d['role']} at weight "
                        f"{d['weight']:g} ({d['reason']})")
    return tree


def drift_table(report: dict[str, Any]) -> Table:
    table = Table(title=f"Drift: {report['current']['rows']:,} rows against "
                        f"{report['reference']['rows']:,} ({report['seconds']:.2f} s)")
    for column in ("feature", "kind", "PSI", "KS", "level"):
        table.add_column(column, no_wrap=True)
    for name, m in sorted(report["features"].items(), key=lambda kv: -kv[1]["psi"]):
        ks = f"{m['ks']:.4f}" if m.get("ks") is not None else "-"
        table.add_row(name, m["kind"], f"{m['psi']:.4f}", ks, m["level"])
    notes = []
    if report.get("score_psi") is not None:
        notes.append(f"score PSI {report['score_psi']:.4f}")
    left_out = (report.get("skipped_label", []) + report.get("skipped_ids", [])
                + report.get("skipped_identifiers", []))
    if left_out:
        notes.append(f"not features: {', '.join(left_out)}")
    if notes:
        table.caption = "; ".join(notes)
    return table


def demo_summary(result) -> Table:
    table = Table(title="Lifecycle demo: what happened when")
    table.add_column("t (s)", justify="right", no_wrap=True)
    table.add_column("event", no_wrap=True)
    table.add_column("detail")
    for at, what, detail in result.timeline.events:
        table.add_row(f"{at:.1f}", what, detail)

    def seconds(value):
        return "-" if value is None else f"{value:.3f} s"

    table.caption = (f"detection (drift → alarm): {seconds(result.detection_seconds)}; "
                     f"alarm → weights written: {seconds(result.alarm_to_flip_seconds)}; "
                     f"alarm → first request on v1: {seconds(result.alarm_to_traffic_seconds)}; "
                     f"{len(result.traffic.rows):,} requests, {result.failed_requests} failed; "
                     f"picture: {result.picture}")
    return table


def fleet_table(rows: list[dict[str, Any]]) -> Table:
    """`mlops status --all`: every model in every environment it deploys to."""
    table = Table(title="Fleet", title_justify="left")
    for column in ("model", "env", "champion", "since", "warm", "health", "last alarm"):
        table.add_column(column)
    for row in rows:
        alarm = row["last_alarm"]
        table.add_row(row["model"], row["environment"],
                      f"v{row['champion']}" if row["champion"] else "—",
                      (row["since"] or "")[:19].replace("T", " "),
                      ", ".join(f"v{v}" for v in row["warm"]) or "—",
                      _health(row["health"]),
                      f"{alarm['name']} {alarm['state']} {alarm['since'][:19]}" if alarm else "—")
    return table


def _health(health: str) -> str:
    return f"[green]{health}[/]" if health == "ok" else f"[bold red]{health}[/]"
