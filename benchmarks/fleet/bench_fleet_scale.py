"""How the fleet scales with the number of declared models (issue [H]): synth, local control plane.

    .venv/bin/python benchmarks/fleet/bench_fleet_scale.py [--models 1,10,50]
        [--status-models 50] [--status-repeat 5] [--no-nag] [--json PATH]

Each fleet size N gets a temporary fleet folder: the repository's cdk.json (dev, staging, prod),
models/model-001.toml ... = models/fraud-detector.toml with its name and its data key changed.

(1) synth, per N in a fresh Python process (one N's jsii kernel and asset cache never help the
    next) into a new output folder, Lambda bundling ON (the kit's local bundler; the drift
    monitor's numpy wheel through `pip --platform`: pip's cache or the package index), cdk-nag
    added as infra/app.py adds it (`--no-nag`: not). compose: load_fleet_config +
    compose_fleet, bundling included (CDK bundles an asset as its construct is made; the kit's
    bundler's share is shown); synth: app.synth() (cdk-nag, templates, the assembly written);
    process: the whole subprocess, Python start and imports included. From the written
    `*.template.json`: the stack count; per stack kind (Stateful, Registry, Pipeline, Control,
    monitoring `MlopsKit-<env>-<model>`) the most resources and the largest file in bytes (what
    `cdk deploy` uploads); each environment's Control stack (the one growing with N: a schedule
    per model, the routes file in its functions); the largest template against CloudFormation's
    limits (500 resources, 1,000,000 bytes through S3).
(2) the local control plane, --status-models models (default: the largest N) x 3 environments
    in a temporary $MLOPS_HOME. One model, trained (6,000 synthetic rows, 20 rounds), is v1 and
    v2 of every model (not timed). Model after model, v1 then v2 go dev -> staging -> prod by
    `mlops_kit.deploy.promotion.promote` (prod's soak passed by giving `now` that much later,
    as tests/e2e/test_fleet_promotion.py does), each call timed: every environment's facts, the
    decision, the record and its event, the deployment controller applying it. The first 10 % of
    models meet an almost empty registry, the last 10 % one holding all the others' records:
    their p50/p95 say whether a promotion slows as the fleet grows. Then `mlops status --all`
    and `--all --json` as whole processes (MLOPS_HOME, MLOPS_FLEET set; best and median of
    --status-repeat; the JSON must hold N x 3 rows), and one manual rollback in prod,
    in-process, what `mlops rollback --model M --env prod` calls:
    `homes.local.backend(...)` opened (pending events delivered), then its `manual_shift`.

Prerequisites: node, pipelines/build/artifact-bucket (`make definition`). ~100 s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import (ROOT, add_json_argument, machine_line, report, summary,  # noqa: E402
                     table, write_json)

VENV_BIN = Path(sys.executable).parent
CDK_ENV = {"JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
           "CDK_DISABLE_VERSION_CHECK": "1", "CDK_DISABLE_CLI_TELEMETRY": "true"}
CFN_MAX_RESOURCES, CFN_MAX_TEMPLATE_BYTES = 500, 1_000_000
KINDS = ("Stateful", "Registry", "Pipeline", "Control", "Monitoring")
TEMPLATE_MODEL, TEMPLATE_NAME = ROOT / "models" / "fraud-detector.toml", "fraud-detector"
PROMOTION_ORDER = json.loads((ROOT / "cdk.json").read_text())["context"]["promotionOrder"]


def make_fleet_folder(folder: Path, count: int) -> Path:
    """cdk.json and `count` declarations: the repository model renamed, with its own data key."""
    (folder / "models").mkdir(parents=True)
    shutil.copyfile(ROOT / "cdk.json", folder / "cdk.json")
    text = TEMPLATE_MODEL.read_text()
    name_line, key_part = f'name = "{TEMPLATE_NAME}"', f"incoming/{TEMPLATE_NAME}/"
    if text.count(name_line) != 1 or text.count(key_part) != 1:
        raise SystemExit(f"{TEMPLATE_MODEL}: expected one `{name_line}` and one data key "
                         f"under {key_part}")
    for index in range(1, count + 1):
        name = f"model-{index:03d}"
        (folder / "models" / f"{name}.toml").write_text(
            text.replace(name_line, f'name = "{name}"').replace(key_part, f"incoming/{name}/"))
    return folder


def environment(**extra: str) -> dict[str, str]:
    return {**os.environ, **CDK_ENV, "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}", **extra}


def synth_worker(fleet_dir: Path, outdir: Path, result: Path, nag: bool) -> None:
    """In the fresh process: import, compose, synthesize; the times go to `result`."""
    started = time.perf_counter()
    sys.path.insert(0, str(ROOT))  # `infra` as infra/app.py imports it
    from aws_cdk import App, Validations
    from cdk_nag import AwsSolutionsChecks

    from infra.constructs import bundling
    from infra.fleet_config import load_fleet_config
    from infra.stacks import Paths
    from infra.stacks.fleet import compose_fleet
    imported = time.perf_counter()
    bundled, bundle = [], bundling._LocalBundler.try_bundle

    def timed_bundle(self, *args, **kwargs):  # the bundler as it is, timed
        began = time.perf_counter()
        try:
            return bundle(self, *args, **kwargs)
        finally:
            bundled.append(time.perf_counter() - began)
    bundling._LocalBundler.try_bundle = timed_bundle
    context = json.loads((fleet_dir / "cdk.json").read_text())["context"]
    app = App(context=context, outdir=str(outdir))
    stacks = compose_fleet(app, load_fleet_config(context, fleet_dir), Paths())
    if nag:
        Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))
    composed = time.perf_counter()
    app.synth()
    synthesized = time.perf_counter()
    result.write_text(json.dumps({
        "import_seconds": imported - started, "compose_seconds": composed - imported,
        "bundling_seconds": sum(bundled), "bundles": len(bundled),
        "synth_seconds": synthesized - composed,
        "compose_and_synth_seconds": synthesized - imported, "stacks_composed": len(stacks)}))


def stack_kind(name: str) -> str:
    kind = next((k for k in ("Stateful", "Pipeline", "Control") if name.endswith(f"-{k}")), None)
    return "Registry" if name == "MlopsKit-Registry" else kind or "Monitoring"


def measure_templates(outdir: Path) -> list[dict[str, Any]]:
    stacks = []
    for path in sorted(outdir.glob("*.template.json")):
        name = path.name.removesuffix(".template.json")
        stacks.append({"stack": name, "kind": stack_kind(name),
                       "resources": len(json.loads(path.read_text()).get("Resources", {})),
                       "bytes": path.stat().st_size})
    return stacks


def by_kind(stacks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    groups = {kind: [s for s in stacks if s["kind"] == kind] for kind in KINDS}
    return {kind: {"stacks": len(group), "max_resources": max(s["resources"] for s in group),
                   "max_bytes": max(s["bytes"] for s in group),
                   "largest": max(group, key=lambda s: s["bytes"])["stack"]}
            for kind, group in groups.items() if group}


def bench_synth(count: int, nag: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"bench-fleet-synth-{count}-") as tmp:
        fleet_dir = make_fleet_folder(Path(tmp) / "fleet", count)
        outdir, result = Path(tmp) / "cdk.out", Path(tmp) / "worker.json"
        command = [sys.executable, str(Path(__file__).resolve()), "--synth-worker",
                   str(fleet_dir), str(outdir), str(result)] + ([] if nag else ["--no-nag"])
        started = time.perf_counter()
        out = subprocess.run(command, cwd=ROOT, env=environment(), capture_output=True, text=True)
        process_seconds = time.perf_counter() - started
        if out.returncode != 0 or not result.exists():
            raise SystemExit(f"synth of {count} models failed ({out.returncode}):\n"
                             f"{(out.stderr or out.stdout)[-4000:]}")
        stacks = measure_templates(outdir)
        assets = sum(1 for p in outdir.iterdir() if p.name.startswith("asset."))
        figures = {"models": count, "process_seconds": process_seconds,
                   **json.loads(result.read_text()), "stacks": len(stacks),
                   "asset_folders": assets}
    most = max(stacks, key=lambda s: s["resources"])
    largest = max(stacks, key=lambda s: s["bytes"])
    print(f"synth, {count} models: {process_seconds:.1f} s", file=sys.stderr)
    rank = {f"MlopsKit-{env}-Control": i for i, env in enumerate(PROMOTION_ORDER)}
    control = sorted((s for s in stacks if s["kind"] == "Control"),
                     key=lambda s: rank.get(s["stack"], len(rank)))  # in promotion order
    return {**figures, "by_kind": by_kind(stacks), "control": control,
            "largest_by_resources": {**most, "of_limit": most["resources"] / CFN_MAX_RESOURCES},
            "largest_by_bytes": {**largest,
                                 "of_limit": largest["bytes"] / CFN_MAX_TEMPLATE_BYTES},
            "templates": stacks}


def train_model(workdir: Path) -> Path:
    from mlops_kit.data.synthetic import generate
    from mlops_pipelines.steps import _io, preprocess, train
    from mlops_pipelines.steps.schema import FRAUD_SAMPLE_SCHEMA

    _io.write_table(generate(6000, seed=7), workdir / "data.parquet")
    preprocess.run(workdir / "data.parquet", workdir / "prepared", schema=FRAUD_SAMPLE_SCHEMA,
                   validation_fraction=0.15, test_fraction=0.15, seed=42, bins=10)
    train.run(workdir / "prepared" / "train", workdir / "prepared" / "validation",
              workdir / "model", workdir / "train-output",
              dict(train.HYPERPARAMETER_DEFAULTS, num_round=20))
    return workdir / "model"


def register_versions(fleet, home: Path, model_dir: Path) -> None:
    from mlops_kit.config import LocalSettings
    from mlops_kit.local.control_plane import local_registry
    from mlops_kit.registry.base import RegistrationRequest

    for model in fleet.models.values():
        registry = local_registry(LocalSettings(home, model.name, model.use_case, "bench"))
        for version in (1, 2):
            registered = registry.register(RegistrationRequest(
                model_group=model.name, model_artifact=str(model_dir),
                training_run_id=f"bench-{model.name}-{version}", metrics={"aupr": 0.6},
                latency={}, gates=[{"gate": "min_aupr", "passed": True}],
                lineage={"data": {}, "code": {}, "parameters": {}, "libraries": {}},
                owner="bench", use_case=model.use_case))
            if registered.version != version:
                raise SystemExit(f"{model.name}: registered v{registered.version}, not v{version}")


def promote_all(fleet, home: Path) -> list[dict[str, Any]]:
    """Model after model, v1 then v2 through every environment: each call's wall time."""
    from mlops_kit.config import LocalSettings
    from mlops_kit.deploy.promotion import promote
    from mlops_kit.homes.local_fleet import LocalFleetHome

    soak = {env.name: env.soak_minutes for env in fleet.environments}
    calls = []
    for index, model in enumerate(fleet.models.values()):
        fleet_home = LocalFleetHome(LocalSettings(home, model.name, model.use_case, "bench"))
        for version in (1, 2):
            for env in model.deploy_to:
                # The soak is judged on `now`: as if the environment's minutes had passed.
                later = timedelta(minutes=soak[env] + 1) if soak[env] else timedelta()
                now = datetime.now(timezone.utc) + later
                started = time.perf_counter()
                result = promote(fleet, fleet_home, model.name, version, env, actor="bench",
                                 reason=f"v{version} to {env}", now=now)
                seconds = time.perf_counter() - started
                if not result.promoted or (result.deployment or {}).get("action") != "deployed":
                    raise SystemExit(f"{model.name} v{version} to {env}: not deployed "
                                     f"({result.decision.reason}; {result.deployment})")
                calls.append({"model_index": index, "model": model.name, "version": version,
                              "environment": env, "seconds": seconds})
    return calls


def promotion_figures(calls: list[dict[str, Any]], count: int) -> dict[str, Any]:
    tenth = max(1, round(count * 0.1))

    def of(keep) -> dict[str, float]:
        return summary([c["seconds"] for c in calls if keep(c)], 1e3)
    return {"models_per_tenth": tenth, "first_tenth_ms": of(lambda c: c["model_index"] < tenth),
            "last_tenth_ms": of(lambda c: c["model_index"] >= count - tenth),
            "all_ms": of(lambda c: True),
            "by_environment_ms": {e: of(lambda c, e=e: c["environment"] == e)
                                  for e in dict.fromkeys(c["environment"] for c in calls)}}


def time_status(env: dict[str, str], expected_rows: int, repeat: int) -> dict[str, Any]:
    figures = {}
    for label, args in (("table", ["status", "--all"]), ("json", ["status", "--all", "--json"])):
        seconds = []
        for _ in range(repeat):
            started = time.perf_counter()
            out = subprocess.run([str(VENV_BIN / "mlops"), *args], env=env, cwd=ROOT,
                                 capture_output=True, text=True)
            seconds.append(time.perf_counter() - started)
            if out.returncode != 0:
                raise SystemExit(f"`mlops {' '.join(args)}` failed ({out.returncode}):\n"
                                 f"{(out.stderr or out.stdout)[-4000:]}")
            rows = len(json.loads(out.stdout)["fleet"]) if label == "json" else None
            if rows is not None and rows != expected_rows:
                raise SystemExit(f"`mlops status --all --json`: {rows} rows, not {expected_rows}")
        figures[label] = {"command": "mlops " + " ".join(args), "seconds": seconds,
                          "best": min(seconds), "median": statistics.median(seconds),
                          **({"rows": rows} if rows is not None else {})}
    return figures


def time_rollback(fleet, home: Path) -> dict[str, Any]:
    """One manual rollback of the last model in prod, as `mlops rollback --model M --env prod`
    makes it: the local backend opened (pending events delivered), the shift published."""
    from mlops_kit.config import LocalSettings
    from mlops_kit.homes.local import backend
    from mlops_kit.local.environments import environment_settings

    model = list(fleet.models.values())[-1]
    settings = environment_settings(LocalSettings(home, model.name, model.use_case, "bench"),
                                    model, "prod")
    started = time.perf_counter()
    outcome = backend(settings).manual_shift("rollback", settings.endpoint_name, None,
                                             actor="bench", reason="benchmark rollback")
    seconds = time.perf_counter() - started
    if outcome.action != "rolled_back":
        raise SystemExit(f"{model.name} prod rollback: {outcome.action} ({outcome.reason})")
    return {"model": model.name, "seconds": seconds, "from_version": outcome.from_version,
            "to_version": outcome.to_version}


def bench_local(count: int, repeat: int) -> dict[str, Any]:
    from mlops_kit.fleet.loader import FLEET_ENV, load_fleet

    with tempfile.TemporaryDirectory(prefix=f"bench-fleet-local-{count}-") as tmp:
        work = Path(tmp)
        fleet_dir, home = make_fleet_folder(work / "fleet", count), work / "home"
        os.environ[FLEET_ENV] = str(fleet_dir)  # where the controllers read the fleet
        fleet = load_fleet(fleet_dir)
        started = time.perf_counter()
        model_dir = train_model(work / "train")
        trained = time.perf_counter()
        register_versions(fleet, home, model_dir)
        registered = time.perf_counter()
        calls = promote_all(fleet, home)
        promoted = time.perf_counter()
        env = environment(MLOPS_HOME=str(home), MLOPS_FLEET=str(fleet_dir), MLOPS_OWNER="bench")
        status = time_status(env, count * len(fleet.environments), repeat)
        rollback = time_rollback(fleet, home)
    return {"models": count, "environments": list(fleet.environment_names),
            "train_seconds": trained - started, "register_seconds": registered - trained,
            "promote_all_seconds": promoted - registered, "promotions": len(calls),
            "promotion": promotion_figures(calls, count), "status": status,
            "rollback": rollback, "promotion_calls": calls}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="1,10,50", help="fleet sizes to synthesize")
    parser.add_argument("--status-models", type=int, default=None,
                        help="models of the local run (default: the largest --models; 0: none)")
    parser.add_argument("--status-repeat", type=int, default=5)
    parser.add_argument("--no-nag", action="store_true", help="synthesize without cdk-nag")
    parser.add_argument("--synth-worker", nargs=3, type=Path, help=argparse.SUPPRESS)
    add_json_argument(parser)
    args = parser.parse_args(argv)
    if args.synth_worker:
        synth_worker(*args.synth_worker, nag=not args.no_nag)
        return 0
    if not (ROOT / "pipelines" / "build" / "artifact-bucket").is_dir():
        raise SystemExit("pipelines/build/artifact-bucket is missing: run `make definition`")
    started = time.perf_counter()
    sizes = [int(n) for n in args.models.split(",") if n.strip()]
    synth = [bench_synth(count, nag=not args.no_nag) for count in sizes]
    status_models = max(sizes) if args.status_models is None else args.status_models
    local = bench_local(status_models, args.status_repeat) if status_models else None
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    doc = report("fleet_scale", {
        "measured": "synth with Lambda bundling on, cdk-nag " + ("off" if args.no_nag else "on"),
        "bundling": True, "nag": not args.no_nag, "synth": synth, "local": local,
        "limits": {"resources": CFN_MAX_RESOURCES, "template_bytes": CFN_MAX_TEMPLATE_BYTES}},
        started=started, node=node, packages=("aws-cdk-lib", "cdk-nag", "jsii", "constructs",
                                              "xgboost-cpu", "xgboost", "pydantic"))
    print_report(doc)
    if args.json:
        write_json(args.json, doc)
    return 0


def print_synth(synth: list[dict[str, Any]], nag: bool) -> None:
    print(f"(1) synth, a fresh process per fleet size, bundling on, cdk-nag "
          f"{'on' if nag else 'off'}:\n")
    print(table(["models", "stacks", "compose", "(bundling)", "synth", "compose + synth",
                 "process", "asset folders"],
                [[s["models"], s["stacks"], f"{s['compose_seconds']:.1f} s",
                  f"{s['bundling_seconds']:.1f} s ({s['bundles']})",
                  f"{s['synth_seconds']:.1f} s", f"{s['compose_and_synth_seconds']:.1f} s",
                  f"{s['process_seconds']:.1f} s", s["asset_folders"]] for s in synth]))
    print("\nMost resources / largest template in bytes, per stack kind:\n")
    print(table(["models", *KINDS], [[s["models"], *(
        f"{s['by_kind'][k]['max_resources']} / {s['by_kind'][k]['max_bytes']:,}"
        if k in s["by_kind"] else "-" for k in KINDS)] for s in synth]))
    print("\nEach environment's Control stack, resources / bytes:\n")
    print(table(["models", *(c["stack"] for c in synth[0]["control"])],
                [[s["models"], *(f"{c['resources']} / {c['bytes']:,}" for c in s["control"])]
                 for s in synth]))
    print("\nThe largest template against CloudFormation's limits:\n")
    print(table(["models", "most resources", "of 500", "largest file", "of 1,000,000 B"],
                [[s["models"], f"{r['stack']} ({r['resources']})", f"{r['of_limit']:.0%}",
                  f"{b['stack']} ({b['bytes']:,} B)", f"{b['of_limit']:.1%}"]
                 for s in synth for r, b in [(s["largest_by_resources"],
                                              s["largest_by_bytes"])]]))


def print_local(local: dict[str, Any]) -> None:
    p, tenth = local["promotion"], local["promotion"]["models_per_tenth"]
    print(f"\n(2) local control plane, {local['models']} models x {len(local['environments'])} "
          f"environments: {local['promotions']} promotions in "
          f"{local['promote_all_seconds']:.1f} s (not counted: training "
          f"{local['train_seconds']:.1f} s, registration {local['register_seconds']:.1f} s):\n")
    rows = [(f"first {tenth} model(s)", p["first_tenth_ms"]),
            (f"last {tenth} model(s)", p["last_tenth_ms"]), ("all", p["all_ms"]),
            *((f"all, to {e}", s) for e, s in p["by_environment_ms"].items())]
    print(table(["promote() calls", "n", "p50", "p95", "max"],
                [[label, s["n"], f"{s['p50']:.1f} ms", f"{s['p95']:.1f} ms",
                  f"{s['max']:.1f} ms"] for label, s in rows]) + "\n")
    print(table(["process", "best", "median", "runs", "rows"],
                [[f"`{s['command']}`", f"{s['best']:.2f} s", f"{s['median']:.2f} s",
                  len(s["seconds"]), s.get("rows", "")] for s in local["status"].values()]))
    r = local["rollback"]
    print(f"\nManual rollback in prod ({r['model']}, v{r['from_version']} -> "
          f"v{r['to_version']}, in-process, backend opened + manual_shift): "
          f"{r['seconds'] * 1e3:.0f} ms")


def print_report(doc: dict) -> None:
    print(machine_line(doc["machine"]) + f"; node {doc['machine'].get('node')}\n")
    if doc["results"]["synth"]:
        print_synth(doc["results"]["synth"], doc["results"]["nag"])
    if doc["results"]["local"]:
        print_local(doc["results"]["local"])


if __name__ == "__main__":
    sys.exit(main())
