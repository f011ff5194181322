"""The base of every typed declaration a person writes (cdk.json's stages, `models/*.toml`):
frozen, nothing unknown, no coercion, camelCase or snake_case keys as the file's format uses,
and errors that name the key as written (`studio.subnetIds[1]`) in words a config author reads.

Pydantic does the validation; this module only fixes the house rules and the error wording.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, model_validator
from pydantic.alias_generators import to_camel

PHRASES = {
    "bool_type": "must be true or false", "int_type": "must be a whole number",
    "float_type": "must be a number", "string_type": "must be a string",
    "list_type": "must be a list", "tuple_type": "must be a list",
    "model_type": "must be an object", "dict_type": "must be an object",
    "missing": "is required", "too_short": "must not be empty",
}
"""Pydantic's error types, said the way a config author reads them."""

NAME = re.compile(r"^[A-Za-z0-9](-*[A-Za-z0-9]){0,62}$")
"""A SageMaker resource name: 1-63 letters, digits or hyphens."""
_SCHEDULE = re.compile(r"^(rate\((1 (minute|hour|day)|([2-9]|[1-9]\d+) (minutes|hours|days))\)"
                       r"|cron\(\S+( \S+){5}\))$")
_DATA_KEY = re.compile(r"^[A-Za-z0-9!_.'()/-]+\.(csv|parquet)$")


class Declared(BaseModel):
    """Strict and frozen; a null value means "the default". Keys are snake_case (TOML)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _null_is_default(cls, data: Any) -> Any:
        return {k: v for k, v in data.items() if v is not None} if isinstance(data, dict) else data


class CamelDeclared(Declared):
    """As `Declared`, with cdk.json's camelCase keys onto snake_case attributes."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True,
                              alias_generator=to_camel)


def resource_name(value: str) -> str:
    if not NAME.match(value):
        raise ValueError("must be 1-63 letters, digits or hyphens")
    return value


def schedule_expression(value: str) -> str:
    """An EventBridge schedule: `rate(7 days)` or `cron(<6 fields>)`."""
    if not _SCHEDULE.match(value):
        raise ValueError("must be 'rate(<n> minutes|hours|days)' or 'cron(<6 fields>)' "
                         "(or null to disable)")
    return value


def data_key(value: str) -> str:
    """One object key of new training data in the artifact bucket (an S3 rule matches it)."""
    if not _DATA_KEY.match(value) or "//" in value or value.startswith("/"):
        raise ValueError("must be one object key ending in .csv or .parquet "
                         "(no wildcard, no leading slash)")
    if value.startswith(("pipeline-code/", "pipeline-runs/", "datasets/")):
        raise ValueError("must not be under pipeline-code/, pipeline-runs/ or datasets/ "
                         "(written by the pipeline and the deployment)")
    return value


def looks_like(pattern: str) -> AfterValidator:
    def check(value: str) -> str:
        if not re.fullmatch(pattern, value):
            raise ValueError(f"{value!r} does not look like {pattern}")
        return value
    return AfterValidator(check)


def at_least(low: int | float) -> AfterValidator:
    def check(value: int | float) -> int | float:
        if value < low:
            raise ValueError(f"must be at least {low}")
        return value
    return AfterValidator(check)


def between(low: int | float, high: int | float, why: str = "") -> AfterValidator:
    def check(value: int | float) -> int | float:
        if not low <= value <= high:
            raise ValueError(f"must be {low}..{high}{why}")
        return value
    return AfterValidator(check)


def one_of(*allowed: str) -> AfterValidator:
    def check(value: str) -> str:
        if value not in allowed:
            *others, last = [repr(a) for a in allowed]
            raise ValueError(f"must be {', '.join(others)} or {last}" if others
                             else f"must be {last}")
        return value
    return AfterValidator(check)


def key_path(loc: tuple[Any, ...]) -> str:
    """('studio', 'subnetIds', 1) -> 'studio.subnetIds[1]' (pydantic's loc, the file's names)."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path


def problem(error: Mapping[str, Any], prefix: tuple[Any, ...] = ()) -> str:
    """One pydantic error as a sentence naming its key (below `prefix`)."""
    key = key_path(prefix + tuple(error["loc"]))
    if error["type"] == "extra_forbidden":
        return f"unknown key(s) {key}"
    if error["type"] == "value_error":
        message = str(error["ctx"]["error"])
        return message if not key else f"{key} {message}" if message.startswith("must") \
            else f"{key}: {message}"
    return f"{key} {PHRASES.get(error['type'], error['msg'])}".strip()


def problems(exc: ValidationError, prefix: tuple[Any, ...] = ()) -> str:
    """Every error of one validation, joined: a config author fixes them in one go."""
    return "; ".join(problem(e, prefix) for e in exc.errors())
