"""The demo's picture (`lifecycle.png`): one time axis for the whole run, with the lifecycle's
phases, traffic per variant, the drift metrics with their alarms' thresholds, and the alarm
states; every event line labelled where it happened."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from mlops_kit.local.demo_records import Timeline, TrafficLog

DRAWN_ALARMS = ("feature-drift", "prediction-drift")
"""The alarms the demo's drift moves, drawn with their thresholds."""

PHASE_COLOURS = {"data": "#9e9e9e", "pipeline": "#5b8def", "promote": "#43a047",
                 "endpoint up": "#8e24aa"}
TRAFFIC_BUCKET_SECONDS = 0.5


def draw_lifecycle(path: Path, timeline: Timeline, traffic: TrafficLog,
                   points: Sequence[dict[str, Any]], endpoint: str = "") -> Path:
    """Draw the run into `path` (written whole: a reader never sees half a picture);
    `endpoint`: the one the live traffic went to."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mlops_kit.core.alarms import load_definitions

    thresholds = {d.id: d.threshold for d in load_definitions()}
    fig = plt.figure(figsize=(11, 10.5))
    grid = fig.add_gridspec(4, 1, height_ratios=[1.0, 2.2, 2.2, 1.3])
    lane = fig.add_subplot(grid[0])
    requests = fig.add_subplot(grid[1])
    drift = fig.add_subplot(grid[2], sharex=requests)
    alarms = fig.add_subplot(grid[3], sharex=requests)
    end = max([t for t, _, _ in timeline.events] + [t for t, _, _ in traffic.rows] + [1.0])
    live = timeline.at("live traffic") or 0.0

    _draw_phases(lane, timeline.events, live, end)
    _draw_traffic(requests, traffic.rows, endpoint)
    _draw_drift(drift, points, thresholds)
    _draw_alarm_states(alarms, points, live, end)
    _mark_events(timeline, (lane, requests, drift, alarms), labelled=requests)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
    return path


def _phases(events: Sequence[tuple[float, str, str]]) -> list[tuple[float, float, str, str]]:
    """(start, end, kind, label) of each phase: a step's mark is its end, so a phase runs from
    the previous mark; consecutive steps of one kind (a version's promotions through the
    environments, a fraction of a second each) are one phase, labelled by its last step."""
    phases: list[tuple[float, float, str, str]] = []
    previous = 0.0
    for at, what, _ in events:
        kind = next((k for k in PHASE_COLOURS if what.startswith(k)), None)
        if kind is not None:
            if phases and phases[-1][2] == kind == "promote" and phases[-1][1] == previous:
                previous = phases.pop()[0]
            phases.append((previous, at, kind, what))
        if what in ("data", "serving") or kind is not None:
            previous = at
    return phases


def _draw_phases(lane, events: Sequence[tuple[float, str, str]], live: float,
                 end: float) -> None:
    for start, stop, kind, label in _phases(events):
        lane.broken_barh([(start, max(stop - start, 0.05))], (0.1, 0.8),
                         color=PHASE_COLOURS[kind])
        lane.text(start + (stop - start) / 2, 0.5, label, ha="center", va="center",
                  fontsize=7, color="white" if stop - start > 3 else "black",
                  rotation=0 if stop - start > 6 else 90)
    lane.broken_barh([(live, end - live)], (0.1, 0.8), color="#ffb74d")
    lane.text(live + (end - live) / 2, 0.5, "live", ha="center", va="center", fontsize=7)
    lane.set(yticks=[], ylim=(0, 1), xlim=(0, end * 1.01),
             xlabel="seconds since the demo started",
             title="The whole run: each phase ends at its mark (the live part, orange, is "
                   "drawn below at full scale)")


def _draw_traffic(requests, rows: Sequence[tuple[float, str, bool]], endpoint: str) -> None:
    # Traffic in whole buckets only: a last, partial bucket would show a false dip.
    width = TRAFFIC_BUCKET_SECONDS
    if rows:
        start = min(t for t, _, _ in rows)
        buckets = int((max(t for t, _, _ in rows) - start) / width)
        edges = [start + i * width for i in range(buckets + 1)]
        for variant in sorted({v for _, v, _ in rows if v}):
            counts = [0] * buckets
            for t, v, ok in rows:
                index = int((t - start) / width)
                if v == variant and ok and index < buckets:
                    counts[index] += 1
            requests.stairs([c / width for c in counts], edges, baseline=None,
                            label=f"{variant} answered",
                            linewidth=1.5)
    requests.set(ylabel="requests/s", title=f"Traffic per variant ({endpoint or 'local'} "
                                            f"endpoint, {width:g} s buckets)")
    requests.legend(loc="center left", fontsize=8, framealpha=0.9)


def _draw_drift(drift, points: Sequence[dict[str, Any]], thresholds: dict[str, float]) -> None:
    times = [p["at"] for p in points]
    drift.plot(times, [p["feature_psi_max"] for p in points], marker="o",
               color="tab:blue", label="FeaturePSIMax (feature-drift)")
    drift.plot(times, [p["prediction_psi"] for p in points], marker=".",
               color="tab:green", label="PredictionPSI (prediction-drift)")
    drift.axhline(thresholds["feature-drift"], color="tab:blue", linestyle="--",
                  linewidth=1, label=f"feature-drift threshold {thresholds['feature-drift']:g}")
    drift.axhline(thresholds["prediction-drift"], color="tab:green", linestyle="--",
                  linewidth=1,
                  label=f"prediction-drift threshold {thresholds['prediction-drift']:g}")
    drift.set(ylabel="PSI", title="Drift of the champion's traffic (one point per monitor "
                                  "tick)")
    drift.legend(loc="upper left", fontsize=8, framealpha=0.9)


def _draw_alarm_states(alarms, points: Sequence[dict[str, Any]], live: float,
                       end: float) -> None:
    times = [p["at"] for p in points]
    for offset, (alarm, colour) in enumerate(zip(DRAWN_ALARMS, ("tab:blue", "tab:green"))):
        level = [offset * 1.5 + (1 if p["alarms"][alarm] == "ALARM" else 0) for p in points]
        # A state holds until the next evaluation: the last one holds to the end.
        alarms.step(times + [end], level + level[-1:], where="post", color=colour,
                    label=alarm)
    alarms.set(yticks=[0, 1, 1.5, 2.5],
               yticklabels=["OK", "ALARM", "OK", "ALARM"], ylim=(-0.3, 2.8),
               title="Alarm states (feature-drift below, prediction-drift above)",
               xlabel="seconds since the demo started (live part)",
               xlim=(live - 0.5, end + 0.5))
    alarms.legend(loc="center left", fontsize=8, framealpha=0.9)


def _mark_events(timeline: Timeline, panels: Sequence, labelled) -> None:
    """A dotted line through every panel at the drift, the alarm and the rollback, labelled
    on the `labelled` panel."""
    marks = [(timeline.at("drift starts"), "drift starts", "orange"),
             (timeline.at("alarm"), "alarm", "red"),
             (timeline.at("automatic rollback"), "rollback (weights written)", "black")]
    for at, label, colour in marks:
        if at is None:
            continue
        for ax in panels:
            ax.axvline(at, color=colour, linestyle=":", linewidth=1)
        side = "right" if label == "alarm" else "left"
        labelled.annotate(label, (at, 1.0), xycoords=("data", "axes fraction"),
                          xytext=(-3 if side == "right" else 3, -4),
                          textcoords="offset points", rotation=90, ha=side, va="top",
                          fontsize=8, color=colour)
