"""The generated SageMaker pipeline definition (pipelines/definition.py, definition.json).

One module-scoped render in two separate, offline subprocesses (started first, so they run
while the steps run locally on small data for a real evaluation.json); every test reads those.
The pytest process never imports the SageMaker SDK.
"""

from __future__ import annotations

import copy
import difflib
import gzip
import hashlib
import io
import json
import operator
import os
import re
import socket
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from mlops_kit.core.gates import GATES, evaluate_gates, failed_summary, read_json_path
from mlops_pipelines import bundle, definition
from mlops_pipelines.parameters import PARAMETERS

REPO = Path(definition.__file__).resolve().parents[1]
RENDER_TIMEOUT_S = 300

# Runs in each render subprocess: any socket use, DNS lookup or botocore send is refused and
# recorded; a recorded attempt fails the render even if the SDK swallowed the error.
_OFFLINE_RENDER = r"""
import socket, sys
attempts = []

def _refuse(kind):
    def refuse(*args, **kwargs):
        attempts.append(f"{kind}{args[1:2]}")
        raise OSError(f"network disabled by the test ({kind})")
    return refuse

socket.socket.connect = _refuse("connect")
socket.socket.connect_ex = _refuse("connect_ex")
socket.create_connection = _refuse("create_connection")
socket.getaddrinfo = _refuse("getaddrinfo")
import botocore.endpoint
botocore.endpoint.Endpoint._send = _refuse("botocore-send")

from mlops_pipelines.definition import render_definition, stage_assets
text = render_definition()
stage_assets(sys.argv[1])
if attempts:
    sys.exit("network attempts while rendering: " + "; ".join(attempts))
sys.stdout.write(text)
"""

# What the CDK app substitutes (Fn::Sub), with values shaped like the real ones.
DEPLOY_VALUES = {
    "${ArtifactBucket}": "mlops-kit-artifacts-123456789012-us-east-1",
    "${PipelineRoleArn}": "arn:aws:iam::123456789012:role/mlops-kit-pipeline-role",
    "${ModelPackageGroupName}": "mlops-kit-fraud-models",
}
STEP_APIS = {
    "Processing": "CreateProcessingJob",
    "Training": "CreateTrainingJob",
    "RegisterModel": "CreateModelPackage",
}
# Members the pipeline service fills in per execution (the SDK pops them from the definition).
SERVICE_FILLED = {
    "CreateProcessingJob": {"ProcessingJobName": "pipelines-abc123-PreprocessData-x1"},
    "CreateTrainingJob": {"TrainingJobName": "pipelines-abc123-TrainModel-x1"},
    "CreateModelPackage": {},
}
EXPRESSION_KEYS = {"Get", "Std:JsonGet", "Std:Join"}
PARAMETER_TYPES = {"int": "Integer", "float": "Float", "str": "String"}


# ----------------------------------------------------------------------------------------------
# Fixtures


def _unused_local_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _offline_env(hash_seed: int) -> dict[str, str]:
    """No AWS configuration or credentials at all, proxies pointing at a closed local port."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "SAGEMAKER_", "BOTO_"))
           and k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}
    proxy = f"http://127.0.0.1:{_unused_local_port()}"
    env.update({"HTTP_PROXY": proxy, "HTTPS_PROXY": proxy, "http_proxy": proxy,
                "https_proxy": proxy, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                "AWS_CONFIG_FILE": os.devnull, "PYTHONHASHSEED": str(hash_seed),
                "PYTHONDONTWRITEBYTECODE": "1"})
    return env


@dataclass(frozen=True)
class RenderJob:
    process: subprocess.Popen
    definition: Path
    stderr: Path
    assets: Path


@pytest.fixture(scope="module")
def render_jobs(tmp_path_factory) -> Iterator[list[RenderJob]]:
    """Two renders in separate processes (different hash seeds), started at once; each also
    stages the objects the definition references."""
    root = tmp_path_factory.mktemp("render")
    jobs = []
    for seed in (1, 2):
        out, err, assets = (root / f"definition-{seed}.json", root / f"stderr-{seed}.txt",
                            root / f"assets-{seed}")
        with open(out, "wb") as stdout, open(err, "wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-c", _OFFLINE_RENDER, str(assets)], cwd=REPO,
                env=_offline_env(seed), stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL)
        jobs.append(RenderJob(process, out, err, assets))
    yield jobs
    for job in jobs:
        if job.process.poll() is None:
            job.process.kill()
            job.process.wait()


@pytest.fixture(scope="module")
def finished_jobs(render_jobs, evaluation) -> list[RenderJob]:
    """The renders, done. Waits for the local run first: it runs while the renders do."""
    for job in render_jobs:
        job.process.wait(timeout=RENDER_TIMEOUT_S)
        assert job.process.returncode == 0, f"render failed:\n{job.stderr.read_text()[-4000:]}"
    return render_jobs


@pytest.fixture(scope="module")
def rendered(finished_jobs) -> list[bytes]:
    return [job.definition.read_bytes() for job in finished_jobs]


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def pipeline(rendered) -> dict[str, Any]:
    return json.loads(rendered[0])


@pytest.fixture(scope="module")
def deployed(rendered) -> dict[str, Any]:
    """The definition as the CDK app deploys it: placeholders substituted."""
    return json.loads(substitute(rendered[0].decode(), DEPLOY_VALUES))


@pytest.fixture(scope="module")
def evaluation(render_jobs, tmp_path_factory) -> dict[str, Any]:
    """evaluation.json of a real local run of preprocess -> train -> evaluate on small data.
    (Requests render_jobs so that the renders are already running meanwhile.)"""
    import xgboost

    from mlops_kit.data.synthetic import generate
    from mlops_pipelines.steps import _io, evaluate, preprocess, train

    root = tmp_path_factory.mktemp("local-run")
    data = root / "data.parquet"
    _io.write_table(generate(4000, seed=1), data)
    pre, model, out = root / "pre", root / "model", root / "evaluation"
    # One XGBoost thread: the renders share the two cores, and threads only contend here.
    with xgboost.config_context(nthread=1):
        assert preprocess.main(["--input", str(data), "--output-dir", str(pre),
                                "--min-rows", "1000"]) == 0
        assert train.main(["--train-dir", str(pre / "train"),
                           "--validation-dir", str(pre / "validation"),
                           "--model-dir", str(model), "--output-data-dir", str(root / "train-out"),
                           "--mlflow-tracking-uri", "", "--num_round", "60"]) == 0
        assert evaluate.main(["--model", str(model), "--test-dir", str(pre / "test"),
                              "--train-dir", str(pre / "train"), "--output-dir", str(out),
                              "--latency-samples", "200"]) == 0
    return json.loads((out / "evaluation.json").read_text())


# ----------------------------------------------------------------------------------------------
# Helpers


def all_steps(steps: list[dict]) -> Iterator[dict]:
    for step in steps:
        yield step
        if step["Type"] == "Condition":
            yield from all_steps(step["Arguments"].get("IfSteps", []))
            yield from all_steps(step["Arguments"].get("ElseSteps", []))


def step_named(pipeline: dict, name: str) -> dict:
    found = [s for s in all_steps(pipeline["Steps"]) if s["Name"] == name]
    assert len(found) == 1, f"expected one step named {name}"
    return found[0]


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def is_expression(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in EXPRESSION_KEYS


def parameter_values(pipeline: dict) -> dict[str, Any]:
    return {p["Name"]: p["DefaultValue"] for p in pipeline["Parameters"]}


def substitute(text: str, values: dict[str, str]) -> str:
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    return text


def _dummy_for_shape(shape) -> Any:
    minimum = shape.metadata.get("min", 0)
    kind = shape.type_name
    if kind == "string":
        if "enum" in shape.metadata:
            return shape.metadata["enum"][0]
        return "x" * max(1, int(minimum))
    if kind in ("integer", "long"):
        return max(1, int(minimum))
    if kind in ("float", "double"):
        return float(max(1, minimum))
    if kind == "boolean":
        return True
    if kind == "list":
        return [_dummy_for_shape(shape.member)] * max(1, int(minimum))
    raise AssertionError(f"no dummy for a pipeline expression in a {kind} member")


def concretize(value: Any, shape, parameters: dict[str, Any]) -> Any:
    """Replace pipeline expressions with values of the type they evaluate to: a parameter's own
    default for `Get Parameters.X` (so a Float parameter in a string member is caught), a string
    for `Std:Join`, and a dummy of the member's type for step properties and JsonGet."""
    if is_expression(value):
        (kind, body), = value.items()
        if kind == "Get" and body.startswith("Parameters."):
            return parameters[body.removeprefix("Parameters.")]
        if kind == "Std:Join":
            return "joined-" + "x" * int(shape.metadata.get("min", 0))
        return _dummy_for_shape(shape)
    if shape.type_name == "structure" and isinstance(value, dict):
        return {key: concretize(item, shape.members[key], parameters)
                if key in shape.members else item for key, item in value.items()}
    if shape.type_name == "list" and isinstance(value, list):
        return [concretize(item, shape.member, parameters) for item in value]
    if shape.type_name == "map" and isinstance(value, dict):
        return {key: concretize(item, shape.value, parameters) for key, item in value.items()}
    return value


@pytest.fixture(scope="module")
def sagemaker_model():
    import botocore.session

    return botocore.session.get_session().get_service_model("sagemaker")


def request_for(step: dict, model, parameters: dict[str, Any]) -> tuple[str, dict]:
    api = STEP_APIS[step["Type"]]
    shape = model.operation_model(api).input_shape
    request = concretize(copy.deepcopy(step["Arguments"]), shape, parameters)
    for member, value in SERVICE_FILLED[api].items():
        assert member not in request, f"{member} must be left to the pipeline service"
        request[member] = value
    return api, request


def validation_report(model, api: str, request: dict) -> str:
    from botocore.validate import ParamValidator

    report = ParamValidator().validate(request, model.operation_model(api).input_shape)
    return report.generate_report() if report.has_errors() else ""


# ----------------------------------------------------------------------------------------------
# 1. Step arguments against botocore's request shapes


def test_every_job_step_matches_its_api_request_shape(deployed, sagemaker_model):
    parameters = parameter_values(deployed)
    checked = []
    for step in all_steps(deployed["Steps"]):
        if step["Type"] not in STEP_APIS:
            assert step["Type"] in ("Condition", "Fail"), f"unchecked step type {step['Type']}"
            continue
        api, request = request_for(step, sagemaker_model, parameters)
        report = validation_report(sagemaker_model, api, request)
        assert report == "", f"{step['Name']} ({api}):\n{report}"
        checked.append(api)
    assert sorted(checked) == sorted(["CreateProcessingJob", "CreateProcessingJob",
                                      "CreateTrainingJob", "CreateModelPackage"])


@pytest.mark.parametrize("step_name, required", [
    (definition.STEP_PREPROCESS, "AppSpecification"),
    (definition.STEP_TRAIN, "OutputDataConfig"),
    (definition.STEP_REGISTER, "InferenceSpecification"),
])
def test_validation_catches_missing_and_unknown_members(deployed, sagemaker_model, step_name,
                                                        required):
    parameters = parameter_values(deployed)
    broken = copy.deepcopy(step_named(deployed, step_name))
    broken["Arguments"]["Bogus"] = "not a member"
    if step_name == definition.STEP_REGISTER:
        # InferenceSpecification is optional on the API; its Containers are not.
        del broken["Arguments"][required]["Containers"]
        missing = "Containers"
    else:
        del broken["Arguments"][required]
        missing = required
    api, request = request_for(broken, sagemaker_model, parameters)
    report = validation_report(sagemaker_model, api, request)
    assert re.search(rf'Missing required parameter in [^:]+: "{missing}"', report), report
    assert 'Unknown parameter in input: "Bogus"' in report


def test_a_float_parameter_in_a_string_member_is_caught(deployed, sagemaker_model):
    """Why Get Parameters.X becomes the parameter's own value: hyperparameters are strings."""
    step = copy.deepcopy(step_named(deployed, definition.STEP_TRAIN))
    step["Arguments"]["HyperParameters"]["eta"] = {"Get": "Parameters.eta"}
    api, request = request_for(step, sagemaker_model, parameter_values(deployed))
    report = validation_report(sagemaker_model, api, request)
    assert len(report.splitlines()) == 1, report
    assert report.startswith("Invalid type for parameter HyperParameters.eta"), report


def test_placeholders_are_exactly_the_documented_ones(rendered):
    found = set(re.findall(r"\$\{[^}]*\}", rendered[0].decode()))
    assert found == set(definition.PLACEHOLDERS)
    assert all(definition.PLACEHOLDERS[p].strip() for p in found)
    # Fn::Sub would take any other "${" for a variable.
    assert rendered[0].decode().count("${") == sum(
        rendered[0].decode().count(p) for p in definition.PLACEHOLDERS)


# ----------------------------------------------------------------------------------------------
# 2. JsonGet paths against a real evaluation.json


def test_every_json_get_path_exists_in_a_real_evaluation(pipeline, evaluation):
    evaluate_step = step_named(pipeline, definition.STEP_EVALUATE)
    (property_file,) = evaluate_step["PropertyFiles"]
    outputs = evaluate_step["Arguments"]["ProcessingOutputConfig"]["Outputs"]
    assert property_file["OutputName"] in {o["OutputName"] for o in outputs}
    assert property_file["FilePath"] == "evaluation.json"
    reference = {"Get": f"Steps.{evaluate_step['Name']}.PropertyFiles."
                        f"{property_file['PropertyFileName']}"}

    json_gets = [node["Std:JsonGet"] for node in walk(pipeline["Steps"])
                 if isinstance(node, dict) and "Std:JsonGet" in node]
    paths = {get["Path"] for get in json_gets}
    assert {gate.json_path for gate in GATES} | {definition.FAILED_GATES_JSON_PATH} <= paths
    for get in json_gets:
        assert get["PropertyFile"] == reference
        value = read_json_path(evaluation, get["Path"])  # KeyError names a missing path
        assert value is not None and value != "", get["Path"]
    for gate in GATES:
        assert isinstance(read_json_path(evaluation, gate.json_path), (int, float))


# ----------------------------------------------------------------------------------------------
# 3. The ConditionStep decides as the local gates do


def evaluate_expression(expression: Any, document: dict, parameters: dict[str, Any]) -> Any:
    """A tiny interpreter of the expressions the ConditionStep and FailStep use."""
    if not is_expression(expression):
        return expression
    (kind, body), = expression.items()
    if kind == "Get":
        assert body.startswith("Parameters."), body
        return parameters[body.removeprefix("Parameters.")]
    if kind == "Std:JsonGet":
        return read_json_path(document, body["Path"])
    if kind == "Std:Join":
        return body["On"].join(str(evaluate_expression(v, document, parameters))
                               for v in body["Values"])
    raise AssertionError(kind)


COMPARISONS = {"GreaterThanOrEqualTo": operator.ge, "LessThanOrEqualTo": operator.le}


def run_condition_step(pipeline: dict, document: dict, parameters: dict[str, Any]
                       ) -> tuple[bool, set[str], list[dict]]:
    """(outcome, parameters of the failed conditions, steps taken)."""
    step = step_named(pipeline, definition.STEP_GATES)
    failed = set()
    for condition in step["Arguments"]["Conditions"]:
        left = evaluate_expression(condition["LeftValue"], document, parameters)
        right = evaluate_expression(condition["RightValue"], document, parameters)
        if not COMPARISONS[condition["Type"]](left, right):
            failed.add(condition["RightValue"]["Get"].removeprefix("Parameters."))
    outcome = not failed
    return outcome, failed, step["Arguments"]["IfSteps" if outcome else "ElseSteps"]


def threshold_cases(evaluation: dict) -> dict[str, dict[str, float]]:
    values = {g.name: float(read_json_path(evaluation, g.json_path)) for g in GATES}

    def passing(gate, value):
        return value - 1.0 if gate.comparison == ">=" else value + 1.0

    def failing(gate, value):
        return value + 0.001 if gate.comparison == ">=" else value - 0.001

    loose = {g.name: passing(g, values[g.name]) for g in GATES}
    cases = {"defaults": {}, "all-pass": loose, "at-the-boundary": dict(values)}
    for gate in GATES:
        cases[f"only-{gate.name}-fails"] = {**loose, gate.name: failing(gate, values[gate.name])}
    cases["all-fail"] = {g.name: failing(g, values[g.name]) for g in GATES}
    return cases


def test_condition_step_agrees_with_the_local_gates(pipeline, evaluation):
    cases = threshold_cases(evaluation)
    assert len(cases) == len(GATES) + 4
    for case, thresholds in cases.items():
        parameters = {**parameter_values(pipeline), **thresholds}
        verdicts = evaluate_gates(evaluation, {g.name: parameters[g.name] for g in GATES})
        # evaluate.py writes the failed-gates line for the thresholds it was given.
        document = {**evaluation, "gates_failed": failed_summary(verdicts)}
        outcome, failed, taken = run_condition_step(pipeline, document, parameters)

        assert outcome == all(v.passed for v in verdicts), case
        assert failed == {v.gate for v in verdicts if not v.passed}, case
        if outcome:
            assert [s["Type"] for s in taken] == ["RegisterModel"], case
        else:
            (fail,) = taken
            assert fail["Type"] == "Fail"
            message = evaluate_expression(fail["Arguments"]["ErrorMessage"], document,
                                          parameters)
            assert message.startswith(definition.FAIL_MESSAGE_PREFIX), case
            assert all(name in message for name in failed), (case, message)


def test_one_condition_per_gate_in_gate_order(pipeline):
    conditions = step_named(pipeline, definition.STEP_GATES)["Arguments"]["Conditions"]
    expected = [("GreaterThanOrEqualTo" if g.comparison == ">=" else "LessThanOrEqualTo",
                 g.json_path, g.name) for g in GATES]
    assert [(c["Type"], c["LeftValue"]["Std:JsonGet"]["Path"], c["RightValue"]["Get"])
            for c in conditions] == [(t, p, f"Parameters.{n}") for t, p, n in expected]


# ----------------------------------------------------------------------------------------------
# 4. Deterministic and offline


def test_renders_are_byte_identical_and_match_the_committed_file(rendered):
    first, second = rendered
    assert first == second, "two renders in separate processes differ"
    assert first.endswith(b"\n")
    committed = definition.DEFINITION_PATH.read_bytes()
    if first != committed:
        diff = difflib.unified_diff(committed.decode().splitlines(), first.decode().splitlines(),
                                    "committed", "rendered", n=0, lineterm="")
        pytest.fail("pipelines/definition.json is stale; regenerate it with `python -m "
                    "mlops_pipelines.definition` (or `mlops pipeline definition`):\n"
                    + "\n".join(list(diff)[:40]))


def test_bundles_are_deterministic_and_normalised():
    first, second = bundle.steps_bundle(), bundle.steps_bundle()
    assert first.data == second.data and first.sha256 == second.sha256
    with tarfile.open(fileobj=io.BytesIO(first.data)) as archive:
        members = archive.getmembers()
    assert [m.name for m in members] == sorted(m.name for m in members)
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}
    assert first.data[4:8] == b"\0\0\0\0"  # gzip header mtime


def test_staged_code_covers_every_code_uri(finished_jobs, rendered, tmp_path):
    """Each s3://${ArtifactBucket}/pipeline-code/... URI names staged objects (the same bytes
    from both renders); the bundle's shims run from the extracted bundle, importing the
    packages shipped inside it."""
    staged = tree(finished_jobs[0].assets)
    assert staged == tree(finished_jobs[1].assets)
    keys = set(staged)
    assert all(key.startswith("pipeline-code/") for key in keys)
    uris = set(re.findall(r"s3://\$\{ArtifactBucket\}/(pipeline-code/[^\"]+)",
                          rendered[0].decode()))
    assert uris
    for uri in uris:
        assert any(key == uri or key.startswith(uri.rstrip("/") + "/") for key in keys), uri

    # The training job's code channel is the steps bundle itself.
    channels = step_named(json.loads(rendered[0]), definition.STEP_TRAIN)["Arguments"][
        "InputDataConfig"]
    (code_uri,) = [c["DataSource"]["S3DataSource"]["S3Uri"] for c in channels
                   if c["ChannelName"] == "code"]
    steps_key = code_uri.removeprefix("s3://${ArtifactBucket}/")
    assert steps_key.endswith("/" + bundle.BUNDLE_NAME) and steps_key in keys
    digest = steps_key.split("/")[1]
    assert hashlib.sha256(gzip.decompress(staged[steps_key])).hexdigest() == digest
    extracted = tmp_path / "bundle"
    with tarfile.open(finished_jobs[0].assets / steps_key) as archive:
        archive.extractall(extracted, filter="data")
    probe = (
        "import runpy, sys\n"
        "for shim in ('preprocess.py', 'train.py', 'evaluate.py'):\n"
        "    sys.argv = [shim, '--help']\n"
        "    try:\n"
        "        runpy.run_path(shim, run_name='__main__')\n"
        "    except SystemExit as exit:\n"
        "        assert exit.code == 0, (shim, exit.code)\n"
        "import mlops_pipelines.steps.evaluate as e, mlops_kit.core.gates as g\n"
        "print(e.__file__); print(g.__file__)\n")
    result = subprocess.run([sys.executable, "-c", probe], cwd=extracted, capture_output=True,
                            text=True, timeout=120, env={**os.environ, "PYTHONNOUSERSITE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    for line in result.stdout.strip().splitlines()[-2:]:
        assert Path(line).resolve().is_relative_to(extracted.resolve()), line
    requirements = (extracted / bundle.REQUIREMENTS_FILE).read_text().split()
    assert all("==" in r for r in requirements) and any(r.startswith("pandera") for r in
                                                        requirements)


# ----------------------------------------------------------------------------------------------
# 5. Parameters and the scripts' command-line contract


def test_every_parameter_appears_with_its_default(pipeline):
    declared = {p["Name"]: p for p in pipeline["Parameters"]}
    assert len(declared) == len(pipeline["Parameters"]), "duplicate parameter names"
    for parameter in PARAMETERS:
        emitted = declared[parameter.name]
        assert emitted["Type"] == PARAMETER_TYPES[parameter.type], parameter.name
        assert emitted["DefaultValue"] == parameter.default, parameter.name
        assert type(emitted["DefaultValue"]) is {"int": int, "float": float, "str": str}[
            parameter.type], parameter.name
    for parameter in definition.AWS_PARAMETERS:
        assert declared[parameter.name]["DefaultValue"] == parameter.default
    assert declared["ModelApprovalStatus"]["DefaultValue"] == "PendingManualApproval"
    assert declared["ChampionModelUri"]["DefaultValue"] == ""
    assert declared["MlflowTrackingUri"]["DefaultValue"] == ""
    referenced = {node["Get"].removeprefix("Parameters.") for node in walk(pipeline["Steps"])
                  if isinstance(node, dict) and str(node.get("Get", "")).startswith("Parameters.")}
    assert referenced == set(declared), "declared but unused, or used but undeclared"


def command_line(arguments: list, parameters: dict[str, Any]) -> list[str]:
    return [str(evaluate_expression(a, {}, parameters)) for a in arguments]


def test_container_arguments_parse_as_the_scripts_expect(pipeline):
    from mlops_pipelines.steps import evaluate, preprocess, train

    parameters = parameter_values(pipeline)
    pre = preprocess.parse_args(command_line(
        step_named(pipeline, definition.STEP_PREPROCESS)
        ["Arguments"]["AppSpecification"]["ContainerArguments"], parameters))
    assert (pre.target, pre.validation_fraction, pre.test_fraction, pre.seed,
            pre.baseline_bins) == tuple(parameters[n] for n in (
                "target", "validation_fraction", "test_fraction", "seed", "baseline_bins"))

    hyperparameters = step_named(pipeline, definition.STEP_TRAIN)["Arguments"]["HyperParameters"]
    assert set(hyperparameters) == set(train.HYPERPARAMETER_DEFAULTS) | {"mlflow-tracking-uri"}
    argv = [part for name, value in sorted(hyperparameters.items())
            for part in (f"--{name}", str(evaluate_expression(value, {}, parameters)))]
    trained = train.parse_args(argv)
    for name in train.HYPERPARAMETER_DEFAULTS:
        assert getattr(trained, name) == parameters[name], name
    assert trained.mlflow_tracking_uri == ""

    evaluated = evaluate.parse_args(command_line(
        step_named(pipeline, definition.STEP_EVALUATE)
        ["Arguments"]["AppSpecification"]["ContainerArguments"], parameters))
    assert evaluated.champion_model == ""
    for gate in GATES:
        assert getattr(evaluated, gate.name) == parameters[gate.name], gate.name
