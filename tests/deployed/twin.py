"""The deployed twin: the synthesized templates of a stage, "deployed" into moto, and the
Lambdas run as their own roles.

- `Resolver` turns the templates' intrinsics (Ref, GetAtt, Join, Sub, ImportValue, ...) into
  concrete values, so environments, policies and alarm properties are the template's own.
- `deploy()` creates in moto what the functions touch (tables with the template's keys,
  buckets, topic, queues, streams, the model package group) and one IAM role per function with
  exactly the template's policies.
- `Principal` assumes a function's role (moto STS) and runs code with its credentials while
  moto enforces IAM; moto checks resources only for S3, SQS, IAM and STS, so every recorded
  call's resource ARN is also checked here against the template's statements, with the ARN
  formats of AWS's service authorization data (policy_sentry).
"""

from __future__ import annotations

import contextlib
import copy
import fnmatch
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterator

import botocore.client
import botocore.exceptions

ACCOUNT = "123456789012"
REGION = "us-east-1"
PARTITION = "aws"
LAYER_ARN = (f"arn:aws:lambda:{REGION}:017000801446:layer:"
             "AWSLambdaPowertoolsPythonV3-python312-x86_64:1")


# -- intrinsics -------------------------------------------------------------------------------

def _physical_name(stack: str, logical: str, limit: int = 63) -> str:
    digest = hashlib.sha1(f"{stack}/{logical}".encode()).hexdigest()[:8]
    base = f"{stack}-{logical}"[: limit - 9]
    return f"{base}-{digest}"


class Resolver:
    """Concrete values for every resource of the templates (names as CloudFormation would
    generate them: `<stack>-<logical id>-<hash>`) and the intrinsics that reference them."""

    def __init__(self, templates: dict[str, dict]):
        self.templates = templates
        self.attributes: dict[tuple[str, str], dict[str, str]] = {}
        for stack, template in templates.items():
            for logical, resource in template["Resources"].items():
                self.attributes[(stack, logical)] = self._attributes(
                    stack, logical, resource["Type"], resource.get("Properties", {}))
        self.exports: dict[str, tuple[str, Any]] = {}
        for stack, template in templates.items():
            for output in template.get("Outputs", {}).values():
                if "Export" in output:
                    name = self.resolve(stack, output["Export"]["Name"])
                    self.exports[name] = (stack, output["Value"])

    def _attributes(self, stack: str, logical: str, kind: str, props: dict) -> dict[str, str]:
        lower = _physical_name(stack, logical).lower()
        name = _physical_name(stack, logical)
        # A name the template gives (a fleet's registry ledger and bucket, named because other
        # stacks' policies name them) is the resource's name, as in CloudFormation.
        given = props.get({"AWS::S3::Bucket": "BucketName",
                           "AWS::DynamoDB::Table": "TableName"}.get(kind, ""))
        if given is not None:
            lower = name = str(self.resolve(stack, given))
        arn = f"arn:{PARTITION}"
        if kind == "AWS::S3::Bucket":
            return {"Ref": lower, "Arn": f"{arn}:s3:::{lower}"}
        if kind == "AWS::DynamoDB::Table":
            return {"Ref": name, "Arn": f"{arn}:dynamodb:{REGION}:{ACCOUNT}:table/{name}"}
        if kind == "AWS::KMS::Key":
            key = hashlib.sha1(name.encode()).hexdigest()[:32]
            return {"Ref": key, "Arn": f"{arn}:kms:{REGION}:{ACCOUNT}:key/{key}",
                    "KeyId": key}
        if kind == "AWS::SNS::Topic":
            topic = f"{arn}:sns:{REGION}:{ACCOUNT}:{name}"
            return {"Ref": topic, "TopicArn": topic, "TopicName": name}
        if kind == "AWS::SQS::Queue":
            return {"Ref": f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}",
                    "Arn": f"{arn}:sqs:{REGION}:{ACCOUNT}:{name}", "QueueName": name}
        if kind == "AWS::IAM::Role":
            role = _physical_name(stack, logical, 64)
            return {"Ref": role, "Arn": f"{arn}:iam::{ACCOUNT}:role/{role}", "RoleId": role}
        if kind == "AWS::Lambda::Function":
            fn = _physical_name(stack, logical, 64)
            return {"Ref": fn, "Arn": f"{arn}:lambda:{REGION}:{ACCOUNT}:function:{fn}"}
        if kind == "AWS::Kinesis::Stream":
            return {"Ref": name, "Arn": f"{arn}:kinesis:{REGION}:{ACCOUNT}:stream/{name}"}
        if kind == "AWS::SageMaker::ModelPackageGroup":
            group = props["ModelPackageGroupName"]
            group_arn = f"{arn}:sagemaker:{REGION}:{ACCOUNT}:model-package-group/{group}"
            return {"Ref": group_arn, "ModelPackageGroupArn": group_arn}
        if kind == "AWS::Events::Rule":
            return {"Ref": name, "Arn": f"{arn}:events:{REGION}:{ACCOUNT}:rule/{name}"}
        if kind == "AWS::Logs::LogGroup":
            return {"Ref": name, "Arn": f"{arn}:logs:{REGION}:{ACCOUNT}:log-group:{name}:*"}
        return {"Ref": name, "Arn": f"{arn}:unknown:{REGION}:{ACCOUNT}:{name}"}

    def _parameter(self, stack: str, name: str) -> str:
        parameter = self.templates[stack].get("Parameters", {}).get(name)
        if parameter is None:
            raise KeyError(f"{stack}: no resource or parameter {name}")
        if parameter["Type"].startswith("AWS::SSM::Parameter::Value"):
            return LAYER_ARN  # the only SSM parameter: the pinned Powertools layer
        return str(parameter.get("Default", ""))

    def ref(self, stack: str, name: str) -> str:
        pseudo = {"AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::Partition": PARTITION,
                  "AWS::URLSuffix": "amazonaws.com", "AWS::StackName": stack,
                  "AWS::NoValue": None}
        if name in pseudo:
            return pseudo[name]
        if (stack, name) in self.attributes:
            return self.attributes[(stack, name)]["Ref"]
        return self._parameter(stack, name)

    def resolve(self, stack: str, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(stack, v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            if key == "Ref":
                return self.ref(stack, arg)
            if key == "Fn::GetAtt":
                logical, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.attributes[(stack, logical)][attribute]
            if key == "Fn::Join":
                sep, parts = arg
                return sep.join(str(self.resolve(stack, p)) for p in parts)
            if key == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else arg
                variables = {k: self.resolve(stack, v) for k, v in variables.items()}

                def sub(match: re.Match) -> str:
                    name = match.group(1)
                    if name in variables:
                        return str(variables[name])
                    if "." in name:
                        logical, attribute = name.split(".", 1)
                        return self.attributes[(stack, logical)][attribute]
                    return str(self.ref(stack, name))
                return re.sub(r"\$\{([^}!]+)\}", sub, text)
            if key == "Fn::ImportValue":
                exporter, exported = self.exports[self.resolve(stack, arg)]
                return self.resolve(exporter, exported)
            if key == "Fn::Select":
                index, items = arg
                return self.resolve(stack, items)[int(index)]
            if key == "Fn::Split":
                sep, text = arg
                return str(self.resolve(stack, text)).split(sep)
        return {k: self.resolve(stack, v) for k, v in value.items()}

    # -- finders --------------------------------------------------------------------------
    def resources(self, stack: str, kind: str) -> dict[str, dict]:
        return {logical: r for logical, r in self.templates[stack]["Resources"].items()
                if r["Type"] == kind}

    def properties(self, stack: str, logical: str) -> dict:
        return self.resolve(stack, self.templates[stack]["Resources"][logical]
                            .get("Properties", {}))


@dataclass
class Function:
    """One Lambda of the Control stack, as the template defines it."""
    name: str
    """The kit's function folder (deployment_controller, ...)."""
    logical_id: str
    function_name: str
    environment: dict[str, str]
    role_name: str
    statements: list[dict]
    properties: dict


@dataclass
class Stage:
    name: str
    templates: dict[str, dict]
    resolver: Resolver
    functions: dict[str, Function] = field(default_factory=dict)
    also: tuple[str, ...] = ()
    """Other stacks whose tables, buckets, topics, queues, streams and package groups the
    functions also use, deployed with the stage (a one-account fleet's registry: dev's
    Stateful and the Registry stack)."""

    @property
    def control(self) -> str:
        return f"MlopsKit-{self.name}-Control"

    @property
    def stateful(self) -> str:
        return f"MlopsKit-{self.name}-Stateful"

    def rules(self) -> dict[str, dict]:
        return {logical: self.resolver.properties(self.control, logical)
                for logical in self.resolver.resources(self.control, "AWS::Events::Rule")}

    def alarms(self) -> dict[str, dict]:
        found = {}
        for logical in self.resolver.resources(self.control, "AWS::CloudWatch::Alarm"):
            props = self.resolver.properties(self.control, logical)
            found[props["AlarmName"]] = props
        return found

    def output(self, stack: str, name: str) -> Any:
        return self.resolver.resolve(stack, self.templates[stack]["Outputs"][name]["Value"])


def load_stage(name: str, templates: dict[str, dict], also: tuple[str, ...] = ()) -> Stage:
    resolver = Resolver(templates)
    stage = Stage(name, templates, resolver, also=tuple(also))
    control = stage.control
    roles_policies: dict[str, list[dict]] = {}
    for logical in resolver.resources(control, "AWS::IAM::Policy"):
        props = resolver.properties(control, logical)
        for role in props["Roles"]:
            roles_policies.setdefault(role, []).extend(props["PolicyDocument"]["Statement"])
    for logical, resource in resolver.resources(control, "AWS::Lambda::Function").items():
        props = resolver.properties(control, logical)
        description = props.get("Description", "")
        match = re.match(r"mlops-kit (\w+) \(", description)
        if not match:
            continue
        role_arn = props["Role"]
        role_name = role_arn.rsplit("/", 1)[1]
        stage.functions[match.group(1)] = Function(
            match.group(1), logical, resolver.ref(control, logical),
            props.get("Environment", {}).get("Variables", {}), role_name,
            roles_policies.get(role_name, []), props)
    return stage


# -- the stage in moto ------------------------------------------------------------------------

MOTO_RESOURCE_BLIND = ("sagemaker:", "dynamodb:", "cloudwatch:", "sns:", "kinesis:", "lambda:",
                       "kms:", "logs:", "xray:")
"""Services for which moto authorises against resource "*" (a statement scoped to an ARN would
deny there): their resources are checked by `ResourceCheck` instead."""
MOTO_ACTION_ALIASES = {"cloudwatch:GetMetricData": ["monitoring:GetMetricData"],
                       "dynamodb:PutItem": ["dynamodb:TransactWriteItems"],
                       "dynamodb:UpdateItem": ["dynamodb:TransactWriteItems"]}
"""moto names these differently: it checks TransactWriteItems (not an IAM action: AWS checks
each item's PutItem/UpdateItem) and monitoring:GetMetricData."""


def moto_policy(statements: list[dict]) -> dict:
    """The template's statements as moto can enforce them: resources widened to "*" where moto
    compares against "*", moto's action names added; conditions dropped (moto ignores them)."""
    adjusted = []
    for statement in copy.deepcopy(statements):
        actions = statement["Action"] if isinstance(statement["Action"], list) \
            else [statement["Action"]]
        extra = [alias for a in actions for alias in MOTO_ACTION_ALIASES.get(a, [])]
        statement["Action"] = sorted(set(actions + extra))
        if all(a.startswith(MOTO_RESOURCE_BLIND) for a in actions):
            statement["Resource"] = "*"
        statement.pop("Condition", None)
        adjusted.append(statement)
    return {"Version": "2012-10-17", "Statement": adjusted}


def deploy(stage: Stage, clients) -> None:
    """What the functions touch, created in moto as the templates define it."""
    r, stateful, control = stage.resolver, stage.stateful, stage.control
    for stack in (stateful, control, *stage.also):
        for logical in r.resources(stack, "AWS::DynamoDB::Table"):
            props = r.properties(stack, logical)
            clients("dynamodb").create_table(
                TableName=r.ref(stack, logical), KeySchema=props["KeySchema"],
                AttributeDefinitions=props["AttributeDefinitions"],
                BillingMode="PAY_PER_REQUEST")
        for logical in r.resources(stack, "AWS::S3::Bucket"):
            clients("s3").create_bucket(Bucket=r.ref(stack, logical))
        for logical in r.resources(stack, "AWS::SNS::Topic"):
            clients("sns").create_topic(Name=r.attributes[(stack, logical)]["TopicName"])
        for logical in r.resources(stack, "AWS::SQS::Queue"):
            clients("sqs").create_queue(QueueName=r.attributes[(stack, logical)]["QueueName"])
        for logical in r.resources(stack, "AWS::Kinesis::Stream"):
            clients("kinesis").create_stream(StreamName=r.ref(stack, logical),
                                             StreamModeDetails={"StreamMode": "ON_DEMAND"})
        for logical in r.resources(stack, "AWS::SageMaker::ModelPackageGroup"):
            props = r.properties(stack, logical)
            clients("sagemaker").create_model_package_group(
                ModelPackageGroupName=props["ModelPackageGroupName"])
    iam = clients("iam")
    for logical in r.resources(control, "AWS::IAM::Role"):
        props = r.properties(control, logical)
        iam.create_role(RoleName=r.ref(control, logical),
                        AssumeRolePolicyDocument=json.dumps(props["AssumeRolePolicyDocument"]))
    for fn in stage.functions.values():
        iam.put_role_policy(RoleName=fn.role_name, PolicyName="template",
                            PolicyDocument=json.dumps(moto_policy(fn.statements)))


# -- running as a function's role -------------------------------------------------------------

@dataclass
class Call:
    access_key: str
    service: str
    operation: str
    params: dict
    error: str = ""
    """The error code the call ended with ("" when it succeeded)."""


class CallRecorder:
    """Every AWS API call made in the process (moto- or Stubber-answered), with the access key
    that signed it."""

    def __init__(self) -> None:
        self.calls: list[Call] = []

    @contextlib.contextmanager
    def recording(self) -> Iterator["CallRecorder"]:
        original = botocore.client.BaseClient._make_api_call
        recorder = self

        def make_api_call(client, operation_name, api_params):
            credentials = client._request_signer._credentials
            key = credentials.get_frozen_credentials().access_key if credentials else ""
            call = Call(key, client.meta.service_model.service_name, operation_name,
                        copy.deepcopy(api_params))
            recorder.calls.append(call)
            try:
                return original(client, operation_name, api_params)
            except botocore.exceptions.ClientError as exc:
                call.error = str(exc.response.get("Error", {}).get("Code", "ClientError"))
                raise
            except Exception as exc:  # moto's NotImplementedError and the like
                call.error = type(exc).__name__
                raise

        botocore.client.BaseClient._make_api_call = make_api_call
        try:
            yield self
        finally:
            botocore.client.BaseClient._make_api_call = original


def enforce_iam(enabled: bool) -> None:
    """moto's IAM enforcement on (every request authorised) or off (setup as the test)."""
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin

    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0 if enabled else float("inf")
    ActionAuthenticatorMixin.request_count = 0


@contextlib.contextmanager
def as_function(stage: Stage, name: str, clients, recorder: CallRecorder,
                monkeypatch) -> Iterator[str]:
    """Run as function `name`: its role's credentials in the environment (as Lambda sets them),
    exactly its template environment, moto enforcing IAM. Yields the access key."""
    fn = stage.functions[name]
    credentials = clients("sts").assume_role(
        RoleArn=f"arn:aws:iam::{ACCOUNT}:role/{fn.role_name}",
        RoleSessionName=name)["Credentials"]
    for variable, value in lambda_runtime_environment(fn, credentials).items():
        monkeypatch.setenv(variable, value)
    # Each function is its own process in Lambda: no boto3 session (and its cached
    # credentials) carries over from another function's run.
    import boto3

    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    enforce_iam(True)
    try:
        yield credentials["AccessKeyId"]
    finally:
        enforce_iam(False)


def lambda_runtime_environment(fn: Function, credentials: dict) -> dict[str, str]:
    """What Lambda's runtime sets, plus the function's own variables from the template."""
    return {"AWS_ACCESS_KEY_ID": credentials["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": credentials["SecretAccessKey"],
            "AWS_SESSION_TOKEN": credentials["SessionToken"],
            "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION,
            "AWS_LAMBDA_FUNCTION_NAME": fn.function_name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.properties.get("MemorySize", 128)),
            "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray daemon here
            **fn.environment}


# -- the resource check -----------------------------------------------------------------------

S3_OPERATIONS = {"ListObjectsV2": "ListBucket", "ListObjects": "ListBucket",
                 "HeadObject": "GetObject"}
IAM_PREFIX = {"sagemaker-runtime": "sagemaker", "monitoring": "cloudwatch",
              "cloudwatch": "cloudwatch"}


def _sagemaker_arn(kind: str, name: str) -> str:
    if name.startswith("arn:"):
        return name
    return f"arn:{PARTITION}:sagemaker:{REGION}:{ACCOUNT}:{kind}/{name.lower()}"


def authorisations(call: Call) -> list[tuple[str, str]]:
    """(IAM action, resource ARN) pairs AWS authorises for one API call ("*" where the action
    supports no resource): the ARN formats of AWS's service authorization data, filled from
    the request."""
    prefix = IAM_PREFIX.get(call.service, call.service)
    p = call.params
    op = call.operation
    if prefix == "s3":
        action = f"s3:{S3_OPERATIONS.get(op, op)}"
        key = p.get("Key")
        return [(action, f"arn:{PARTITION}:s3:::{p['Bucket']}" + (f"/{key}" if key else ""))]
    if prefix == "dynamodb":
        if op == "TransactWriteItems":
            item_actions = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                            "ConditionCheck": "ConditionCheckItem"}
            return [(f"dynamodb:{item_actions[kind]}",
                     f"arn:{PARTITION}:dynamodb:{REGION}:{ACCOUNT}:table/{body['TableName']}")
                    for item in p["TransactItems"] for kind, body in item.items()]
        return [(f"dynamodb:{op}",
                 f"arn:{PARTITION}:dynamodb:{REGION}:{ACCOUNT}:table/{p['TableName']}")]
    if prefix == "sagemaker":
        action = f"sagemaker:{op}"
        if "EndpointName" in p:
            found = [(action, _sagemaker_arn("endpoint", p["EndpointName"]))]
            if op in ("CreateEndpoint", "UpdateEndpoint"):
                found.append((action,
                              _sagemaker_arn("endpoint-config", p["EndpointConfigName"])))
            return found
        if "EndpointConfigName" in p:
            return [(action, _sagemaker_arn("endpoint-config", p["EndpointConfigName"]))]
        if op == "CreateModel":
            return [(action, _sagemaker_arn("model", p["ModelName"])),
                    ("iam:PassRole", p["ExecutionRoleArn"])]
        if op == "ListModelPackages":
            return [(action, _sagemaker_arn("model-package", f"{p['ModelPackageGroupName']}/*"))]
        if "ModelPackageName" in p or "ModelPackageArn" in p:
            return [(action, _sagemaker_arn("model-package",
                                            p.get("ModelPackageName") or p["ModelPackageArn"]))]
        if "ModelPackageGroupName" in p:
            return [(action, _sagemaker_arn("model-package-group", p["ModelPackageGroupName"]))]
        return [(action, "*")]
    if prefix == "sns":
        return [(f"sns:{op}", p.get("TopicArn", "*"))]
    if prefix == "kinesis":
        stream = p.get("StreamARN") or (
            f"arn:{PARTITION}:kinesis:{REGION}:{ACCOUNT}:stream/{p['StreamName']}")
        return [(f"kinesis:{op}", stream)]
    if prefix == "sqs":
        return [(f"sqs:{op}", "*")]
    return [(f"{prefix}:{op}", "*")]


def _listed(value: Any) -> list[str]:
    return value if isinstance(value, list) else [value]


def allowed(statements: list[dict], action: str, resource: str) -> bool:
    for statement in statements:
        if statement.get("Effect") != "Allow":
            continue
        if not any(fnmatch.fnmatchcase(action.lower(), a.lower())
                   for a in _listed(statement["Action"])):
            continue
        if resource == "*":
            if any(r == "*" for r in _listed(statement["Resource"])) or \
                    action_supports_no_resource(action):
                return True
            continue
        if any(fnmatch.fnmatchcase(resource, r) for r in _listed(statement["Resource"])):
            return True
    return False


def action_supports_no_resource(action: str) -> bool:
    """True when AWS's authorization data lists no resource type for the action."""
    from policy_sentry.querying.actions import get_action_data

    service, name = action.split(":", 1)
    rows = [r for r in get_action_data(service, name).get(service, [])
            if r["action"].lower() == action.lower()]
    return bool(rows) and all(r["resource_arn_format"] == "*" for r in rows)


def arn_format_known(action: str, resource: str) -> bool:
    """The ARN matches one of the action's resource formats in AWS's authorization data (so
    the check above compares like with like)."""
    from policy_sentry.querying.actions import get_action_data

    service, name = action.split(":", 1)
    rows = [r for r in get_action_data(service, name).get(service, [])
            if r["action"].lower() == action.lower()]
    for row in rows:
        pattern = re.sub(r"\$\{[^}]+\}", "*", row["resource_arn_format"])
        if fnmatch.fnmatchcase(resource, pattern):
            return True
    return False
