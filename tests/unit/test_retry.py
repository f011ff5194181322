"""Retries once per layer: botocore's standard mode for each call, the kit's `Backoff` only for
what botocore does not retry. A real botocore client answers from a `before-send` hook (no
network), so botocore's own retry handler runs and every HTTP attempt is counted."""

from __future__ import annotations

import json
import time
import types

import boto3
import botocore.endpoint
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError

from mlops_kit import retry
from mlops_kit.aws.clients import (DEFAULT_CONFIG, Backoff, botocore_retried, default_client,
                                   unretried_throttling)
from mlops_kit.aws.ledger import Ledger


class Flaky:
    def __init__(self, failures: int, error: Exception):
        self.failures, self.error, self.calls = failures, error, 0

    def __call__(self, value):
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return value


def test_backoff_retries_what_it_accepts_and_counts_the_attempts():
    sleeps: list[float] = []
    backoff = retry.Backoff(6, base_delay=2.0, max_delay=30.0, sleep=sleeps.append,
                            jitter=False, retry_if=lambda exc: isinstance(exc, TimeoutError))
    flaky = Flaky(5, TimeoutError("busy"))
    assert backoff.attempt(flaky, "done") == ("done", 6)
    assert sleeps == [2.0, 4.0, 8.0, 16.0, 30.0]
    assert backoff.horizon() == sum(sleeps) == 60.0


def test_backoff_gives_up_after_the_last_attempt_and_never_retries_what_it_rejects():
    sleeps: list[float] = []
    backoff = retry.Backoff(3, sleep=sleeps.append, retry_if=lambda e: isinstance(e, KeyError))
    with pytest.raises(KeyError):
        backoff.call(Flaky(10, KeyError("x")), 1)
    assert len(sleeps) == 2
    rejected = Flaky(1, ValueError("bad input"))
    with pytest.raises(ValueError):
        backoff.call(rejected, 1)
    assert rejected.calls == 1 and len(sleeps) == 2


def test_jittered_delays_stay_between_half_and_the_whole_capped_step():
    low = retry.Backoff(5, base_delay=1.0, max_delay=3.0, rng=lambda: 0.0)
    high = retry.Backoff(5, base_delay=1.0, max_delay=3.0, rng=lambda: 1.0)
    assert [low.delay(n) for n in (1, 2, 3)] == [0.5, 1.0, 1.5]
    assert [high.delay(n) for n in (1, 2, 3)] == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("arguments", [dict(max_attempts=0), dict(base_delay=2, max_delay=1),
                                       dict(base_delay=-1)])
def test_backoff_refuses_settings_that_cannot_work(arguments):
    with pytest.raises(ValueError):
        retry.Backoff(**arguments)


def throttling(retried: int | None) -> ClientError:
    response = {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}
    if retried is not None:
        response["ResponseMetadata"] = {"RetryAttempts": retried}
    return ClientError(response, "GetItem")


def test_throttling_botocore_has_retried_is_not_retried_again():
    assert botocore_retried(throttling(3)) and not unretried_throttling(throttling(3))
    assert unretried_throttling(throttling(0)) and unretried_throttling(throttling(None))
    sleeps: list[float] = []
    backoff = Backoff(5, sleep=sleeps.append)
    with pytest.raises(ClientError):
        backoff.call(Flaky(1, throttling(3)), 1)
    assert sleeps == []
    assert backoff.call(Flaky(2, throttling(None)), "ok") == "ok" and len(sleeps) == 2


def test_the_aws_backoff_retries_only_client_errors():
    backoff = Backoff(5, sleep=lambda _: None)
    with pytest.raises(TimeoutError):
        backoff.call(Flaky(1, TimeoutError()), 1, retry_if=lambda exc: True)


# -- a real botocore client under the kit's config --------------------------------------------

class Wire:
    """Answers every DynamoDB request with `error` (a JSON-protocol error body) and counts
    the HTTP attempts botocore makes."""

    def __init__(self, error: dict):
        self.error, self.sent = error, 0

    def __call__(self, request, **_):
        self.sent += 1
        raw = types.SimpleNamespace(stream=lambda **_: iter([json.dumps(self.error).encode()]))
        return AWSResponse(request.url, 400, {"x-amzn-RequestId": f"r{self.sent}"}, raw)


@pytest.fixture()
def wired(monkeypatch):
    botocore_sleeps: list[float] = []
    monkeypatch.setattr(botocore.endpoint, "time",
                        types.SimpleNamespace(**{**vars(time), "sleep": botocore_sleeps.append}))
    client = boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="k",
                          aws_secret_access_key="s", config=DEFAULT_CONFIG)

    def wire(error: dict) -> Wire:
        hook = Wire(error)
        client.meta.events.register("before-send.dynamodb", hook)
        return hook
    return client, wire, botocore_sleeps


def test_the_kit_builds_clients_with_botocores_standard_retries():
    client = default_client("dynamodb", region="eu-west-1")
    assert client.meta.region_name == "eu-west-1"
    assert client.meta.config.retries == {"mode": "standard", "total_max_attempts": 4}


def test_a_throttled_read_is_retried_by_botocore_alone_not_by_both(wired):
    client, wire, botocore_sleeps = wired
    sent = wire({"__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException",
                 "message": "Rate exceeded"})
    kit_sleeps: list[float] = []
    ledger = Ledger("t", "g", client, backoff=Backoff(5, sleep=kit_sleeps.append))
    with pytest.raises(ClientError, match="Throttling"):
        ledger.get("version#0000000001")
    assert sent.sent == 4 and len(botocore_sleeps) == 3  # not 4 x 5 = 20
    assert kit_sleeps == []


def test_a_cancelled_transaction_botocore_does_not_retry_is_retried_by_the_kit(wired):
    client, wire, botocore_sleeps = wired
    sent = wire({"__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
                 "message": "Transaction cancelled",
                 "CancellationReasons": [{"Code": "TransactionConflict"}]})
    kit_sleeps: list[float] = []
    ledger = Ledger("t", "g", client, backoff=Backoff(4, sleep=kit_sleeps.append))
    with pytest.raises(ClientError, match="TransactionCanceled"):
        ledger.release_rollback("e", "promote:1", "rollback:a")
    assert sent.sent == 4 and len(kit_sleeps) == 3 and botocore_sleeps == []
