"""CloudWatch alarm state changes in both shapes the rollback controller receives: the
EventBridge event ("CloudWatch Alarm State Change", `detail`) and the payload of an alarm's
direct Lambda action (`alarmData`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping

from aws_lambda_powertools.utilities.data_classes import CloudWatchAlarmEvent, EventBridgeEvent

from mlops_kit.core.timestamps import alarm_timestamp, iso_seconds, parse_iso
from mlops_kit.ports import InvalidEventError

ALARM_DETAIL_TYPE = "CloudWatch Alarm State Change"


@dataclass(frozen=True)
class AlarmTransition:
    alarm_name: str
    alarm_arn: str
    state: str
    previous_state: str
    reason: str
    reason_data: dict[str, Any]
    state_time: datetime
    namespace: str
    metric_name: str
    dimensions: dict[str, str]
    shape: str
    """eventbridge | lambda-action"""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def endpoint_name(self) -> str:
        return self.dimensions.get("EndpointName", "")

    @property
    def transition_key(self) -> str:
        """One alarm transition, whichever shape or delivery brought it."""
        return f"{self.alarm_name}/{self.state}/{self.state_time.isoformat()}"

    def evidence(self) -> dict[str, Any]:
        return {"alarm": self.alarm_name, "alarm_arn": self.alarm_arn, "state": self.state,
                "previous_state": self.previous_state, "reason": self.reason,
                "state_time": self.state_time.isoformat(), "metric": self.metric_name,
                "namespace": self.namespace, "dimensions": self.dimensions,
                "recent_datapoints": self.reason_data.get("recentDatapoints"),
                "threshold": self.reason_data.get("threshold")}


def _time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise InvalidEventError("alarm state has no timestamp")
    try:
        return parse_iso(value)
    except ValueError:
        raise InvalidEventError(f"alarm timestamp is not a time: {value!r}") from None


def _metric(configuration: Any) -> tuple[str, str, dict[str, str]]:
    entries = configuration.get("metrics") if isinstance(configuration, Mapping) else None
    for entry in entries if isinstance(entries, list) else []:
        stat = entry.get("metricStat") if isinstance(entry, Mapping) else None
        if isinstance(stat, Mapping) and isinstance(stat.get("metric"), Mapping):
            metric = stat["metric"]
            dimensions = metric.get("dimensions")
            dimensions = dimensions if isinstance(dimensions, Mapping) else {}
            return (str(metric.get("namespace", "")), str(metric.get("name", "")),
                    {str(k): str(v) for k, v in dimensions.items()})
    return "", "", {}


def parse_alarm_event(event: Mapping[str, Any]) -> AlarmTransition:
    if not isinstance(event, Mapping):
        raise InvalidEventError("event is not a JSON object")
    if "alarmData" in event:
        alarm = CloudWatchAlarmEvent(dict(event))
        data, arn, shape = event["alarmData"], alarm.get("alarmArn", ""), "lambda-action"
    elif event.get("detail-type") == ALARM_DETAIL_TYPE:
        wrapped = EventBridgeEvent(dict(event))
        data = wrapped.get("detail")
        resources = wrapped.get("resources")
        arn = resources[0] if isinstance(resources, list) and resources else ""
        shape = "eventbridge"
    else:
        raise InvalidEventError("not a CloudWatch alarm state change (no alarmData, "
                                f"detail-type={event.get('detail-type')!r})")
    name = data.get("alarmName") if isinstance(data, Mapping) else None
    if not name:
        raise InvalidEventError("alarm event has no alarm name")
    state = data.get("state") or {}
    previous = data.get("previousState") or {}
    if not isinstance(state, Mapping) or "value" not in state:
        raise InvalidEventError("alarm event has no state value")
    try:
        reason_data = json.loads(state.get("reasonData") or "{}")
    except (TypeError, ValueError, RecursionError):  # reasonData is only evidence
        reason_data = {}
    namespace, metric, dimensions = _metric(data.get("configuration"))
    return AlarmTransition(
        alarm_name=str(name), alarm_arn=str(arn), state=str(state["value"]),
        previous_state=str(previous.get("value", "")) if isinstance(previous, Mapping) else "",
        reason=str(state.get("reason", "")),
        reason_data=reason_data if isinstance(reason_data, dict) else {},
        state_time=_time(state.get("timestamp")), namespace=namespace, metric_name=metric,
        dimensions=dimensions, shape=shape)


def alarm_state_change_event(alarm_name: str, state: str, previous_state: str, *, reason: str,
                             namespace: str, metric: str, dimensions: Mapping[str, str],
                             statistic: str, period: int, threshold: float,
                             recent_datapoints: list[float], at: datetime,
                             description: str = "", region: str = "local",
                             account: str = "000000000000") -> dict[str, Any]:
    """The EventBridge event CloudWatch emits; the local evaluator emits the same."""
    stamp = alarm_timestamp(at)
    return {
        "version": "0", "id": f"{alarm_name}-{int(at.timestamp() * 1000)}",
        "detail-type": ALARM_DETAIL_TYPE, "source": "aws.cloudwatch", "account": account,
        "time": iso_seconds(at), "region": region,
        "resources": [f"arn:aws:cloudwatch:{region}:{account}:alarm:{alarm_name}"],
        "detail": {
            "alarmName": alarm_name,
            "state": {"value": state, "reason": reason, "timestamp": stamp,
                      "reasonData": json.dumps({"version": "1.0", "statistic": statistic,
                                                "period": period,
                                                "recentDatapoints": recent_datapoints,
                                                "threshold": threshold})},
            "previousState": {"value": previous_state, "reason": "", "timestamp": stamp},
            "configuration": {"description": description, "metrics": [{
                "id": "m1", "returnData": True,
                "metricStat": {"metric": {"namespace": namespace, "name": metric,
                                          "dimensions": dict(dimensions)},
                               "period": period, "stat": statistic}}]},
        },
    }
