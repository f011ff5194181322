"""Which home a command acts on: the local one ($MLOPS_HOME) or AWS (boto3). The wiring of
each lives in `mlops_kit.homes`."""

from __future__ import annotations

from mlops_kit.homes import Backend, BackendError

__all__ = ["Backend", "BackendError", "open_backend"]


def open_backend(name: str) -> Backend:
    if name == "local":
        from mlops_kit.homes.local import backend

        return backend()
    if name == "aws":
        from mlops_kit.homes.aws import backend

        return backend()
    raise BackendError(f"unknown backend '{name}': use local or aws")

