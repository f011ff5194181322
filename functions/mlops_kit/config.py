"""Local settings: where state lives and who is acting, read once from the environment."""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOME = ".mlops"
DEFAULT_MODEL_GROUP = "fraud-detector"
DEFAULT_USE_CASE = "card-fraud-detection"
DEFAULT_ENDPOINT = "fraud-scorer-local"


@dataclass(frozen=True)
class LocalSettings:
    home: Path
    model_group: str
    use_case: str
    owner: str
    endpoint_name: str = DEFAULT_ENDPOINT
    environment: str | None = None
    parent: LocalSettings | None = None
    """The root home's settings when these are one environment's of a fleet: the environment
    keeps its endpoints, probes and alarms under `home` (`$MLOPS_HOME/envs/<env>/`) and shares
    the root's registry, event outbox and MLflow store with every other environment."""

    @property
    def root(self) -> LocalSettings:
        return self.parent.root if self.parent is not None else self

    @property
    def registry_root(self) -> Path:
        return self.root.home

    @property
    def registry_db(self) -> Path:
        return self.registry_root / "registry.db"

    @property
    def mlflow_db(self) -> Path:
        """MLflow's tracking store: created once per home, whole (see `pipeline_runner`); an
        environment of a fleet shares its registry's (versions are trained once)."""
        return self.registry_root / "mlflow.db"

    @property
    def mlflow_lock(self) -> Path:
        """The lock file under which the MLflow store and experiments are created."""
        return self.registry_root / ".mlflow.lock"

    @property
    def mlflow_uri(self) -> str:
        return f"sqlite:///{self.mlflow_db.resolve()}"

    @property
    def mlflow_artifact_root(self) -> str:
        return (self.registry_root / "mlruns").resolve().as_uri()

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "LocalSettings":
        env = os.environ if environ is None else environ
        return cls(
            home=Path(env.get("MLOPS_HOME") or DEFAULT_HOME).expanduser().absolute(),
            model_group=env.get("MLOPS_MODEL_GROUP") or DEFAULT_MODEL_GROUP,
            use_case=env.get("MLOPS_USE_CASE") or DEFAULT_USE_CASE,
            owner=env.get("MLOPS_OWNER") or _user(),
            endpoint_name=env.get("MLOPS_ENDPOINT") or DEFAULT_ENDPOINT,
        )


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, e.g. in some containers
        return "unknown"
