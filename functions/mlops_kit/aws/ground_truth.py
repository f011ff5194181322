"""The AWS home's labels feed for the performance (AUPR) alarm: ground truth landed in S3, and
the champion's captured scores it joins to on `inferenceId`.

Layout (docs/configuration.md): `{GROUND_TRUTH_S3_URI}/{EndpointName}/yyyy/mm/dd/hh/*.jsonl`,
the hour (UTC) being when the file is written, as in SageMaker Model Monitor's ground-truth
layout; lines in either format `mlops_kit.monitoring.ground_truth` reads. A run joins the labels
landed (LastModified) in its window to the scores captured over the lookback before it: a label
may land up to the lookback after its prediction.

IAM (`IAM_ACTIONS`): s3:ListBucket on the bucket (ListObjectsV2, by hour prefix) and
s3:GetObject on the ground-truth prefix; `champion_scores_by_id` reads capture through
`S3Documents`, the same two actions on the capture prefix.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Collection, Iterator, Sequence

from mlops_kit.aws.clients import LazyClient
from mlops_kit.aws.monitoring import S3Documents, split_s3_uri
from mlops_kit.monitoring.drift_monitor import decode_capture, parse_capture_lines
from mlops_kit.monitoring.ground_truth import GroundTruth

IAM_ACTIONS = ("s3:GetObject", "s3:ListBucket")

PATH_HOUR_LAG = timedelta(hours=1)
"""A file may be written up to this long after the hour its path names (a labelling job that
names the hour when it starts and uploads when it finishes): that many hours before the window
are listed too. A file landing later than that under an older hour is never read."""


def _require_aware(start: datetime, end: datetime) -> None:
    # S3's LastModified is timezone-aware: a naive bound would fail mid-listing with a bare
    # TypeError, or be read in the wrong zone.
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError(f"window bounds must be timezone-aware (UTC): {start!r}, {end!r}")
    if end < start:
        raise ValueError(f"window ends before it starts: [{start.isoformat()}, "
                         f"{end.isoformat()})")


class S3GroundTruth:
    def __init__(self, client: Any = None):
        self._client = LazyClient("s3", client)

    def _landed_keys(self, bucket: str, prefix: str, start: datetime, end: datetime
                     ) -> list[str]:
        """Keys written in [start, end), oldest first: only the hour prefixes that can hold
        them are listed, every page of each."""
        landed = []
        hour = (start - PATH_HOUR_LAG).replace(minute=0, second=0, microsecond=0)
        paginator = self._client().get_paginator("list_objects_v2")
        while hour <= end:
            for page in paginator.paginate(Bucket=bucket, Prefix=f"{prefix}{hour:%Y/%m/%d/%H}/"):
                landed += [(item["LastModified"], item["Key"]) for item in page.get("Contents", [])
                           if start <= item["LastModified"] < end]
            hour += timedelta(hours=1)
        # Oldest first, so when an id is labelled twice the label landed last wins.
        return [key for _, key in sorted(landed)]

    def _texts(self, bucket: str, keys: Sequence[str]) -> Iterator[str]:
        for key in keys:
            body = self._client().get_object(Bucket=bucket, Key=key)["Body"]
            yield body.read().decode("utf-8", errors="replace")

    def read(self, ground_truth_uri: str, endpoint_name: str, start: datetime, end: datetime
             ) -> GroundTruth:
        """Labels in the files landed in [start, end) for the endpoint, with what was skipped
        and why (for the run's log)."""
        _require_aware(start, end)
        bucket, prefix = split_s3_uri(ground_truth_uri.rstrip("/") + "/")
        truth = GroundTruth()
        keys = self._landed_keys(bucket, f"{prefix}{endpoint_name}/", start, end)
        for text in self._texts(bucket, keys):
            truth.add_lines(text)
        return truth

    def labels(self, ground_truth_uri: str, endpoint_name: str, start: datetime, end: datetime
               ) -> tuple[dict[str, int], int]:
        """{inferenceId: label} landed in [start, end), and how many lines were skipped."""
        truth = self.read(ground_truth_uri, endpoint_name, start, end)
        return truth.labels, truth.skipped


def champion_scores_by_id(documents: S3Documents, capture_uri: str, endpoint_name: str,
                          variant_name: str, feature_order: Sequence[str], start: datetime,
                          end: datetime, *, only_ids: Collection[str] | None = None
                          ) -> dict[str, float]:
    """The scores one variant gave, by inferenceId, in its capture written in [start, end).

    Each file is decoded on its own and only (id, score) kept, so memory is one file plus the
    map, whatever the lookback; `only_ids` (the labels to join) keeps just those. Capture
    without an inferenceId (or a multi-row request) has nothing to join and is left out; an id
    captured twice keeps the score of the file read last (hour by hour, SageMaker's
    time-named files in key order). Skipped capture is not counted here: each window's drift
    metrics already count it (CaptureSkipped).
    """
    scores: dict[str, float] = {}
    for text in documents.capture_texts(capture_uri, endpoint_name, variant_name, start, end):
        records, _ = parse_capture_lines(text)
        decoded = decode_capture(records, feature_order)
        scores.update((i, s) for i, s in zip(decoded.inference_ids, decoded.scores)
                      if i is not None and (only_ids is None or i in only_ids))
    return scores


class S3Labels:
    """The drift run's labels feed in AWS (`mlops_kit.monitoring.run.Labels`): the ground
    truth landed in the run's interval, joined to the champion's scores re-read from its
    capture over the lookback (the Lambda keeps nothing between runs)."""

    def __init__(self, ground_truth: S3GroundTruth, documents: S3Documents, *,
                 ground_truth_uri: str, capture_uri: str):
        self.ground_truth, self.documents = ground_truth, documents
        self.ground_truth_uri, self.capture_uri = ground_truth_uri, capture_uri

    def remember(self, variant_name: str, decoded: Any) -> None:
        """Nothing to keep: `scores` reads the lookback's capture again."""

    def landed(self, endpoint_name: str, start: datetime, end: datetime) -> GroundTruth:
        return self.ground_truth.read(self.ground_truth_uri, endpoint_name, start, end)

    def scores(self, endpoint_name: str, baseline: Any, ids: Collection[str], start: datetime,
               end: datetime) -> dict[str, float]:
        return champion_scores_by_id(self.documents, self.capture_uri, endpoint_name,
                                     baseline.variant_name, baseline.feature_order, start, end,
                                     only_ids=ids)
