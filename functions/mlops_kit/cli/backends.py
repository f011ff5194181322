"""Which home a command acts on: the local one ($MLOPS_HOME) or AWS (boto3). The wiring of
each lives in `mlops_kit.homes`."""

from __future__ import annotations

from mlops_kit.homes import Backend, BackendError

__all__ = ["Backend", "BackendError", "open_backend"]


def open_backend(name: str, *, model: str | None = None,
                 environment: str | None = None) -> Backend:
    """`model`/`environment`: one declared model (models/<name>.toml), in one environment of
    the fleet; neither: the single-model home as configured ($MLOPS_MODEL_GROUP, ...)."""
    if name == "local":
        from mlops_kit.config import LocalSettings
        from mlops_kit.fleet.loader import FleetError
        from mlops_kit.homes.local import backend
        from mlops_kit.homes.local_fleet import fleet_settings

        try:
            settings = fleet_settings(LocalSettings.from_env(), model, environment)
        except FleetError as exc:
            raise BackendError(str(exc)) from None
        return backend(settings)
    if name == "aws":
        from mlops_kit.homes.aws import backend

        if model is not None or environment is not None:
            # The AWS fleet's per-model endpoints and cross-account environments are not
            # wired into the CLI yet (issue [H]): say so rather than act on the wrong endpoint.
            raise BackendError("--model/--env work with --backend local only so far")
        return backend()
    raise BackendError(f"unknown backend '{name}': use local or aws")

