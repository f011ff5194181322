"""The registry of record mirrored into MLflow's model registry: one registered model per model
group, one MLflow model version per registry version, and the aliases `champion`, `n-1`, `n-2`.

`sync_mlflow_registry` makes MLflow agree with the registry and returns what it changed
(nothing, when run twice). Versions are matched by their `mlops.registry_version` tag, not by
MLflow's own numbering (which a store created later, or a failed create, would shift). The
aliases follow what the endpoint serves now (`core.rotation.serving_lineup`): `champion` is the
version taking the traffic, `n-1` and `n-2` the warm fallbacks a rollback would pick, newest
first; a version rolled back (or rejected) is no fallback, so after a rollback `champion` moves
to the version rolled back to and the aliases that no longer hold are deleted.
"""

from __future__ import annotations

import fcntl
import logging
import os
from contextlib import contextmanager
from typing import Any, Iterator

from mlops_kit.core.rotation import serving_lineup
from mlops_kit.registry.base import ModelRegistry, ModelVersion

log = logging.getLogger(__name__)

ALIASES = ("champion", "n-1", "n-2")
VERSION_TAG = "mlops.registry_version"
SYNC_LOCK = ".mlflow-registry.lock"
"""Under $MLOPS_HOME: two processes syncing at once would both create a missing version."""


def version_tags(version: ModelVersion) -> dict[str, str]:
    """What an MLflow model version says about its registry version."""
    tags = {VERSION_TAG: str(version.version),
            "mlops.approval_status": str(version.status),
            "mlops.run_id": version.training_run_id,
            "mlops.archived": "true" if version.archived_at else "false"}
    passed = True
    for gate in version.gates:
        tags[f"mlops.gate.{gate['gate']}"] = "pass" if gate.get("passed") else "FAIL"
        passed = passed and bool(gate.get("passed"))
    if version.gates:
        tags["mlops.gates"] = "passed" if passed else "failed"
    return tags


def wanted_aliases(registry: ModelRegistry, endpoint_name: str | None = None) -> dict[str, int]:
    """alias → registry version, from what the endpoint serves now."""
    history = registry.deployments(endpoint_name)
    if not history:
        return {}
    lineup = serving_lineup(history[-1].variants, registry.blocked_versions(endpoint_name))
    return dict(zip(ALIASES, lineup.versions))


def sync_mlflow_registry(registry: ModelRegistry, client: Any, *,
                         endpoint_name: str | None = None) -> list[str]:
    """Make MLflow's registered model `registry.model_group` agree with the registry: create
    the missing model versions, set their tags (approval status, gates, registry version, run
    id), and set or delete the aliases. Returns the changes made, one line each."""
    from mlflow.exceptions import MlflowException

    name = registry.model_group
    changes: list[str] = []
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description=f"mirror of the kit's registry '{name}'")
        changes.append(f"registered model {name} created")
    mirrored = _mirrored_versions(client, name)
    for version in registry.list_versions():
        tags = version_tags(version)
        found = mirrored.get(version.version)
        if found is None:
            source, run_id = _source(client, version)
            found = client.create_model_version(
                name, source, run_id=run_id, tags=tags,
                description=version.description or f"registry version {version.version}")
            mirrored[version.version] = found
            changes.append(f"v{version.version}: model version {found.version} created")
            continue
        for key, value in tags.items():
            if found.tags.get(key) != value:
                client.set_model_version_tag(name, found.version, key, value)
                changes.append(f"v{version.version}: tag {key}={value}")
    current = client.get_registered_model(name).aliases or {}
    wanted = wanted_aliases(registry, endpoint_name)
    for alias in ALIASES:
        had = current.get(alias)
        want = wanted.get(alias)
        target = str(mirrored[want].version) if want in mirrored else None
        if target is not None and str(had) != target:
            client.set_registered_model_alias(name, alias, target)
            changes.append(f"alias {alias} -> v{want}")
        elif target is None and had is not None:
            client.delete_registered_model_alias(name, alias)
            changes.append(f"alias {alias} deleted")
    return changes


def _mirrored_versions(client: Any, name: str) -> dict[int, Any]:
    """registry version → MLflow model version, by tag (the oldest mirror wins)."""
    found: dict[int, Any] = {}
    for model_version in sorted(client.search_model_versions(f"name = '{name}'"),
                                key=lambda mv: int(mv.version)):
        tag = model_version.tags.get(VERSION_TAG, "")
        if tag.isdigit() and int(tag) not in found:
            found[int(tag)] = model_version
    return found


def _source(client: Any, version: ModelVersion) -> tuple[str, str | None]:
    """The training run's logged model when this store holds the run, else the registry's
    model artifact (a run tracked elsewhere, or none)."""
    from mlflow.exceptions import MlflowException

    if version.training_run_id:
        try:
            run = client.get_run(version.training_run_id)
            return f"{run.info.artifact_uri}/model", version.training_run_id
        except MlflowException:
            pass
    return version.model_uri, None


@contextmanager
def _sync_lock(home: os.PathLike) -> Iterator[None]:
    path = os.path.join(home, SYNC_LOCK)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def mirror_local_registry(settings: Any, registry: ModelRegistry) -> list[str] | None:
    """`sync_mlflow_registry` on a local home's MLflow store, best-effort: None (and a
    warning) when it failed, None when the home has no store yet (none is created: the first
    pipeline run creates it, and syncs then)."""
    if not settings.mlflow_db.exists():
        return None
    try:
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
        from mlflow import MlflowClient

        with _sync_lock(settings.registry_root):
            client = MlflowClient(tracking_uri=settings.mlflow_uri,
                                  registry_uri=settings.mlflow_uri)
            return sync_mlflow_registry(registry, client, endpoint_name=settings.endpoint_name)
    except Exception as exc:  # a broken store must never fail a registration or a deploy
        log.warning("MLflow registry mirror not updated (%s: %s); the kit's registry is the "
                    "record and is unaffected; the next registration or deployment retries",
                    type(exc).__name__, exc)
        return None


def mirror_soon(settings: Any, registry: ModelRegistry) -> None:
    """Mirror after a delivery without making the caller wait for MLflow's import (~6 s of a
    7.5 s `mlops rollback` on the 2-core box): in this process when MLflow is already loaded
    (pipeline runs, the demo, tests), else in a detached child process that syncs the whole
    state and exits (its warnings go to `$MLOPS_HOME/logs/mlflow-mirror.log`). Best-effort
    either way: the next sync catches up on anything a failed one missed."""
    import subprocess
    import sys

    if not settings.mlflow_db.exists():
        return
    if "mlflow" in sys.modules:
        mirror_local_registry(settings, registry)
        return
    logs = settings.home / "logs"
    try:
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / "mlflow-mirror.log", "ab") as log_file:
            subprocess.Popen([sys.executable, "-m", "mlops_kit.tracking.registry_mirror"],
                             env={**os.environ, "MLOPS_HOME": str(settings.registry_root),
                                  "MLOPS_MODEL_GROUP": settings.model_group,
                                  "MLOPS_ENDPOINT": settings.endpoint_name},
                             stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                             start_new_session=True)
    except OSError as exc:
        log.warning("MLflow registry mirror not started (%s); the next sync catches up", exc)


def main() -> int:
    """`python -m mlops_kit.tracking.registry_mirror`: one sync of $MLOPS_HOME's store."""
    from mlops_kit.config import LocalSettings
    from mlops_kit.registry.local import LocalRegistry

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    settings = LocalSettings.from_env()  # read only: no event is written by a sync
    mirror_local_registry(settings, LocalRegistry(settings.registry_root, settings.model_group))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
