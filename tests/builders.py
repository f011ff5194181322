"""What many tests build: registrations, alarm events raised now, Lambda handlers loaded through
their real module wiring, and filesystems that fill up. One place each, so a change to the
registration record or the alarm event shape is made once.

Importable as `builders` from every test (pytest puts tests/ on sys.path: it has no __init__).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
EVENTS = Path(__file__).parent / "fixtures" / "events"
ALARM_FIXTURES = {
    "feature-drift": "cloudwatch-alarm-state-change.eventbridge.json",
    "prediction-drift": "cloudwatch-alarm.lambda-action.json",
}
"""An alarm of the kit's in each shape CloudWatch delivers it: an EventBridge state change and
a Lambda alarm action."""


# -- registrations --------------------------------------------------------------------------------


def registration(run: int | str = 1, *, group: str = "fraud-detector",
                 artifact: str | None = None, **fields: Any):
    """A registration request as the pipeline makes one, gates passed; `fields` override."""
    from mlops_kit.registry.base import RegistrationRequest

    run_id = run if isinstance(run, str) else f"run-{run}"
    values: dict[str, Any] = dict(
        model_group=group, model_artifact=artifact or f"s3://a/{run_id}/model.tar.gz",
        training_run_id=run_id, metrics={"aupr": 0.6}, latency={},
        gates=[{"gate": "min_aupr", "passed": True}],
        lineage={"data": {}, "code": {}, "parameters": {}, "libraries": {}},
        owner="alice", use_case="fraud")
    values.update(fields)
    return RegistrationRequest(**values)


# -- alarm events ---------------------------------------------------------------------------------


def alarm_time(at: datetime | None = None) -> str:
    """A moment as CloudWatch writes an alarm's state timestamp (milliseconds, +0000)."""
    from mlops_kit.core.timestamps import alarm_timestamp

    return alarm_timestamp(at or datetime.now(timezone.utc))


def raised_now(event: dict) -> dict:
    """The alarm raised now: an alarm is raised against what serves when it fires, so its state
    time must come after the promotions the test made (the fixtures' 2026-11-20 time predates
    every record of a fresh history, and the rollback controller refuses an alarm older than
    the champion it would roll back: core/rollback_policy.py `superseded_reason`)."""
    data = event["detail"] if "detail" in event else event["alarmData"]
    data["state"]["timestamp"] = alarm_time()
    return event


def alarm_event(name: str = "feature-drift", *, state_time: str | None = None) -> dict:
    """A kit-owned alarm going OK → ALARM, from the recorded fixture of its shape, raised now
    unless `state_time` says when (the EventBridge envelope's time follows it)."""
    event = json.loads((EVENTS / ALARM_FIXTURES[name]).read_text())
    if state_time is None:
        return raised_now(event)
    data = event["detail"] if "detail" in event else event["alarmData"]
    data["state"]["timestamp"] = state_time
    if "detail" in event:
        event["time"] = state_time[:19] + "Z"
    return event


def probes_healthy(cloudwatch, endpoint: str, variants=("v1", "v2")) -> None:
    """The probe's last run found these variants of `endpoint` healthy (ProbeSuccess 1 now, as
    the probe Lambda publishes it): the rollback controller may pick them."""
    from mlops_kit.contract import MONITORING_NAMESPACE

    for variant in variants:
        cloudwatch.put_metric_data(Namespace=MONITORING_NAMESPACE, MetricData=[{
            "MetricName": "ProbeSuccess", "Value": 1.0, "Timestamp": datetime.now(timezone.utc),
            "Dimensions": [{"Name": "EndpointName", "Value": endpoint},
                           {"Name": "VariantName", "Value": variant}]}])


def deliver_together(rollback, endpoints, events: dict[str, dict]) -> tuple[dict, list]:
    """Hand each alarm event to `rollback.handle_event` on its own thread, holding the threads
    at a barrier right after each one's second endpoint describe (the first decides, the second
    is the pre-shift check) and releasing them together: both have seen the traffic unmoved.
    Returns the outcomes by event name and whatever escaped."""
    import threading

    both_decided = threading.Barrier(len(events), timeout=30)
    describes = threading.local()
    real_describe = endpoints.describe

    def describe(name):
        view = real_describe(name)
        describes.n = getattr(describes, "n", 0) + 1
        if describes.n == 2:
            both_decided.wait()
        return view

    outcomes, errors = {}, []

    def deliver(name):
        try:
            outcomes[name] = rollback.handle_event(events[name])
        except Exception as exc:  # the callers assert nothing escapes
            errors.append(exc)

    endpoints.describe = describe
    try:
        threads = [threading.Thread(target=deliver, args=(name,)) for name in events]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        endpoints.describe = real_describe
    return outcomes, errors


class Sleeps(list):
    """An injectable sleep that records the delays instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


# -- Lambda handlers --------------------------------------------------------------------------------


def load_handler(function: str, monkeypatch: pytest.MonkeyPatch, *, alias: str | None = None):
    """functions/<function>/handler.py imported afresh under its own module name, as the Lambda
    runtime imports it: its module-level wiring (clients, settings from the environment the
    test set) runs for real. Removed from sys.modules when the test ends."""
    name = alias or f"{function}_under_test"
    _point_powertools_loggers_at_stdout()
    spec = importlib.util.spec_from_file_location(
        name, ROOT / "functions" / function / "handler.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


class _CurrentStdout:
    """Whatever sys.stdout is when a line is written (pytest swaps it per test)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def _point_powertools_loggers_at_stdout() -> None:
    """A Lambda process's Powertools loggers write to its stdout. Powertools configures a
    service's logger once per process, its handler bound to the sys.stdout of that moment, so
    a handler loaded again in a later test would log into an earlier test's stdout: each
    configured logger's handlers write to the stdout of the moment instead."""
    import logging

    from aws_lambda_powertools.logging.logger import LOGGER_ATTRIBUTE_PRECONFIGURED

    for logger in list(logging.root.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger) and getattr(
                logger, LOGGER_ATTRIBUTE_PRECONFIGURED, False):
            for handler in logger.handlers:
                if isinstance(handler, logging.StreamHandler) and not isinstance(
                        handler.stream, _CurrentStdout):
                    # not setStream: it flushes the old stream, which may be closed by now
                    handler.stream = _CurrentStdout()


# -- drift baselines -----------------------------------------------------------------------------


def baseline_documents(seed: int = 0):
    """A model version's drift baselines as training writes them (the features' and the
    scores'), and the amounts the feature baseline was built from."""
    import numpy as np

    from mlops_kit.core import drift

    rng = np.random.default_rng(seed)
    amounts = rng.lognormal(3, 1, 5000)
    baseline = {"features": {"amount": drift.numeric_baseline(amounts, 10),
                             "channel": drift.categorical_baseline(["pos"] * 70 + ["online"] * 30)},
                "schema": {"numeric": ["amount"], "categorical": ["channel"], "target": "y"}}
    evaluation = {"score_baseline": drift.numeric_baseline(rng.beta(1, 20, 5000), 10)}
    return baseline, evaluation, amounts


# -- full and read-only filesystems ------------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "256k"):
    """A small tmpfs at `path` (root only); skipped where mounting is not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}): the test needs a real "
                    f"full or read-only filesystem")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(folder: Path) -> Path:
    """Fill the filesystem of `folder` to the last byte; returns the filler file."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (1 << 16, 4096, 1):
            while True:
                try:
                    os.write(fd, b"x" * size)
                except OSError:
                    break
    finally:
        os.close(fd)
    return filler


# -- moto -----------------------------------------------------------------------------------------


def moto_update_endpoint(self):
    """moto lacks UpdateEndpoint: apply the new config as SageMaker does once the update has
    completed (same authorisation path as every other moto action)."""
    from moto.core.responses import ActionResult
    from moto.sagemaker.exceptions import ValidationError

    backend = self.sagemaker_backend
    name = self._get_param("EndpointName")
    if name not in backend.endpoints:
        raise ValidationError(message=f"Could not find endpoint '{name}'.")
    endpoint = backend.endpoints[name]
    config = backend.describe_endpoint_config(self._get_param("EndpointConfigName"))
    endpoint.endpoint_config_name = config["EndpointConfigName"]
    endpoint.production_variants = endpoint._process_production_variants(
        config["ProductionVariants"])
    endpoint.data_capture_config = config.get("DataCaptureConfig")
    return ActionResult({"EndpointArn": endpoint.arn})
