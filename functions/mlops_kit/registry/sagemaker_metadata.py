"""The CustomerMetadataProperties codec of a SageMaker model package: a flattened summary of
a version (owner, use case, training run, metrics, gates, latency and lineage) under `mlops:`
keys, written at registration and read back from packages the kit did not register (the
pipeline's RegisterModel step uses the same prefix).

Limits (botocore's model): at most 50 entries, keys 1-128 and values 1-256 characters, both
only letters, numbers, spaces and `_ . : / = + - @`. Registration writes at most
`REGISTER_METADATA_LIMIT` entries, most important first (owner, run, status, metrics, gates,
latency, then lineage breadth-first), and skips what does not fit or uses other characters;
`mlops:omitted` counts what was skipped. The ledger always has the whole record.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any, Mapping

from .base import RegistrationRequest

MAX_METADATA_ENTRIES = 50
MAX_METADATA_KEY = 128
MAX_METADATA_VALUE = 256
RESERVED_METADATA_ENTRIES = 6
"""Left free at registration for later writes (deployment write-back, annotations)."""
REGISTER_METADATA_LIMIT = MAX_METADATA_ENTRIES - RESERVED_METADATA_ENTRIES
PREFIX = "mlops:"
KEY_OWNER = PREFIX + "owner"
KEY_USE_CASE = PREFIX + "use_case"
KEY_RUN = PREFIX + "training_run_id"
KEY_CHANGED_BY = PREFIX + "status_changed_by"
KEY_CHANGED_AT = PREFIX + "status_changed_at"
KEY_RECORD_STORE = PREFIX + "record_store"
KEY_OMITTED = PREFIX + "omitted"
KEY_ARCHIVED_AT = PREFIX + "archived_at"
_SUMMARY_KEYS = frozenset({KEY_OWNER, KEY_USE_CASE, KEY_RUN, KEY_CHANGED_BY, KEY_CHANGED_AT,
                           KEY_RECORD_STORE, KEY_OMITTED, KEY_ARCHIVED_AT})
METRIC, LATENCY, GATE, LINEAGE = (PREFIX + "metric:", PREFIX + "latency:", PREFIX + "gate:",
                                  PREFIX + "lineage:")
_ALLOWED_PUNCTUATION = set("_.:/=+-@")


def metadata_safe(text: str, limit: int) -> bool:
    """True when SageMaker accepts `text` as a CustomerMetadataProperties key or value."""
    if not 1 <= len(text) <= limit:
        return False
    return all(unicodedata.category(c)[0] in "LZN" or c in _ALLOWED_PUNCTUATION for c in text)


def metadata_clean(text: str, limit: int = MAX_METADATA_VALUE) -> str:
    """Replace what the metadata character set refuses with '_' (for names and actors)."""
    cleaned = "".join(c if unicodedata.category(c)[0] in "LZN" or c in _ALLOWED_PUNCTUATION
                      else "_" for c in str(text))
    return cleaned[:limit] or "_"


def _scalar(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list, tuple)):
        return None
    if isinstance(value, (bool, int, float)):
        return json.dumps(value)
    return str(value)


def _flatten_breadth_first(tree: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """(dotted path, scalar) pairs, shallow ones first: the top of the lineage fits first."""
    out: list[tuple[str, Any]] = []
    level: list[tuple[str, Any]] = [(str(k), v) for k, v in tree.items()]
    while level:
        deeper: list[tuple[str, Any]] = []
        for path, value in level:
            if isinstance(value, Mapping):
                deeper.extend((f"{path}.{k}", v) for k, v in value.items())
            else:
                out.append((path, value))
        level = deeper
    return out


def customer_metadata(request: RegistrationRequest, *, registered_at: str,
                      record_store: str) -> dict[str, str]:
    """The registration summary that fits SageMaker's limits, most important entries first."""
    fixed = [(KEY_OWNER, request.owner), (KEY_USE_CASE, request.use_case),
             (KEY_RUN, request.training_run_id), (KEY_CHANGED_BY, request.owner),
             (KEY_CHANGED_AT, registered_at), (KEY_RECORD_STORE, record_store)]
    optional: list[tuple[str, Any]] = []
    optional += [(METRIC + k, v) for k, v in request.metrics.items()]
    for gate in request.gates:
        verdict = "passed" if gate.get("passed") else "failed"
        details = " ".join(f"{k}={_scalar(gate[k])}" for k in ("value", "threshold")
                           if _scalar(gate.get(k)) is not None)
        optional.append((GATE + str(gate.get("gate", "")), f"{verdict} {details}".strip()))
    optional += [(LATENCY + k, v) for k, v in request.latency.items()]
    optional += [(LINEAGE + path, value) for path, value in _flatten_breadth_first(request.lineage)]

    properties: dict[str, str] = {}
    for key, raw in fixed:
        value = _scalar(raw)
        if value:
            properties[key] = value if metadata_safe(value, MAX_METADATA_VALUE) else \
                metadata_clean(value)
    budget = REGISTER_METADATA_LIMIT - 1  # one left for mlops:omitted
    omitted = 0
    for key, raw in optional:
        value = _scalar(raw)
        if (value is None or key in properties or len(properties) >= budget
                or not metadata_safe(key, MAX_METADATA_KEY)
                or not metadata_safe(value, MAX_METADATA_VALUE)):
            omitted += 1
            continue
        properties[key] = value
    if omitted:
        properties[KEY_OMITTED] = str(omitted)
    return properties


def package_facts(props: Mapping[str, str]) -> tuple[dict[str, float], dict[str, float],
                                                     list[dict[str, Any]], dict[str, Any]]:
    """(metrics, latency, gates, lineage) as a package's metadata carries them: the inverse of
    `customer_metadata`, plus the `mlops:` keys others wrote, kept in the lineage."""
    metrics = _numbers(props, METRIC)
    latency = _numbers(props, LATENCY)
    gates = [_gate(name[len(GATE):], text) for name, text in sorted(props.items())
             if name.startswith(GATE)]
    lineage: dict[str, Any] = {}
    for key, value in sorted(props.items()):
        if key.startswith(LINEAGE):
            _unflatten(lineage, key[len(LINEAGE):], value)
        elif (key.startswith(PREFIX) and not key.startswith((METRIC, LATENCY, GATE))
              and key not in _SUMMARY_KEYS):
            lineage[key[len(PREFIX):]] = value
    return metrics, latency, gates, lineage


def _numbers(props: Mapping[str, str], prefix: str) -> dict[str, float]:
    out = {}
    for key, value in props.items():
        if key.startswith(prefix):
            try:
                out[key[len(prefix):]] = float(value)
            except ValueError:
                continue
    return out


def _gate(name: str, text: str) -> dict[str, Any]:
    words = text.split()
    gate: dict[str, Any] = {"gate": name, "passed": bool(words) and words[0] == "passed"}
    for word in words[1:]:
        key, _, value = word.partition("=")
        try:
            gate[key] = json.loads(value)
        except ValueError:
            gate[key] = value
    return gate


def _unflatten(tree: dict[str, Any], path: str, value: str) -> None:
    """Undo the breadth-first flattening; a path that collides stays whole at the top."""
    *parents, leaf = path.split(".")
    node = tree
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            tree[path] = value
            return
        node = child
    node[leaf] = value
