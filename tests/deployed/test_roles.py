"""Every function's real paths, run as a principal whose policy is exactly that function's role
policy from the template, with moto enforcing IAM; then every recorded call's resource ARN
checked against the role's statements, and every granted action shown used (or listed here or
in the contract with its reason)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from mlops_kit import contract
from mlops_kit.monitoring.probe import baseline_rows

from .scenario import Scenario, baseline_documents, capture_line, now_minute
from .test_event_rules import alarm_event
from .twin import allowed, arn_format_known, authorisations

_CONFIG_COUNTS = ("SageMakerEndpoints._config_counts reads instance counts from the config "
                  "when DescribeEndpoint omits them for a variant (moto never does)")
_IDEMPOTENCY_RELEASE = ("Powertools deletes its idempotency record when the handler raises "
                        "(test_failure_destinations.py runs that path)")
NOT_EXERCISED = {
    "deployment_controller": {
        "sagemaker:UpdateEndpointWeightsAndCapacities":
            "re-deploying the config the endpoint already runs only restores its weights "
            "(tests/aws/test_sagemaker_endpoint.py covers it against moto)",
        "dynamodb:DeleteItem": _IDEMPOTENCY_RELEASE,
        "sagemaker:DescribeEndpointConfig": _CONFIG_COUNTS,
    },
    "rollback_controller": {
        "dynamodb:DeleteItem": _IDEMPOTENCY_RELEASE,
        "sagemaker:DescribeEndpointConfig": _CONFIG_COUNTS,
        "dynamodb:GetItem": "reading one version's ledger record (a roll-forward target, a "
                            "record healed after a lost write: tests/aws/test_fault_injection.py)",
        "sagemaker:DescribeModelPackage": "the same, from SageMaker when the ledger lacks it",
    },
    "drift_monitor": {
        "sagemaker:DescribeEndpointConfig": _CONFIG_COUNTS,
        "dynamodb:Query": "listing versions from the ledger (registry reads other than the "
                          "champion's package ARN)",
    },
    "probe": {
        "sagemaker:DescribeEndpointConfig": _CONFIG_COUNTS,
        "dynamodb:Query": "listing versions from the ledger (registry reads other than the "
                          "champion's package ARN)",
    },
}
"""Granted actions a single healthy lifecycle does not call, each with the test that does."""


def lifecycle(sc: Scenario) -> dict:
    """Register, deploy v1 then v2, probe, monitor drift, roll back, score a stream."""
    sc.register(2)
    at = now_minute()
    results = {}
    results["deploy v1"] = sc.run("deployment_controller", sc.approve(1))
    results["deploy v2"] = sc.run("deployment_controller", sc.approve(2))
    baseline, _, amounts = baseline_documents()
    schema = baseline["schema"]
    sc.endpoint_answers(baseline_rows(baseline["features"], schema["numeric"]
                                      + schema["categorical"]))
    results["probe"] = sc.probe_run(at)
    drifted = [capture_line(a * 3, "online", 0.4, at - timedelta(minutes=4))
               for a in amounts[:400]]
    sc.capture("v2", drifted, at - timedelta(minutes=3), "drifted")
    sc.sagemaker_metrics("v2", at - timedelta(minutes=15), 15, errors=0, latency_us=4000)
    results["drift"] = sc.drift_run(at)
    alarm = alarm_event(f"{sc.endpoint}-feature-drift")
    alarm["time"] = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    # The alarm fires once the drift run's datapoint is evaluated, after the promotions above
    # (`at` is the start of the minute they ran in): raised now.
    alarm["detail"]["state"]["timestamp"] = datetime.now(timezone.utc).isoformat()
    results["rollback"] = sc.run("rollback_controller", alarm)
    if "stream_scorer" in sc.stage.functions:
        sc.endpoint_answers("x", count=5)
        records = [f"{a:.2f},pos" for a in amounts[:3]]
        results["stream"] = sc.run("stream_scorer", sc.kinesis_batch(records))
    return results


def audit(sc: Scenario) -> dict[str, list[str]]:
    problems: dict[str, list[str]] = {}
    calls = sc.world["recorder"].calls
    for name, fn in sc.stage.functions.items():
        keys = sc.keys.get(name, set())
        mine = [c for c in calls if c.access_key in keys]
        found = problems.setdefault(name, [])
        if not mine:
            found.append("never ran")
        used: set[str] = set()
        for call in mine:
            if call.error in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation",
                              "InvalidClientTokenId"):
                found.append(f"{call.service}:{call.operation} denied by moto ({call.error})")
            for action, resource in authorisations(call):
                used.add(action)
                if resource != "*" and not arn_format_known(action, resource):
                    found.append(f"{action} on {resource}: not an ARN format AWS's "
                                 f"authorization data lists for this action")
                if not allowed(fn.statements, action, resource):
                    found.append(f"{action} on {resource} is not granted")
        granted = {a for s in fn.statements for a in
                   (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])}
        reasons = (set(contract.PLATFORM_ACTIONS) | set(contract.EVENT_SOURCE_ACTIONS)
                   | set(NOT_EXERCISED.get(name, {})))
        for action in sorted(granted - used - reasons):
            found.append(f"{action} is granted but no path called it")
        undeclared = used - set(contract.function(name).actions)
        for action in sorted(undeclared):
            found.append(f"{action} is called but not in the contract")
    return {name: found for name, found in problems.items() if found}


def test_every_path_runs_under_exactly_its_role(world, monkeypatch, capsys):
    sc = Scenario(world, monkeypatch, capsys)
    results = lifecycle(sc)
    assert results["deploy v1"]["action"] == "deployed"
    assert results["deploy v2"]["action"] == "deployed"
    assert results["probe"]["status"] == "probed"
    assert all(v["ok"] for v in results["probe"]["variants"].values()), results["probe"]
    assert results["drift"]["status"] == "published"
    assert results["rollback"]["action"] == "rolled_back", results["rollback"]
    if "stream" in results:
        assert results["stream"]["batchItemFailures"] == []
    problems = audit(sc)
    assert problems == {}


def test_a_call_outside_the_role_is_caught(world, monkeypatch, capsys):
    """The audit is not vacuous: a role without one statement fails it."""
    sc = Scenario(world, monkeypatch, capsys)
    fn = sc.stage.functions["rollback_controller"]
    fn_statements = fn.statements
    try:
        fn.statements = [s for s in fn_statements if "sns:Publish" not in str(s["Action"])]
        lifecycle(sc)
        assert any("sns:Publish" in p for p in audit(sc).get("rollback_controller", []))
    finally:
        fn.statements = fn_statements
