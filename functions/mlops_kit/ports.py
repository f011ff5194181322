"""Errors every layer may raise and every entry point maps the same way (stdlib only).

The CLI turns each into its own exit code and a message that says what to do; the Lambdas log
them and let the invocation fail (the on-failure destination keeps the event)."""

from __future__ import annotations

import errno


class StateWriteError(OSError):
    """The kit could not write its state (disk full, read-only, permission): nothing was
    half-written, the previous state stands, and the message names the path and the cause."""

    def __init__(self, path: object, cause: OSError | str):
        reason = cause.strerror or str(cause) if isinstance(cause, OSError) else str(cause)
        super().__init__(getattr(cause, "errno", None) or errno.EIO,
                         f"cannot write {path}: {reason}")
        self.path = str(path)
        self.reason = reason

    def __str__(self) -> str:
        return f"cannot write {self.path}: {self.reason}"


class InvalidEventError(ValueError):
    """An event the kit cannot read (a model package state change, an alarm); says what is
    wrong. Every parser of events raises it, every handler maps it to one answer."""


class DamagedStateError(Exception):
    """State the kit wrote before is missing or unreadable (e.g. a truncated database). Never
    treated as empty: the message says what was found and how to recover."""

    def __init__(self, message: str, *, recovery: str = ""):
        super().__init__(message)
        self.recovery = recovery

    def __str__(self) -> str:
        message = super().__str__()
        return f"{message}; {self.recovery}" if self.recovery else message


WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EPERM,
                          errno.EFBIG, errno.EIO})
"""The errors a write to a full, read-only or failing disk raises."""


def is_write_failure(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS
