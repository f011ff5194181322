"""Start the deployed SageMaker pipeline and follow its steps (`mlops pipeline start`)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from mlops_kit.aws.clients import LazyClient

IAM_ACTIONS = ("sagemaker:StartPipelineExecution", "sagemaker:DescribePipelineExecution",
               "sagemaker:ListPipelineExecutionSteps")
FINAL = frozenset({"Succeeded", "Failed", "Stopped"})
GATE_FAILURE_STEP = "FailQualityGates"


@dataclass
class ExecutionReport:
    arn: str
    status: str = "Executing"
    steps: dict[str, dict[str, str]] = field(default_factory=dict)
    failure_reason: str = ""

    @property
    def gate_failed(self) -> bool:
        return GATE_FAILURE_STEP in self.steps

    def to_dict(self) -> dict[str, Any]:
        return {"execution_arn": self.arn, "status": self.status, "steps": self.steps,
                "failure_reason": self.failure_reason, "gate_failed": self.gate_failed}


class PipelineExecutions:
    def __init__(self, pipeline_name: str, client: Any = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.pipeline_name = pipeline_name
        self._client = LazyClient("sagemaker", client)
        self.sleep = sleep

    def start(self, parameters: Mapping[str, Any], *, display_name: str = "") -> str:
        request: dict[str, Any] = {
            "PipelineName": self.pipeline_name,
            "PipelineParameters": [{"Name": k, "Value": str(v)}
                                   for k, v in sorted(parameters.items())],
            # Retrying the same call with this token starts one execution, not two.
            "ClientRequestToken": str(uuid.uuid4()),
        }
        if display_name:
            request["PipelineExecutionDisplayName"] = display_name[:82]
        return self._client().start_pipeline_execution(**request)["PipelineExecutionArn"]

    def poll(self, arn: str) -> ExecutionReport:
        client = self._client()
        described = client.describe_pipeline_execution(PipelineExecutionArn=arn)
        report = ExecutionReport(arn, described["PipelineExecutionStatus"],
                                 failure_reason=described.get("FailureReason", ""))
        pages = client.get_paginator("list_pipeline_execution_steps").paginate(
            PipelineExecutionArn=arn, SortOrder="Ascending")
        for page in pages:
            for step in page.get("PipelineExecutionSteps", []):
                report.steps[step["StepName"]] = {
                    "status": step.get("StepStatus", ""),
                    "failure_reason": step.get("FailureReason", "")}
        return report

    def follow(self, arn: str, *, on_change: Callable[[ExecutionReport], None] = lambda r: None,
               interval: float = 15.0, timeout: float = 6 * 3600) -> ExecutionReport:
        deadline = time.monotonic() + timeout
        seen: dict[str, Any] = {}
        while True:
            report = self.poll(arn)
            snapshot = (report.status, tuple(sorted((k, v["status"])
                                                    for k, v in report.steps.items())))
            if snapshot != seen.get("last"):
                seen["last"] = snapshot
                on_change(report)
            if report.status in FINAL or time.monotonic() > deadline:
                return report
            self.sleep(interval)
