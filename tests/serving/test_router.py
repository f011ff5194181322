"""The scoring router in-process: weights, pinning, following the state file."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from mlops_kit.serving.router import (EndpointUnavailable, NoTrafficError, ScoringRouter,
                                      UnknownVariantError, negotiate_accept)
from mlops_kit.serving.state import load_state, save_state
from mlops_pipelines.steps import inference
from mlops_pipelines.steps.inference import PayloadError

from .conftest import ENDPOINT, make_state, write_state


@pytest.fixture()
def router(home):
    router = ScoringRouter(home, ENDPOINT, seed=7)
    yield router
    router.close()


def test_weights_one_zero_zero_send_every_request_to_the_champion(router, sample_rows):
    lines, _, _ = sample_rows
    served = Counter(router.invoke(lines[i % len(lines)].encode(), "text/csv").variant.variant_name
                     for i in range(1000))
    assert served == {"v3": 1000}


def test_scores_match_the_serving_handlers(router, sample_rows, model_versions):
    lines, objects, _ = sample_rows
    model = inference.model_fn(str(model_versions[3]))
    body = "\n".join(lines[:50]).encode()
    expected = inference.predict_fn(inference.input_fn(body, "text/csv"), model)
    invocation = router.invoke(body, "text/csv")
    np.testing.assert_array_equal(invocation.scores, expected)
    assert invocation.body.decode() == inference.output_fn(expected, "text/csv")[0]
    as_json = router.invoke(json.dumps({"instances": objects[:50]}).encode(), "application/json",
                            accept="application/json")
    assert as_json.content_type == "application/json"
    assert [p["score"] for p in json.loads(as_json.body)["predictions"]] == \
        pytest.approx(expected.tolist(), rel=1e-6)


def test_weighted_random_split_follows_the_weights(home, model_versions, sample_rows):
    write_state(home, model_versions, {3: 0.7, 2: 0.3, 1: 0.0})
    router = ScoringRouter(home, ENDPOINT, seed=1)
    served = Counter(router.select().variant_name for _ in range(4000))
    assert set(served) == {"v3", "v2"}
    assert served["v3"] / 4000 == pytest.approx(0.7, abs=0.03)


def test_pinned_variant_is_served_even_at_weight_zero(router, sample_rows, model_versions):
    lines, _, _ = sample_rows
    invocation = router.invoke(lines[0].encode(), "text/csv", target_variant="v1")
    assert (invocation.variant.variant_name, invocation.variant.version) == ("v1", 1)
    expected = inference.predict_fn(inference.input_fn(lines[0], "text/csv"),
                                    inference.model_fn(str(model_versions[1])))
    np.testing.assert_array_equal(invocation.scores, expected)


def test_unknown_pinned_variant_is_a_400_naming_the_variants(router, sample_rows):
    with pytest.raises(UnknownVariantError) as caught:
        router.invoke(sample_rows[0][0].encode(), "text/csv", target_variant="v9")
    assert caught.value.status == 400
    assert "v9" in str(caught.value) and "v3=1" in str(caught.value)


def test_weight_change_applies_on_the_next_request_without_reloading(router, home, sample_rows):
    body = sample_rows[0][0].encode()
    first = router.invoke(body, "text/csv").variant
    assert first.variant_name == "v3"
    handles = {v.variant_name: v.handle for v in router.table.variants.values()}
    save_state(home, load_state(home, ENDPOINT).with_weights({"v3": 0.0, "v2": 1.0}))
    second = router.invoke(body, "text/csv").variant
    assert second.variant_name == "v2"
    assert {v.variant_name: v.handle for v in router.table.variants.values()} == handles


def test_new_variant_set_loads_then_swaps(router, home, model_versions, sample_rows, tmp_path):
    body = sample_rows[0][0].encode()
    old_table = router.refresh()
    v3_handle = old_table.variants["v3"].handle
    # Version 4 (a copy of version 2's model elsewhere) becomes champion; v1 leaves.
    import shutil
    v4 = tmp_path / "v4"
    shutil.copytree(model_versions[2], v4)
    model_versions = {**model_versions, 4: v4}
    write_state(home, model_versions, {4: 1.0, 3: 0.0, 2: 0.0})
    assert router.invoke(body, "text/csv").variant.variant_name == "v4"
    table = router.table
    assert set(table.variants) == {"v4", "v3", "v2"}
    assert table.variants["v3"].handle is v3_handle  # kept warm, not reloaded
    # A request still holding the old table finishes on it.
    assert old_table.select(None, lambda: 0.5).variant_name == "v3"
    assert old_table.variants["v1"].kernel.score_payload(body, "text/csv").shape == (1,)


def test_background_loading_keeps_serving_the_old_set(home, model_versions, sample_rows):
    router = ScoringRouter(home, ENDPOINT, background=True)
    try:
        body = sample_rows[0][0].encode()
        assert router.invoke(body, "text/csv").variant.variant_name == "v3"
        write_state(home, model_versions, {2: 1.0, 1: 0.0})
        # The request that notices the change is still served (by the old set or the new one).
        assert router.invoke(body, "text/csv").variant.variant_name in {"v3", "v2"}
        router.wait_loaded(timeout=30)
        assert router.invoke(body, "text/csv").variant.variant_name == "v2"
        assert set(router.table.variants) == {"v2", "v1"}
    finally:
        router.close()


def test_no_state_is_a_clear_404(tmp_path):
    router = ScoringRouter(tmp_path, "nowhere")
    with pytest.raises(EndpointUnavailable) as caught:
        router.invoke(b"1", "text/csv")
    assert caught.value.status == 404
    assert "nowhere" in str(caught.value) and "no deployed state" in str(caught.value)


def test_total_weight_zero_is_a_clear_503_but_pinning_still_works(home, model_versions,
                                                                 sample_rows):
    save_state(home, make_state(model_versions, {3: 0.0, 2: 0.0}, generation=9))
    router = ScoringRouter(home, ENDPOINT)
    body = sample_rows[0][0].encode()
    with pytest.raises(NoTrafficError) as caught:
        router.invoke(body, "text/csv")
    assert caught.value.status == 503 and "total weight 0" in str(caught.value)
    with pytest.raises(NoTrafficError):
        router.champion()
    assert router.invoke(body, "text/csv", target_variant="v2").variant.variant_name == "v2"


def test_unreadable_state_or_broken_model_keeps_the_last_good_table(router, home, sample_rows,
                                                                    model_versions, tmp_path):
    body = sample_rows[0][0].encode()
    assert router.invoke(body, "text/csv").variant.variant_name == "v3"
    path = router.path
    path.write_text("{ not json")
    assert router.invoke(body, "text/csv").variant.variant_name == "v3"
    assert "unreadable" in router.last_error
    broken = tmp_path / "broken"
    broken.mkdir()
    save_state(home, make_state({**model_versions, 5: broken}, {5: 1.0, 3: 0.0}, generation=10))
    assert router.invoke(body, "text/csv").variant.variant_name == "v3"
    assert "loading models failed" in router.last_error


def test_bad_payloads_raise_payload_errors_without_changing_anything(router, sample_rows):
    generation = router.refresh().generation
    for body, content_type, reason in [
        (b"1,2,3", "text/csv", "expected 16 values"),
        (("abc," + sample_rows[0][0].split(",", 1)[1]).encode(), "text/csv", "must be numeric"),
        (b"{nope", "application/json", "not valid JSON"),
        (b"\x00\x01", "application/x-npy", "unsupported content type"),
    ]:
        with pytest.raises(PayloadError, match=reason):
            router.invoke(body, content_type)
    assert router.refresh().generation == generation


@pytest.mark.parametrize("accept,expected", [
    (None, "text/csv"), ("*/*", "text/csv"), ("application/json", "application/json"),
    ("text/html, application/json;q=0.9", "application/json"), ("text/csv; charset=utf-8",
                                                                 "text/csv"),
    ("image/png", "image/png"),
])
def test_accept_negotiation(accept, expected):
    assert negotiate_accept(accept) == expected


def test_a_failed_load_is_retried_once_the_model_appears(home, model_versions, sample_rows,
                                                         tmp_path):
    import shutil

    router = ScoringRouter(home, ENDPOINT, retry_seconds=0.05)
    body = sample_rows[0][0].encode()
    assert router.invoke(body, "text/csv").variant.variant_name == "v3"
    late = tmp_path / "late"
    write_state(home, {**model_versions, 6: late}, {6: 1.0, 3: 0.0})
    assert router.invoke(body, "text/csv").variant.variant_name == "v3"
    shutil.copytree(model_versions[2], late)  # the model directory arrives after the state
    import time
    deadline = time.monotonic() + 5
    while router.invoke(body, "text/csv").variant.variant_name != "v6":
        assert time.monotonic() < deadline, router.last_error
        time.sleep(0.02)
    assert router.last_error is None
