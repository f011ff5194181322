"""One serving contract for both homes: the local endpoint answers as the deployed model does.

The deployed side is `pipelines/steps/inference.py` run by the real `sagemaker-inference` toolkit
(the library SageMaker's XGBoost 3.0-5 container serves script-mode handlers with): the file is
copied alone into a model directory's `code/` (as it ships), the toolkit's `DefaultHandlerService`
loads it with the environment `mlops_kit.aws.models.ensure_model` gives the model, and each
request goes through `handle(data, context)` with a stand-in for Multi Model Server's request
context. What the container would send is the status, content type and body the toolkit sets.
The SageMaker runtime's rule for a container answer that is not 2xx (HTTP 424 `ModelError`,
`OriginalStatusCode` = the container's status, `OriginalMessage` = its body) is written out in
the assertions below, not borrowed from the server's code.

The local side is a real `mlops serve` process (the module's `server` fixture), over HTTP and
through a boto3 `sagemaker-runtime` client.
"""

from __future__ import annotations

import ast
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlops_kit.aws.models import SERVING_ENVIRONMENT
from mlops_pipelines.steps import inference

from .conftest import ENDPOINT

INFERENCE_PY = Path(inference.__file__)
USER_MODULE = "inference"  # SAGEMAKER_PROGRAM=inference.py, as pipelines/definition.py sets it


class _RequestProcessor:
    def __init__(self, headers: dict[str, str]):
        self._headers = headers

    def get_request_properties(self) -> dict[str, str]:
        return self._headers


class MmsContext:
    """What the toolkit reads from and writes to Multi Model Server's `Context` for one request:
    the request headers, the model directory, the response status and content type."""

    def __init__(self, model_dir: Path, headers: dict[str, str] | None = None):
        self.system_properties = {"model_dir": str(model_dir)}
        self.request_processor = [_RequestProcessor(headers or {})]
        self.status = 200
        self.phrase = ""
        self.content_type: str | None = None

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        self.status, self.phrase = code, phrase

    def set_response_content_type(self, idx: int, value: str) -> None:
        self.content_type = value


@dataclass(frozen=True)
class ContainerAnswer:
    status: int
    content_type: str | None
    body: bytes


class Container:
    """The deployed model: the handlers under the toolkit, in this process."""

    def __init__(self, model_dir: Path, service):
        self.model_dir = model_dir
        self.service = service

    def invoke(self, body: bytes, headers: dict[str, str]) -> ContainerAnswer:
        context = MmsContext(self.model_dir, headers)
        (answer,) = self.service.handle([{"body": bytearray(body)}], context)
        if isinstance(answer, str):
            answer = answer.encode("utf-8")
        return ContainerAnswer(context.status, context.content_type, bytes(answer))


def load_container(model_dir: Path, environment: dict[str, str]) -> Container:
    """Start the toolkit's handler service on `model_dir` as the container does: the model's
    environment in os.environ and model/code importable while it initializes. The toolkit reads
    both only then (its `Environment` is a snapshot), so both are restored right after: the
    local server and other tests see neither."""
    from sagemaker_inference.default_handler_service import DefaultHandlerService

    patch = pytest.MonkeyPatch()
    try:
        for name in ("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", "SAGEMAKER_PROGRAM"):
            patch.delenv(name, raising=False)
        for name, value in {**environment, "SAGEMAKER_PROGRAM": INFERENCE_PY.name}.items():
            patch.setenv(name, value)
        patch.setenv("PYTHONPATH", "")  # initialize() prepends model/code to it
        patch.syspath_prepend(str(model_dir / "code"))  # what PYTHONPATH does for MMS workers
        sys.modules.pop(USER_MODULE, None)
        service = DefaultHandlerService()
        service.initialize(MmsContext(model_dir))
        # The toolkit loaded the copy that ships, not the kit's package module.
        assert Path(sys.modules[USER_MODULE].__file__).parent == model_dir / "code"
        return Container(model_dir, service)
    finally:
        sys.modules.pop(USER_MODULE, None)
        patch.undo()


@pytest.fixture(scope="module")
def container(tmp_path_factory, model_versions):
    """The inference bundle's files in model/code/ (what SAGEMAKER_SUBMIT_DIRECTORY unpacks),
    beside the v3 model the local server's champion serves; the toolkit configured by the
    model's environment (SERVING_ENVIRONMENT)."""
    from mlops_pipelines.bundle import inference_files

    model_dir = tmp_path_factory.mktemp("opt-ml") / "model"
    shutil.copytree(model_versions[3], model_dir)
    for name, data in inference_files().items():
        (model_dir / "code" / name).parent.mkdir(parents=True, exist_ok=True)
        (model_dir / "code" / name).write_bytes(data)
    return load_container(model_dir, SERVING_ENVIRONMENT)


@dataclass(frozen=True)
class Case:
    name: str
    body: bytes
    headers: dict[str, str]


def cases(lines: list[str], objects: list[dict]) -> list[Case]:
    one, five = lines[0].encode(), "\n".join(lines[:5]).encode()
    instances = json.dumps({"instances": objects[:3]}).encode()
    csv, as_json = {"Content-Type": "text/csv"}, {"Content-Type": "application/json"}
    return [
        Case("csv row, accept csv", one, {**csv, "Accept": "text/csv"}),
        Case("csv rows, accept json", five, {**csv, "Accept": "application/json"}),
        Case("json instances, accept json", instances, {**as_json, "Accept": "application/json"}),
        Case("json row list, accept csv", json.dumps(lines[0].split(",")).encode(),
             {**as_json, "Accept": "text/csv"}),
        Case("no accept", one, csv),
        Case("accept */*", one, {**csv, "Accept": "*/*"}),
        Case("accept list with q", one, {**csv, "Accept": "text/html, application/json;q=0.9"}),
        Case("accept with charset", five, {**csv, "Accept": "text/csv; charset=utf-8"}),
        Case("content type with charset", one, {"Content-Type": "text/csv; charset=utf-8"}),
        Case("no content type", one, {}),
        Case("too few columns", b"1,2,3", csv),
        Case("non-numeric value", ("abc," + lines[0].split(",", 1)[1]).encode(), csv),
        Case("beyond float32", ("1e39," + lines[0].split(",", 1)[1]).encode(), csv),
        Case("empty body", b"", csv),
        Case("not utf-8", b"\xff\xfe", csv),
        Case("not utf-8, charset given", b"\xff\xfe", {"Content-Type": "text/csv; charset=utf-8"}),
        Case("lone carriage return", lines[0].encode().replace(b",", b"\r", 1), csv),
        Case("bad json", b"{nope", as_json),
        Case("bare json object", json.dumps(objects[0]).encode(), as_json),
        Case("unknown json feature", json.dumps([{"bogus": 1}]).encode(), as_json),
        Case("unsupported content type", one, {"Content-Type": "application/x-npy"}),
        Case("unsupported accept", one, {**csv, "Accept": "image/png"}),
    ]


# The names are needed when tests are collected; the real rows come from a session fixture.
CASE_NAMES = [c.name for c in cases(["1,2"], [{}])]
REFUSED_BEFORE_THE_HANDLERS = {"not utf-8": 500}
"""The toolkit decodes a `text/csv` or `application/json` body (exactly those spellings) as UTF-8
itself before `input_fn` runs: bytes that are not UTF-8 are its own 500, which no handler can
turn into a 400. Every other refusal is the handlers' own 4xx."""


@pytest.fixture(scope="module")
def payloads(sample_rows) -> dict[str, Case]:
    lines, objects, _ = sample_rows
    return {case.name: case for case in cases(lines, objects)}


def local(server, path: str, case: Case):
    return server.request("POST", path, case.body, case.headers)


def the_message(container_body: bytes) -> str:
    """The handler's message: the toolkit answers `message + "\\n" + traceback`."""
    return container_body.decode("utf-8").split("\n", 1)[0]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_the_local_endpoint_answers_as_the_deployed_model(container, server, payloads, name):
    case = payloads[name]
    deployed = container.invoke(case.body, case.headers)
    status, headers, body = local(server, server.path, case)
    assert headers["x-amzn-RequestId"]

    if 200 <= deployed.status < 300:
        assert (status, headers["Content-Type"], body) == (
            deployed.status, deployed.content_type, deployed.body)
        assert headers["X-Amzn-Invoked-Production-Variant"] == "v3"
        return
    # A handler's refusal reaches the container's caller as a client error with the reason:
    # a 500 here would mean the handler let an exception through that the toolkit cannot map.
    if name in REFUSED_BEFORE_THE_HANDLERS:
        assert deployed.status == REFUSED_BEFORE_THE_HANDLERS[name], deployed
    else:
        assert 400 <= deployed.status < 500, deployed
    # ... and the SageMaker runtime's caller as 424 ModelError carrying that status and body.
    error = json.loads(body)
    assert (status, headers["Content-Type"], headers["X-Amzn-ErrorType"]) == (
        424, "application/json", "ModelError")
    assert error["OriginalStatusCode"] == deployed.status
    assert error["OriginalMessage"] == the_message(deployed.body)
    assert error["OriginalMessage"] in error["Message"]
    assert "X-Amzn-Invoked-Production-Variant" not in headers


@pytest.mark.parametrize("name", CASE_NAMES)
def test_the_container_path_answers_as_the_container(container, server, payloads, name):
    case = payloads[name]
    deployed = container.invoke(case.body, case.headers)
    status, headers, body = local(server, "/invocations", case)
    assert status == deployed.status
    if status == 200:
        assert (headers["Content-Type"], body) == (deployed.content_type, deployed.body)
    else:
        assert body.decode() == the_message(deployed.body)


def test_the_statuses_the_handlers_give(container, payloads):
    """What the contract promises, stated once: the toolkit's status per kind of request."""
    expected = {"csv row, accept csv": (200, "text/csv"),
                "json instances, accept json": (200, "application/json"),
                "no accept": (200, inference.DEFAULT_ACCEPT),
                "accept */*": (200, inference.DEFAULT_ACCEPT),
                "no content type": (200, "text/csv"),
                "too few columns": (400, None), "bad json": (400, None),
                "not utf-8": (500, None), "not utf-8, charset given": (400, None),
                "unsupported content type": (415, None), "unsupported accept": (406, None)}
    got = {}
    for name in expected:
        answer = container.invoke(payloads[name].body, payloads[name].headers)
        got[name] = (answer.status, answer.content_type)
    assert got == expected
    assert SERVING_ENVIRONMENT["SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"] == inference.DEFAULT_ACCEPT


def test_without_the_models_environment_the_container_answers_json(container, payloads):
    """Why ensure_model sets SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT: the toolkit's own default."""
    bare = load_container(container.model_dir, {})
    case = payloads["no accept"]
    answer = bare.invoke(case.body, case.headers)
    assert (answer.status, answer.content_type) == (200, "application/json")
    assert "predictions" in json.loads(answer.body)


# -- through botocore, as a client on AWS would call it -----------------------------------------

@pytest.fixture(scope="module")
def runtime(server):
    import boto3
    from botocore.config import Config

    return boto3.client("sagemaker-runtime", endpoint_url=f"http://127.0.0.1:{server.port}",
                        region_name="us-east-1", aws_access_key_id="local",
                        aws_secret_access_key="local",
                        config=Config(retries={"max_attempts": 1, "mode": "standard"}))


def test_boto3_reads_a_score_as_from_sagemaker(runtime, container, payloads):
    case = payloads["no accept"]
    response = runtime.invoke_endpoint(EndpointName=ENDPOINT, Body=case.body,
                                       ContentType="text/csv")
    body = response["Body"].read()
    assert (response["ContentType"], response["InvokedProductionVariant"]) == ("text/csv", "v3")
    assert body == container.invoke(case.body, case.headers).body
    assert 0.0 <= float(body) <= 1.0  # the client that broke on AWS: works in both homes now
    assert response["ResponseMetadata"]["RequestId"]


@pytest.mark.parametrize("name", ["too few columns", "unsupported content type",
                                  "unsupported accept"])
def test_boto3_reads_a_bad_payload_as_a_model_error(runtime, container, payloads, name):
    case = payloads[name]
    deployed = container.invoke(case.body, case.headers)
    accept = {"Accept": case.headers["Accept"]} if "Accept" in case.headers else {}
    with pytest.raises(runtime.exceptions.ModelError) as caught:
        runtime.invoke_endpoint(EndpointName=ENDPOINT, Body=case.body,
                                ContentType=case.headers["Content-Type"], **accept)
    response = caught.value.response
    assert response["Error"]["Code"] == "ModelError"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert response["ResponseMetadata"]["RequestId"]
    assert response["OriginalStatusCode"] == deployed.status
    assert response["OriginalMessage"] == the_message(deployed.body)
    assert the_message(deployed.body) in response["Error"]["Message"]


def test_boto3_reads_an_unknown_endpoint_as_sagemaker_reports_it(runtime, payloads):
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as caught:
        runtime.invoke_endpoint(EndpointName="no-such-endpoint",
                                Body=payloads["no accept"].body, ContentType="text/csv")
    response = caught.value.response
    assert (response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]) == (
        "ValidationError", 400)
    assert response["Error"]["Message"].startswith(
        "Endpoint no-such-endpoint of account 000000000000 not found.")


def test_the_shipped_handlers_import_only_what_the_container_has(container):
    """The inference bundle: besides the standard library its files import only numpy,
    xgboost and the toolkit (present in the container), and of the kit only modules the bundle
    itself ships."""
    code = container.model_dir / "code"
    shipped = {p.relative_to(code).with_suffix("").as_posix().replace("/", ".")
               for p in code.rglob("*.py")}
    outside: set[str] = set()
    for path in code.rglob("*.py"):
        tree = ast.parse(path.read_text())
        assert not any(isinstance(node, ast.ImportFrom) and node.level
                       for node in ast.walk(tree)), path
        modules = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                   for alias in node.names}
        modules |= {node.module for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and node.module}
        kit = {m for m in modules if m.split(".")[0] == "mlops_kit"}
        assert kit <= shipped, f"{path.name} imports kit modules the bundle lacks: {kit - shipped}"
        outside |= {m.split(".")[0] for m in modules - kit}
    outside -= set(sys.stdlib_module_names) | {"__future__"}
    assert outside == {"numpy", "xgboost", "sagemaker_inference"}
