"""The vocabulary of `mlops_kit.contract`: an environment variable, an access (actions on a
named resource), a code path, a metric, and a function's contract built of them (its
environment rendered for the CDK app, parsed into typed settings for the handler).

Standard library only: infra imports it, and every Lambda bundle carries it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping


class SettingsError(Exception):
    """A function's environment is missing or malformed (the message names each variable)."""


class ContractError(ValueError):
    """The CDK app asked for an environment the contract does not allow."""


@dataclass(frozen=True)
class EnvVar:
    name: str
    field: str
    kind: type = str
    """str, int, or tuple (comma-separated names)."""
    required: bool = True
    default: Any = None
    doc: str = ""
    per_model: bool = False
    """In a fleet, the value differs per model: it comes from the routes file, not the
    function's environment (`mlops_kit.fleet.routes`)."""

    def parse(self, raw: str | None, problems: list[str]) -> Any:
        text = (raw or "").strip()
        if not text:
            if self.required:
                problems.append(f"{self.name} is required ({self.doc})" if self.doc
                                else f"{self.name} is required")
            return self.default
        if self.kind is int:
            try:
                return int(text)
            except ValueError:
                problems.append(f"{self.name} must be a whole number, got {text!r}")
                return self.default
        if self.kind is tuple:
            items = tuple(part.strip() for part in text.split(",") if part.strip())
            if len(set(items)) != len(items):
                problems.append(f"{self.name} names an item twice")
            return items
        return text

    def render(self, value: Any) -> str:
        if self.kind is tuple:
            return ",".join(value)
        if self.kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise ContractError(f"{self.name} must be a whole number, got {value!r}")
        return str(value)


@dataclass(frozen=True)
class Access:
    actions: tuple[str, ...]
    resource: str


@dataclass(frozen=True)
class CodePath:
    """One thing a function does, and what it calls to do it."""
    name: str
    access: tuple[Access, ...]
    doc: str = ""


@dataclass(frozen=True)
class Metric:
    namespace: str
    name: str
    dimensions: tuple[str, ...]


@dataclass(frozen=True)
class FunctionContract:
    name: str
    """The function's folder under functions/ (its handler is `<name>/handler.py`)."""
    service: str
    """Powertools service name (logs, traces, the MLOpsKit/Control `service` dimension)."""
    env: tuple[EnvVar, ...]
    paths: tuple[CodePath, ...]
    metrics: tuple[Metric, ...]
    settings_type: type

    def environment(self, **values: Any) -> dict[str, str]:
        """The Lambda environment for these settings (by field name; None = unset), for the
        CDK construct: an unknown setting or a required one left out is a ContractError."""
        known = {var.field for var in self.env}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ContractError(f"{self.name}: no such setting(s) {', '.join(unknown)}")
        env: dict[str, str] = {"POWERTOOLS_SERVICE_NAME": self.service}
        missing = []
        for var in self.env:
            value = values.get(var.field)
            if value is None or value == () or value == "":
                if var.required:
                    missing.append(var.name)
                continue
            env[var.name] = var.render(value)
        if missing:
            raise ContractError(f"{self.name}: required setting(s) not given: "
                                f"{', '.join(missing)}")
        return env

    def split(self, environment: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
        """A rendered environment as (the function's own, one model's route): the fleet's
        function carries the first, the routes file the second for each model."""
        per_model = {var.name for var in self.env if var.per_model}
        return ({k: v for k, v in environment.items() if k not in per_model},
                {k: v for k, v in environment.items() if k in per_model})

    def settings(self, environ: Mapping[str, str] | None = None) -> Any:
        """Parse the environment once into the function's typed settings."""
        env = os.environ if environ is None else environ
        problems: list[str] = []
        values = {var.field: var.parse(env.get(var.name), problems) for var in self.env}
        problems += self.settings_type(**values).problems()
        if problems:
            raise SettingsError(f"{self.name}: " + "; ".join(problems))
        return self.settings_type(**values)

    def grants(self) -> dict[str, tuple[str, ...]]:
        """resource → the actions some path of this function calls on it."""
        by_resource: dict[str, set[str]] = {}
        for path in self.paths:
            for access in path.access:
                by_resource.setdefault(access.resource, set()).update(access.actions)
        return {resource: tuple(sorted(actions)) for resource, actions in by_resource.items()}

    @property
    def actions(self) -> frozenset[str]:
        return frozenset(a for path in self.paths for access in path.access
                         for a in access.actions)
