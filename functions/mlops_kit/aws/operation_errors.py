"""The one error the operator actions (`mlops_kit.aws.operations`) raise for bad input."""

from __future__ import annotations


class OperationInputError(ValueError):
    """Bad input for an operation (a malformed URL or name, a queue that cannot be reached,
    an endpoint the kit does not manage): nothing was changed. The message names the problem."""
