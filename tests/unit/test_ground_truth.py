"""Ground-truth parsing (SageMaker's record and the kit's short form) and the join to scores."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from mlops_kit.monitoring.drift_monitor import UNREADABLE_LINE
from mlops_kit.monitoring.ground_truth import (BAD_ENCODING, BAD_LABEL, MIN_LABELLED_ROWS, NO_ID,
                                               UNKNOWN_SHAPE, GroundTruth, labelled_aupr,
                                               labelled_pairs, parse_labels)


def sagemaker(event_id, data, encoding="CSV") -> str:
    """A line as SageMaker Model Monitor documents its ground-truth records."""
    return json.dumps({"groundTruthData": {"data": data, "encoding": encoding},
                       "eventMetadata": {"eventId": event_id}, "eventVersion": "0"})


def short(inference_id, label) -> str:
    return json.dumps({"inferenceId": inference_id, "label": label})


def lines(*items: str) -> str:
    return "".join(item + "\n" for item in items)


def test_both_formats_give_labels_by_inference_id():
    text = lines(sagemaker("txn-1", "1"), sagemaker("txn-2", "0"), short("txn-3", 1),
                 short("txn-4", 0))
    assert parse_labels(text) == ({"txn-1": 1, "txn-2": 0, "txn-3": 1, "txn-4": 0}, 0)


@pytest.mark.parametrize("line,expected", [
    (sagemaker("a", " 1\n"), 1),                     # CSV text as a labeller writes it
    (sagemaker("a", "1.0"), 1),
    (sagemaker("a", "0", encoding="JSON"), 0),
    (sagemaker("a", "1", encoding="csv"), 1),        # encoding names are case-insensitive
    (json.dumps({"groundTruthData": {"data": "1"}, "eventMetadata": {"eventId": "a"}}), 1),
    (short("a", 1.0), 1),
    (short("a", "0"), 0),
], ids=["csv-padded", "csv-float", "json", "lowercase-encoding", "no-encoding", "float",
        "text"])
def test_the_spellings_of_0_and_1_that_are_accepted(line, expected):
    assert parse_labels(line) == ({"a": expected}, 0)


@pytest.mark.parametrize("line", [
    short("a", 2), short("a", -1), short("a", 0.5), short("a", "yes"), short("a", None),
    short("a", True), short("a", "NaN"), json.dumps({"inferenceId": "a"}),
    sagemaker("a", "1,0"), sagemaker("a", ""), sagemaker("a", 7),
], ids=["2", "-1", "0.5", "yes", "null", "true", "nan", "no-label", "two-csv-values",
        "empty", "seven"])
def test_labels_other_than_0_or_1_are_rejected_and_counted(line):
    truth = GroundTruth()
    truth.add_lines(line)
    assert truth.labels == {}
    assert truth.skipped == 1 and truth.skipped_reasons == {BAD_LABEL: 1}


@pytest.mark.parametrize("line,reason", [
    (short("", 1), NO_ID),
    (short("   ", 1), NO_ID),
    (short(42, 1), NO_ID),
    (json.dumps({"label": 1}), NO_ID),
    (json.dumps({"groundTruthData": {"data": "1", "encoding": "CSV"}}), NO_ID),
    (json.dumps({"groundTruthData": {"data": "1"}, "eventMetadata": "a"}), NO_ID),
    (sagemaker("a", "MQ==", encoding="BASE64"), BAD_ENCODING),
    (json.dumps({"groundTruthData": "1", "eventMetadata": {"eventId": "a"}}), UNKNOWN_SHAPE),
    (json.dumps({"id": "a", "y": 1}), UNKNOWN_SHAPE),
    ('{"inferenceId": "a", "lab', UNREADABLE_LINE),  # torn: the writer was cut off
    ("not json", UNREADABLE_LINE),
    ('["a", 1]', UNREADABLE_LINE),
], ids=["empty-id", "blank-id", "numeric-id", "no-id", "no-event-metadata",
        "metadata-not-object", "base64", "data-not-object", "other-shape", "torn", "not-json",
        "array"])
def test_invalid_lines_are_skipped_and_counted_by_reason(line, reason):
    truth = GroundTruth()
    truth.add_lines(lines(short("ok", 1), line, short("ok2", 0)))
    assert truth.labels == {"ok": 1, "ok2": 0}  # the good lines around it still count
    assert truth.skipped == 1 and truth.skipped_reasons == {reason: 1}


def test_reasons_add_up_over_texts_and_blank_lines_are_not_skipped():
    truth = GroundTruth()
    truth.add_lines(lines(short("a", 3), "", "   ", "{oops") + '{"torn')
    truth.add_lines(lines(short("b", 9), sagemaker("c", "1", encoding="BASE64")))
    assert truth.labels == {}
    assert truth.skipped == 5
    assert truth.skipped_reasons == {BAD_LABEL: 2, UNREADABLE_LINE: 2, BAD_ENCODING: 1}


def test_a_relabelled_id_takes_the_last_label_read_within_and_across_texts():
    truth = GroundTruth()
    truth.add_lines(lines(short("a", 1), short("b", 1), sagemaker("a", "0")))
    assert truth.labels == {"b": 1, "a": 0}
    truth.add_lines(lines(short("b", 0)))  # a later file: a chargeback reversed
    assert truth.labels == {"a": 0, "b": 0}
    assert list(truth.labels) == ["a", "b"]  # kept in the order last read
    # an invalid later line does not erase a valid earlier label
    truth.add_lines(lines(short("a", 5)))
    assert truth.labels["a"] == 0 and truth.skipped == 1


def test_the_join_keeps_only_labelled_ids_the_champion_scored():
    labels = {"a": 1, "b": 0, "unknown": 1, "c": 0}
    scores = {"c": 0.3, "a": 0.9, "b": 0.2, "unlabelled": 0.8}
    y, s = labelled_pairs(labels, scores)
    assert y.tolist() == [1.0, 0.0, 0.0] and s.tolist() == [0.9, 0.2, 0.3]
    assert y.dtype == np.float64 and s.dtype == np.float64
    y, s = labelled_pairs({}, scores)
    assert y.size == 0 and s.size == 0


def test_aupr_of_the_joined_pairs_is_sklearns():
    rng = np.random.default_rng(7)
    n = 400
    y_true = (rng.random(n) < 0.1).astype(int)
    score = np.clip(0.3 * y_true + rng.normal(0.3, 0.15, n), 0, 1).round(2)  # with ties
    labels = {f"t{i}": int(y_true[i]) for i in range(n)}
    scores = {f"t{i}": float(score[i]) for i in range(n)}
    scores.update({f"other{i}": 0.99 for i in range(50)})     # scored, never labelled
    labels.update({f"late{i}": 0 for i in range(50)})          # labelled, never scored
    assert labelled_aupr(labels, scores) == pytest.approx(average_precision_score(y_true, score))


def test_no_aupr_below_the_minimum_rows_or_with_one_class():
    def ids(n):
        return [f"t{i}" for i in range(n)]

    scores = {i: 0.5 + 0.001 * k for k, i in enumerate(ids(200))}
    too_few = {i: k % 2 for k, i in enumerate(ids(MIN_LABELLED_ROWS - 1))}
    assert labelled_aupr(too_few, scores) is None
    enough = {i: k % 2 for k, i in enumerate(ids(MIN_LABELLED_ROWS))}
    assert labelled_aupr(enough, scores) == pytest.approx(
        average_precision_score(list(enough.values()), [scores[i] for i in enough]))
    assert labelled_aupr({i: 0 for i in ids(100)}, scores) is None
    assert labelled_aupr({i: 1 for i in ids(100)}, scores) is None
    # labels that do not join do not count towards the minimum
    unjoined = {**too_few, **{f"x{i}": 1 for i in range(100)}}
    assert labelled_aupr(unjoined, scores) is None
