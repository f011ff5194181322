"""AWS operations: `mlops events` (the controllers' failed events), `mlops batch-transform`, `mlops teardown`."""

from __future__ import annotations

import os
from typing import Any, Optional

import typer

from mlops_kit.cli.common import (EXIT_OK,
                                  EndpointOption, JsonOption, _backend,
                                  _emit_json, _fail_bad_input, console, err)


events_app = typer.Typer(help="The controllers' failed events: the stage's on-failure queue.",
                         no_args_is_help=True)

QueueUrlOption = typer.Option(..., "--queue-url",
                              help="The on-failure queue: the Control stack's "
                                   "FailedEventsQueueUrl output.")
MaxMessagesOption = typer.Option(None, "--max", min=1,
                                 help="Handle at most N messages (default: the whole queue).")


def _failed_event_queue(queue_url: str):
    from mlops_kit.aws.operations import FailedEventQueue, OperationInputError

    try:
        return FailedEventQueue(queue_url)
    except OperationInputError as exc:
        _fail_bad_input(str(exc))


def _queue_operation(run) -> Any:
    from mlops_kit.aws.operations import OperationInputError

    try:
        return run()
    except OperationInputError as exc:
        _fail_bad_input(str(exc))


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def _print_queue_report(report, as_json: bool) -> None:
    """Exit 0: everything replayed, discarded or replayable (or an empty queue); 1: some
    message is left for on-call (malformed, refused, failed, or a --message-id not found)."""
    if as_json:
        _emit_json(report.to_dict())
    else:
        from rich.table import Table

        if not report.events:
            console.print(f"{report.queue_url}: no message")
        else:
            table = Table(title=f"{report.queue_url} ({report.mode})")
            # Message ids and function names are what on-call copies: fold, never cut.
            for column in ("message", "status", "function", "event", "condition", "invokes",
                           "age", "why / last error"):
                table.add_column(column, overflow="fold")
            for e in report.events:
                why = e.reason
                if e.error_message and e.status == "would_replay":
                    why = f"{e.function_error or 'error'}: {e.error_message}"
                table.add_row(e.message_id, e.status, e.function, e.subject, e.condition,
                              "" if e.invoke_count is None else str(e.invoke_count),
                              _age(e.age_seconds) if e.function else "", why)
            console.print(table)
        for message_id in report.missing_message_ids:
            err.print(f"[bold red]not found:[/] message {message_id} is not in the queue",
                      highlight=False)
        for problem in report.problems:
            err.print(f"[bold red]problem:[/] {problem}", highlight=False, markup=False)
    raise typer.Exit(EXIT_OK if report.ok else 1)


@events_app.command("list")
def events_list(queue_url: str = QueueUrlOption,
                max_messages: Optional[int] = MaxMessagesOption,
                as_json: bool = JsonOption) -> None:
    """What `events replay` would do with each message (function, event, condition, invoke
    count, age); changes nothing. Exit 0: every message is replayable; 1: some is not; 2: the
    queue cannot be reached."""
    queue = _failed_event_queue(queue_url)
    _print_queue_report(_queue_operation(lambda: queue.list(max_messages=max_messages)),
                        as_json)


@events_app.command("replay")
def events_replay(queue_url: str = QueueUrlOption,
                  dry_run: bool = typer.Option(False, "--dry-run",
                                               help="Only list (= `events list`)."),
                  max_messages: Optional[int] = MaxMessagesOption,
                  message_id: list[str] = typer.Option(
                      [], "--message-id", help="Replay only this message (repeatable)."),
                  as_json: bool = JsonOption) -> None:
    """Invoke each failed event's function again (asynchronously) with the original event,
    then delete its message; a message that is not an invocation record, or whose invoke
    fails, stays in the queue. Exit 0: all replayed (or nothing to do); 1: some not; 2: bad
    input (bad URL, unreachable queue)."""
    queue = _failed_event_queue(queue_url)
    if dry_run:
        report = _queue_operation(lambda: queue.list(max_messages=max_messages))
    else:
        report = _queue_operation(lambda: queue.replay(max_messages=max_messages,
                                                       message_ids=message_id or None))
    _print_queue_report(report, as_json)


@events_app.command("discard")
def events_discard(queue_url: str = QueueUrlOption,
                   message_id: list[str] = typer.Option(
                       ..., "--message-id", help="The message to delete unreplayed "
                                                 "(repeatable; from `events list`)."),
                   as_json: bool = JsonOption) -> None:
    """Delete the named messages without replaying them: an event on-call decided must not
    be applied any more (e.g. an alarm of an incident that is over). Exit 0: all deleted;
    1: some not found or not deleted; 2: bad input."""
    queue = _failed_event_queue(queue_url)
    _print_queue_report(_queue_operation(lambda: queue.discard(message_id)), as_json)


def batch_transform_command(
        input_uri: str = typer.Option(..., "--input", help="s3:// prefix or object to score."),
        output_uri: str = typer.Option(..., "--output", help="s3:// prefix for the scores."),
        endpoint: Optional[str] = EndpointOption,
        instance_type: str = typer.Option("ml.m5.xlarge", "--instance-type"),
        as_json: bool = JsonOption) -> None:
    """AWS twin of `mlops batch-score`: a SageMaker Batch Transform job from the model package
    of the version serving the endpoint (needs SAGEMAKER_EXECUTION_ROLE_ARN)."""
    from mlops_kit.aws.batch_transform import BatchTransformLauncher, NoChampionError

    for name, uri in (("--input", input_uri), ("--output", output_uri)):
        if not uri.startswith("s3://"):
            _fail_bad_input(f"{name} must be an s3:// URI, got '{uri}'")
    opened = _backend("aws")
    role = os.environ.get("SAGEMAKER_EXECUTION_ROLE_ARN", "")
    if not role:
        _fail_bad_input("SAGEMAKER_EXECUTION_ROLE_ARN is required to create the transform job")
    launcher = BatchTransformLauncher(execution_role_arn=role, instance_type=instance_type)
    try:
        job = launcher.start_for_champion(opened.registry, endpoint or opened.endpoint_name,
                                          input_s3_uri=input_uri, output_s3_uri=output_uri)
    except NoChampionError as exc:
        _fail_bad_input(str(exc))
    if as_json:
        _emit_json({"transform_job": job, "input": input_uri, "output": output_uri})
    else:
        console.print(f"started Batch Transform job {job}: {input_uri} → {output_uri}")


def teardown_command(
        endpoint: str = typer.Option(..., "--endpoint",
                                     help="The stage's endpoint (cdk.json endpointName)."),
        model_group: str = typer.Option(..., "--model-group",
                                        help="The stage's model group (cdk.json modelGroup)."),
        yes: bool = typer.Option(False, "--yes", help="Delete. Without it: only list."),
        wait: bool = typer.Option(True, "--wait/--no-wait",
                                  help="Wait until the endpoint is gone before deleting its "
                                       "configs and models."),
        backend: str = typer.Option("aws", "--backend", help="aws (what the controller "
                                                             "created in SageMaker)."),
        as_json: bool = JsonOption) -> None:
    """Delete what the deployment controller created, which `cdk destroy` leaves running:
    the endpoint, its endpoint configs and their models (by the kit's naming rules only;
    another endpoint's or team's resources are kept). Run it before `npx cdk destroy`.

    Exit 0: listed, or everything deleted (already gone counts); 1: something was not
    deleted (the list says what and why); 2: bad input (names, credentials, an endpoint the
    kit did not deploy)."""
    from mlops_kit.aws.operations import OperationInputError, StageTeardown

    if backend != "aws":
        _fail_bad_input("`teardown` removes what the deployment controller created in AWS "
                        "(--backend aws); a local home is a folder: remove $MLOPS_HOME")
    try:
        teardown = StageTeardown(endpoint, model_group)
        report = teardown.plan()
    except OperationInputError as exc:
        _fail_bad_input(str(exc))
    if yes and report.to_delete:
        report = teardown.apply(report, wait=wait)
    if as_json:
        _emit_json(report.to_dict())
    else:
        if not report.items:
            console.print(f"nothing of {endpoint} / {model_group} to delete")
        for item in report.items:
            if not item.delete:
                verb = "keep"
            elif not report.applied:
                verb = "would delete"
            else:
                verb = item.status.replace("_", " ")
            line = f"{verb}: {item.kind} {item.name} ({item.reason})"
            if item.error:
                line += f": {item.error}"
            console.print(line, highlight=False, markup=False, soft_wrap=True)
        if report.to_delete and not report.applied:
            console.print("nothing deleted; run again with --yes to delete", highlight=False)
    raise typer.Exit(EXIT_OK if report.ok else 1)


def register(app: typer.Typer) -> None:
    app.add_typer(events_app, name="events")
    app.command("batch-transform")(batch_transform_command)
    app.command("teardown")(teardown_command)
