"""What a stage teardown deletes and keeps, decided from what SageMaker describes: the kit's
naming rules for endpoint configs and models (`mlops_kit.aws.models.resource_name`), the
report's items, the plan (`plan_teardown`), and what a failed step stops when it is applied
(`TeardownReport.stop_planned`, `hold_back_model`). Pure: `mlops_kit.aws.operations.StageTeardown`
makes the calls.

Deleted: the endpoint (only if every variant is named after a model version, as the kit names
them); each endpoint config the endpoint uses (current and pending) or whose name is the kit's
for this endpoint (`<endpoint>-<12 hex>`), if its variants are the kit's; each model those
configs reference that carries the kit's name for the group and the variant's version
(`<group>-v<N>-<10 hex>`), and kit-named models of the group no config references (left by an
earlier, interrupted teardown or a failed deploy). Kept, with the reason: configs and models
outside those rules, and models an endpoint config that stays still references (e.g. another
endpoint serving the same group's versions). To know the latter, every endpoint config of the
region is described once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from botocore.exceptions import ClientError

from mlops_kit.core.rotation import version_of_variant

from .clients import error_code, error_message
from .models import resource_name
from .operation_errors import OperationInputError


SAGEMAKER_NAME = re.compile(r"^[A-Za-z0-9](-*[A-Za-z0-9]){0,62}$")
"""An endpoint or model group name as SageMaker allows it."""
MODEL_DIGEST_CHARS = 10
"""`models.model_name`: `<group>-v<N>-<10 hex digits>`."""
CONFIG_DIGEST_CHARS = 12
"""`sagemaker_endpoint.endpoint_config_name`: `<endpoint>-<12 hex digits>`."""
_MISSING = re.compile(r"could not find (endpoint|endpoint configuration|model)\b",
                      re.IGNORECASE)


def config_prefix(endpoint_name: str) -> str:
    """What every endpoint config the kit names for this endpoint starts with (`<head>-`)."""
    return resource_name(endpoint_name, "", digest_chars=CONFIG_DIGEST_CHARS)[:-CONFIG_DIGEST_CHARS]


def is_kit_config_name(name: str, endpoint_name: str) -> bool:
    return re.fullmatch(re.escape(config_prefix(endpoint_name)) + r"[0-9a-f]{12}", name) is not None


def model_head(model_group: str, version: int) -> str:
    """The readable part of the kit's model name for a version. The group comes lower-cased,
    as SageMaker writes it in model package ARNs, which `model_name` reads it from."""
    return resource_name(f"{model_group.lower()}-v{version}", "",
                         digest_chars=MODEL_DIGEST_CHARS)[:-MODEL_DIGEST_CHARS - 1]


def is_kit_model_name(name: str, model_group: str, version: int | None = None) -> bool:
    """Named by the kit for this group (and, given, this version)."""
    match = re.fullmatch(r"(.+)-[0-9a-f]{10}", name)
    if not match:
        return False
    head = match.group(1)
    if version is not None:
        return head == model_head(model_group, version)
    numbered = re.fullmatch(r".*-v(\d+)", head)
    if numbered and head == model_head(model_group, int(numbered.group(1))):
        return True
    # A group name so long that the version was cut off: every version has the same head.
    # (Two groups alike in their first 52 characters cannot be told apart by name: a limit of
    # the naming rule itself, which the controllers' IAM grants on `model/<group>-v*` share.)
    return head == model_head(model_group, 1) == model_head(model_group, 10 ** 9)


def is_missing(exc: ClientError) -> bool:
    """SageMaker's answer for an endpoint, endpoint config or model that does not exist."""
    return error_code(exc) in ("ValidationException", "ResourceNotFound") and bool(
        _MISSING.search(error_message(exc)))


@dataclass
class TeardownItem:
    kind: str
    """endpoint | endpoint-config | model"""
    name: str
    delete: bool
    reason: str
    status: str = "planned"
    """planned | kept | deleted | already_gone | failed | not_attempted"""
    error: str = ""
    state: str = ""
    """The endpoint's status when planned (Deleting: the deletion only needs waiting for)."""
    referenced_by: tuple[str, ...] = ()
    """A model: the endpoint configs of this teardown that reference it."""

    def __post_init__(self) -> None:
        if not self.delete:
            self.status = "kept"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "delete": self.delete,
                "reason": self.reason, "status": self.status, "error": self.error,
                **({"state": self.state} if self.state else {}),
                **({"referenced_by": list(self.referenced_by)} if self.referenced_by else {})}


@dataclass
class TeardownReport:
    endpoint_name: str
    model_group: str
    applied: bool
    items: list[TeardownItem] = field(default_factory=list)

    def of(self, kind: str, *, delete: bool | None = None) -> list[TeardownItem]:
        return [i for i in self.items if i.kind == kind and (delete is None or i.delete == delete)]

    @property
    def to_delete(self) -> list[TeardownItem]:
        return [i for i in self.items if i.delete]

    @property
    def ok(self) -> bool:
        """Listing: always; applied: everything planned is deleted or was already gone."""
        return not self.applied or all(i.status in ("deleted", "already_gone")
                                       for i in self.to_delete)

    def to_dict(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint_name, "model_group": self.model_group,
                "applied": self.applied, "ok": self.ok,
                "items": [i.to_dict() for i in self.items]}

    def stop_planned(self, cause: str) -> None:
        """A step the rest depends on failed: nothing still planned is attempted."""
        for item in self.to_delete:
            if item.status == "planned":
                item.status, item.error = "not_attempted", cause


def hold_back_model(item: TeardownItem, undeleted_configs: set[str]) -> bool:
    """Whether a model stays because an endpoint config that references it was not deleted
    (marked not_attempted): deleting the model would leave a config that cannot be deployed;
    the next run finds the model again through that config."""
    blocking = sorted(undeleted_configs & set(item.referenced_by))
    if blocking:
        item.status = "not_attempted"
        item.error = f"endpoint config {blocking[0]} was not deleted"
    return bool(blocking)




def plan_teardown(endpoint_name: str, model_group: str, endpoint: Mapping[str, Any] | None,
                  configs: Mapping[str, Mapping[str, Any]],
                  kit_models_of_group: Callable[[], list[str]]) -> TeardownReport:
    """The plan for `endpoint` (None: gone) given every endpoint config of the region, by
    name; `kit_models_of_group` lists the group's kit-named models, asked only once the
    endpoint proved to be the kit's. OperationInputError when it is not."""
    report = TeardownReport(endpoint_name, model_group, applied=False)
    in_use = _plan_endpoint(report, endpoint, configs) if endpoint is not None else []
    deleting, referenced, foreign = _plan_configs(report, configs, in_use)
    _plan_models(report, configs, deleting, referenced, foreign, kit_models_of_group())
    return report


def _plan_endpoint(report: TeardownReport, endpoint: Mapping[str, Any],
                   configs: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The endpoint's item; returns the configs it uses (current and pending)."""
    where = f"endpoint {report.endpoint_name}"
    variants = [v["VariantName"] for v in endpoint.get("ProductionVariants") or []]
    in_use = [name for name in (
        endpoint.get("EndpointConfigName"),
        (endpoint.get("PendingDeploymentSummary") or {}).get("EndpointConfigName"))
        if name]
    # A Creating endpoint lists no variants yet: its config says what it will serve.
    for name in in_use:
        variants += [v.get("VariantName", "") for v in
                     (configs.get(name) or {}).get("ProductionVariants") or []]
    for variant in variants:
        _require_kit_variant(variant, where)
    status = endpoint.get("EndpointStatus", "")
    serving = ", ".join(v["VariantName"] for v in endpoint.get("ProductionVariants") or [])
    report.items.append(TeardownItem(
        "endpoint", report.endpoint_name, True,
        "already being deleted" if status == "Deleting"
        else f"{status}, serving {serving or 'no variant yet'}", state=status))
    return in_use


def _plan_configs(report: TeardownReport, configs: Mapping[str, Mapping[str, Any]],
                  in_use: list[str]
                  ) -> tuple[list[str], dict[str, list[str]], dict[str, str]]:
    """The endpoint configs' items; returns (the configs being deleted, kit-named model → the
    configs being deleted that reference it, model referenced by a config being deleted but
    not named by the kit → why kept)."""
    deleting: list[str] = []
    referenced: dict[str, list[str]] = {}
    foreign: dict[str, str] = {}
    candidates = set(in_use) | {n for n in configs
                                if is_kit_config_name(n, report.endpoint_name)}
    for name in sorted(candidates):
        config = configs.get(name)
        if config is None:
            continue  # named by the endpoint but already deleted
        why_not = _not_kit_config(config)
        if why_not:
            report.items.append(TeardownItem("endpoint-config", name, False, why_not))
            continue
        deleting.append(name)
        report.items.append(TeardownItem(
            "endpoint-config", name, True,
            "used by the endpoint" if name in in_use
            else f"named by the kit for {report.endpoint_name}"))
        for variant in config.get("ProductionVariants") or []:
            model = variant.get("ModelName", "")
            version = version_of_variant(variant["VariantName"])
            if is_kit_model_name(model, report.model_group, version):
                referenced.setdefault(model, []).append(name)
            elif model:
                foreign.setdefault(model, f"referenced by {name} but not named by the kit "
                                          f"for {report.model_group} v{version}")
    return deleting, referenced, foreign


def _plan_models(report: TeardownReport, configs: Mapping[str, Mapping[str, Any]],
                 deleting: list[str], referenced: dict[str, list[str]],
                 foreign: dict[str, str], kit_models: list[str]) -> None:
    # A model that an endpoint config which stays references must stay too.
    kept_by: dict[str, str] = {}
    for name, config in configs.items():
        if name not in deleting:
            for variant in config.get("ProductionVariants") or []:
                kept_by.setdefault(variant.get("ModelName", ""), name)
    orphans = [m for m in kit_models if m not in referenced and m not in kept_by]
    for model in sorted(set(referenced) | set(orphans) | set(foreign)):
        if model in foreign and model not in referenced:
            report.items.append(TeardownItem("model", model, False, foreign[model]))
        elif model in kept_by:
            report.items.append(TeardownItem(
                "model", model, False,
                f"also referenced by endpoint config {kept_by[model]}, which stays"))
        elif model in referenced:
            report.items.append(TeardownItem(
                "model", model, True, f"referenced by {', '.join(referenced[model])}",
                referenced_by=tuple(referenced[model])))
        else:
            report.items.append(TeardownItem(
                "model", model, True, f"named by the kit for {report.model_group}, referenced "
                                      f"by no endpoint config (left by an interrupted "
                                      f"teardown or a failed deploy)"))


def _require_kit_variant(variant: str, where: str) -> None:
    try:
        version_of_variant(variant)
    except ValueError:
        raise OperationInputError(
            f"{where} serves variant {variant!r}, not named after a model version (v<N>): "
            f"not an endpoint the kit deployed; teardown deletes nothing") from None


def _not_kit_config(config: Mapping[str, Any]) -> str:
    variants = config.get("ProductionVariants") or []
    if not variants:
        return "has no production variants: not one of the kit's"
    for variant in variants:
        try:
            version_of_variant(variant.get("VariantName", ""))
        except ValueError:
            return (f"variant {variant.get('VariantName')!r} is not named after a model "
                    f"version: not one of the kit's")
    return ""
