"""`mlops models`: the fleet's declared models (models/<name>.toml), as the CDK app and the local
home read them."""

from __future__ import annotations

from typing import Any

import typer

from mlops_kit.cli.common import JsonOption, _emit_json, _fail_bad_input, console

models_app = typer.Typer(help="The declared models of the fleet (models/<name>.toml).",
                         no_args_is_help=True)


def open_fleet():
    from mlops_kit.fleet.loader import FleetError, load_fleet

    try:
        return load_fleet()
    except FleetError as exc:
        _fail_bad_input(str(exc))


def _summary(model, environments: tuple[str, ...]) -> dict[str, Any]:
    return {"name": model.name, "use_case": model.use_case, "owner": model.owner,
            "deploy_to": list(model.deploy_to),
            "endpoints": {env: model.endpoint_name(env) for env in model.deploy_to},
            "order": [env for env in environments if env in model.deploy_to]}


@models_app.command("list")
def models_list(as_json: bool = JsonOption) -> None:
    """Every declared model: owner, use case and the environments it deploys to."""
    from rich.table import Table

    fleet = open_fleet()
    rows = [_summary(model, fleet.environment_names) for _, model in sorted(fleet.models.items())]
    if as_json:
        _emit_json({"models": rows, "environments": list(fleet.environment_names)})
        return
    table = Table("model", "use case", "owner", "deploys to")
    for row in rows:
        table.add_row(row["name"], row["use_case"], row["owner"], " → ".join(row["deploy_to"]))
    console.print(table)


@models_app.command("show")
def models_show(name: str = typer.Argument(..., help="The model's name."),
                as_json: bool = JsonOption) -> None:
    """One model's declaration, with each environment's resolved serving settings."""
    from mlops_kit.fleet.loader import FleetError

    fleet = open_fleet()
    try:
        model = fleet.model(name)
    except FleetError as exc:
        _fail_bad_input(str(exc))
    document = {**_summary(model, fleet.environment_names),
                "description": model.description,
                "data": model.data.model_dump(),
                "gates": model.thresholds(),
                "training": {**model.training.model_dump(exclude={"parameters"}),
                             "parameters": model.training_parameters()},
                "serving": {env: model.serving_in(env).model_dump() for env in model.deploy_to}}
    if as_json:
        _emit_json(document)
        return
    _print_model(document)


def _print_model(document: dict[str, Any]) -> None:
    from rich.table import Table

    console.print(f"[bold]{document['name']}[/] — {document['use_case']} (owner "
                  f"{document['owner']})", highlight=False)
    if document["description"]:
        console.print(document["description"], highlight=False)
    console.print(f"data: {document['data']['key']} (target {document['data']['target']})",
                  highlight=False)
    console.print("gates: " + ", ".join(f"{k} {v:g}" for k, v in document["gates"].items()),
                  highlight=False)
    training = document["training"]
    console.print(f"training: schedule {training['schedule'] or 'none'}, new-data trigger "
                  f"{'on' if training['new_data_trigger'] else 'off'}, parameters "
                  f"{training['parameters'] or 'the defaults'}", highlight=False)
    envs = document["deploy_to"]
    table = Table("serving", *envs)
    for key in next(iter(document["serving"].values())):
        table.add_row(key, *(str(document["serving"][env][key]) for env in envs))
    table.add_row("endpoint", *(document["endpoints"][env] for env in envs))
    console.print(table)
