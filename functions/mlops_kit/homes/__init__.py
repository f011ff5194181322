"""One composition module per home: `homes.aws` (SageMaker, DynamoDB, CloudWatch, SNS) and
`homes.local` ($MLOPS_HOME). The Lambda handlers, `mlops ... --backend aws|local` and the demo
build their controllers here and nowhere else, so a command and the Lambda it mirrors are the
same objects with the same settings."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable

from mlops_kit.endpoints import EndpointAdapter
from mlops_kit.registry.base import ModelRegistry, ModelVersion


class BackendError(Exception):
    """A home cannot be opened as configured (the message says what to set)."""


@dataclass
class Backend:
    """What the CLI's registry, status and traffic commands act on, in one home."""
    name: str
    registry: ModelRegistry
    endpoints: EndpointAdapter
    endpoint_name: str
    actor: str
    emit_status_change: Callable[[ModelVersion, str], list[Any]]
    rollback_controller: Callable[[], Any]
    serialized: Callable[[], Any] = contextlib.nullcontext
    """Held while changing traffic by hand: locally the event lock the controllers take, so a
    manual shift cannot interleave with an alarm-driven one (in AWS the rollback claim in the
    ledger and the cooldown guard the automatic path)."""
    alarm_states: Callable[[str], list[dict[str, Any]]] = lambda endpoint: []
    """The kit's alarms of an endpoint: name, state, since, whether it rolls back."""
    cooldown: timedelta | None = None
    """The rollback controller's cooldown after a rollback."""
    manual_shift: Callable[..., Any] | None = None
    """(kind, endpoint, to_version, actor=, reason=) → the outcome, made durable first (the
    local outbox); None: the CLI calls the rollback controller directly (AWS)."""
    resend_status_change: Callable[[ModelVersion], list[Any]] | None = None
    """Re-approving an approved version: deliver its approval again if it never deployed
    (None where the home cannot lose one: SageMaker emits the event with the change)."""
