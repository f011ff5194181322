"""Ground truth landed in S3 (moto) joined to the champion's captured scores: only the files
landed in the window are read, only the champion's scores over the lookback are joined, and
the AUPR is scikit-learn's on exactly those pairs."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from moto.s3.models import s3_backends
from sklearn.metrics import average_precision_score

from mlops_kit.aws.ground_truth import IAM_ACTIONS, S3GroundTruth, champion_scores_by_id
from mlops_kit.aws.monitoring import S3Documents
from mlops_kit.monitoring.drift_monitor import UNREADABLE_LINE
from mlops_kit.monitoring.ground_truth import BAD_LABEL, labelled_aupr, labelled_pairs

from .conftest import ACCOUNT

BUCKET, ENDPOINT, CHAMPION, CHALLENGER = "kit-capture", "fraud-scorer-prod", "v2", "v1"
CAPTURE, TRUTH = f"s3://{BUCKET}/capture", f"s3://{BUCKET}/ground-truth"
FEATURES = ("amount", "channel")
START = datetime(2026, 11, 21, 10, 0, tzinfo=timezone.utc)
END = START + timedelta(minutes=10)
LOOKBACK = timedelta(hours=6)


def capture_line(inference_id: str | None, score: float, at: datetime) -> str:
    """One request as SageMaker data capture writes it (tests/fixtures/events)."""
    metadata = {"eventId": f"e-{inference_id}", "inferenceTime": at.strftime("%Y-%m-%dT%H:%M:%SZ")}
    if inference_id is not None:
        metadata["inferenceId"] = inference_id
    return json.dumps({"captureData": {
        "endpointInput": {"observedContentType": "text/csv", "mode": "INPUT",
                          "data": "412.5,pos", "encoding": "CSV"},
        "endpointOutput": {"observedContentType": "text/csv; charset=utf-8", "mode": "OUTPUT",
                           "data": f"{score}", "encoding": "CSV"}},
        "eventMetadata": metadata, "eventVersion": "0"})


def sagemaker_label(inference_id: str, label: int) -> str:
    return json.dumps({"groundTruthData": {"data": str(label), "encoding": "CSV"},
                       "eventMetadata": {"eventId": inference_id}, "eventVersion": "0"})


def short_label(inference_id: str, label: int) -> str:
    return json.dumps({"inferenceId": inference_id, "label": label})


@pytest.fixture()
def s3(aws, make_client):
    client = make_client("s3")
    client.create_bucket(Bucket=BUCKET)
    return client


def put(s3, key: str, lines: list[str], landed_at: datetime) -> None:
    """An object whose LastModified is `landed_at` (moto stamps the real time on upload)."""
    s3.put_object(Bucket=BUCKET, Key=key, Body="".join(line + "\n" for line in lines))
    s3_backends[ACCOUNT]["aws"].buckets[BUCKET].keys[key].last_modified = landed_at
    assert s3.head_object(Bucket=BUCKET, Key=key)["LastModified"] == landed_at


def truth_key(endpoint: str, hour: datetime, name: str) -> str:
    return f"ground-truth/{endpoint}/{hour:%Y/%m/%d/%H}/{name}.jsonl"


def capture_key(variant: str, hour: datetime, name: str) -> str:
    return f"capture/{ENDPOINT}/{variant}/{hour:%Y/%m/%d/%H}/{name}.jsonl"


@pytest.fixture()
def world(s3):
    """300 champion predictions captured at 08:3x; their labels land around the window, in
    both formats, some inside it, some outside, some for ids the champion never scored."""
    rng = np.random.default_rng(11)
    ids = [f"txn-{i}" for i in range(300)]
    y = {i: int(rng.random() < 0.2) for i in ids}
    score = {i: round(float(np.clip(0.35 * y[i] + rng.normal(0.3, 0.2), 0, 1)), 3) for i in ids}
    scored_at = datetime(2026, 11, 21, 8, 31, tzinfo=timezone.utc)
    put(s3, capture_key(CHAMPION, scored_at, "part-1"),
        [capture_line(i, score[i], scored_at) for i in ids[:150]]
        + [capture_line(None, 0.99, scored_at), '{"captureData": {"endpointI'], scored_at)
    put(s3, capture_key(CHAMPION, scored_at, "part-2"),
        [capture_line(i, score[i], scored_at) for i in ids[150:]], scored_at + timedelta(minutes=4))
    too_old = START - LOOKBACK - timedelta(minutes=20)
    put(s3, capture_key(CHAMPION, too_old, "old"),
        [capture_line(f"old-{k}", 0.9, too_old) for k in range(60)], too_old)
    put(s3, capture_key(CHALLENGER, scored_at, "part-1"),
        [capture_line(f"chal-{k}", 0.9, scored_at) for k in range(60)], scored_at)

    flipped = {i: 1 - y[i] for i in ids}
    # in the window: SageMaker's format under the window's hour...
    put(s3, truth_key(ENDPOINT, START, "batch-a"),
        [sagemaker_label(i, y[i]) for i in ids[:200]], START + timedelta(minutes=3))
    # ...the short form under the previous hour (the job named the hour it started in),
    # with a torn line, a bad label, and ids the champion never scored in the lookback
    put(s3, truth_key(ENDPOINT, START - timedelta(hours=1), "batch-b"),
        [short_label(i, y[i]) for i in ids[200:250]] + [short_label("txn-260", 2)]
        + [short_label(f"ghost-{k}", 1) for k in range(10)]
        + [short_label(f"old-{k}", 0) for k in range(60)]
        + [short_label(f"chal-{k}", 0) for k in range(60)] + ['{"inferenceId": "txn-2'],
        START + timedelta(minutes=1))
    # a correction landing after batch-a (its key sorts first): it wins
    put(s3, truth_key(ENDPOINT, START, "a-correction"), [short_label("txn-5", flipped["txn-5"])],
        START + timedelta(minutes=7))
    # outside the window (before it; exactly at its exclusive end), another endpoint's prefix
    put(s3, truth_key(ENDPOINT, START - timedelta(hours=1), "early"),
        [short_label(i, flipped[i]) for i in ids], START - timedelta(seconds=1))
    put(s3, truth_key(ENDPOINT, START, "late"), [short_label(i, flipped[i]) for i in ids], END)
    put(s3, truth_key("other-endpoint", START, "x"), [short_label(i, flipped[i]) for i in ids],
        START + timedelta(minutes=2))
    expected = {i: y[i] for i in ids[:250]}
    expected["txn-5"] = flipped["txn-5"]
    return {"expected": expected, "score": score, "ids": ids}


def test_labels_landed_in_the_window_join_the_champions_scores(s3, world):
    labels, skipped = S3GroundTruth(s3).labels(TRUTH, ENDPOINT, START, END)
    unjoinable = ({f"ghost-{k}" for k in range(10)} | {f"old-{k}" for k in range(60)}
                  | {f"chal-{k}" for k in range(60)})
    assert set(labels) == set(world["expected"]) | unjoinable
    assert {i: labels[i] for i in world["expected"]} == world["expected"]
    assert skipped == 2  # the bad label and the torn line

    scores = champion_scores_by_id(S3Documents(s3), CAPTURE, ENDPOINT, CHAMPION, FEATURES,
                                   END - LOOKBACK, END)
    # the champion's requests with an inferenceId in the lookback: not the one without an id,
    # not the capture older than the lookback, not the challenger's
    assert scores == world["score"]

    y, s = labelled_pairs(labels, scores)
    assert len(y) == 250
    expected_ids = list(world["expected"])
    expected_y = [world["expected"][i] for i in expected_ids]
    expected_s = [world["score"][i] for i in expected_ids]
    assert sorted(zip(y.tolist(), s.tolist())) == sorted(zip(map(float, expected_y), expected_s))
    aupr = labelled_aupr(labels, scores)
    assert aupr == pytest.approx(average_precision_score(expected_y, expected_s))


def test_the_skipped_lines_are_explained(s3, world):
    truth = S3GroundTruth(s3).read(TRUTH, ENDPOINT, START, END)
    assert truth.skipped_reasons == {BAD_LABEL: 1, UNREADABLE_LINE: 1}


def test_scores_can_be_kept_for_the_labelled_ids_only(s3, world):
    wanted = {"txn-3", "txn-299", "ghost-1"}
    scores = champion_scores_by_id(S3Documents(s3), CAPTURE, ENDPOINT, CHAMPION, FEATURES,
                                   END - LOOKBACK, END, only_ids=wanted)
    assert scores == {i: world["score"][i] for i in ("txn-3", "txn-299")}


class Calls(list):
    """The S3 operations a client makes, with their API parameters."""

    def __call__(self, model, params, **_):
        self.append((model.name, dict(params)))


@pytest.fixture()
def calls(s3):
    recorded = Calls()
    s3.meta.events.register("before-parameter-build.s3", recorded)
    yield recorded
    s3.meta.events.unregister("before-parameter-build.s3", recorded)


def test_only_the_hours_that_can_hold_the_window_are_listed(s3, world, calls):
    S3GroundTruth(s3).labels(TRUTH, ENDPOINT, START, END)
    prefixes = [p["Prefix"] for name, p in calls if name == "ListObjectsV2"]
    assert prefixes == [f"ground-truth/{ENDPOINT}/2026/11/21/09/",
                        f"ground-truth/{ENDPOINT}/2026/11/21/10/"]
    read = [p["Key"] for name, p in calls if name == "GetObject"]
    # landed order (LastModified), not key order: the correction is read last
    assert read == [truth_key(ENDPOINT, START - timedelta(hours=1), "batch-b"),
                    truth_key(ENDPOINT, START, "batch-a"),
                    truth_key(ENDPOINT, START, "a-correction")]


def test_every_page_of_an_hour_is_read(s3, calls):
    def two_keys_a_page(params, **_):
        params["MaxKeys"] = 2

    for k in range(5):
        put(s3, truth_key(ENDPOINT, START, f"part-{k}"), [short_label(f"t{k}", k % 2)],
            START + timedelta(minutes=k))
    s3.meta.events.register("provide-client-params.s3.ListObjectsV2", two_keys_a_page)
    try:
        labels, skipped = S3GroundTruth(s3).labels(TRUTH, ENDPOINT, START, END)
    finally:
        s3.meta.events.unregister("provide-client-params.s3.ListObjectsV2", two_keys_a_page)
    assert labels == {f"t{k}": k % 2 for k in range(5)} and skipped == 0
    hour_10 = [p for name, p in calls if name == "ListObjectsV2" and p["Prefix"].endswith("/10/")]
    assert len(hour_10) == 3


def test_the_calls_made_are_the_iam_actions_listed(s3, world, calls):
    S3GroundTruth(s3).labels(TRUTH, ENDPOINT, START, END)
    action = {"ListObjectsV2": "s3:ListBucket", "GetObject": "s3:GetObject"}
    assert {name for name, _ in calls} <= set(action)
    assert {action[name] for name, _ in calls} == set(IAM_ACTIONS)


def test_an_empty_prefix_gives_no_labels(s3):
    assert S3GroundTruth(s3).labels(TRUTH, ENDPOINT, START, END) == ({}, 0)


@pytest.mark.parametrize("uri,start,end,message", [
    ("ground-truth/", START, END, "not an s3:// URI"),
    (TRUTH, START.replace(tzinfo=None), END, "timezone-aware"),
    (TRUTH, END, START, "ends before it starts"),
])
def test_bad_arguments_are_refused_naming_the_problem(s3, uri, start, end, message):
    with pytest.raises(ValueError, match=message):
        S3GroundTruth(s3).labels(uri, ENDPOINT, start, end)
