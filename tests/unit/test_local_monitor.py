import json

from mlops_kit.local.monitor import CaptureTail


def line(score: float) -> str:
    return json.dumps({"captureData": {
        "endpointInput": {"observedContentType": "text/csv", "mode": "INPUT", "data": "1,a",
                          "encoding": "CSV"},
        "endpointOutput": {"observedContentType": "text/csv", "mode": "OUTPUT",
                           "data": str(score), "encoding": "CSV"}},
        "eventMetadata": {"eventId": "x", "inferenceTime": "2026-11-27T00:00:00Z"},
        "eventVersion": "0"})


def test_tail_reads_each_complete_line_once_and_waits_for_a_line_being_written(tmp_path):
    path = tmp_path / "capture" / "ep" / "v1" / "2026" / "11" / "27" / "00" / "w1.jsonl"
    path.parent.mkdir(parents=True)
    tail = CaptureTail(tmp_path / "capture")
    path.write_text(line(0.1) + "\n" + line(0.2)[:30])  # the second line is mid-write
    records, corrupt = tail.read_new("ep")["v1"]
    assert len(records) == 1 and corrupt == 0
    with open(path, "a") as handle:
        handle.write(line(0.2)[30:] + "\n" + "not json\n")
    records, corrupt = tail.read_new("ep")["v1"]
    assert [r["captureData"]["endpointOutput"]["data"] for r in records] == ["0.2"]
    assert corrupt == 1
    assert tail.read_new("ep")["v1"] == ([], 0)
