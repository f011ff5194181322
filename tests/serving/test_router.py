"""The scoring router in-process: weights, pinning, following the state file."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from mlops_kit.serving.router import (EndpointUnavailable, NoTrafficError, ScoringRouter,
                                      UnknownVariantError, negotiate_accept)
from mlops_kit.endpoint_state import load_state, save_state
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


def test_no_state_is_a_clear_400_validation_error(tmp_path):
    router = ScoringRouter(tmp_path, "nowhere")
    with pytest.raises(EndpointUnavailable) as caught:
        router.invoke(b"1", "text/csv")
    # SageMaker's answer for an endpoint that does not exist: 400 ValidationError.
    assert (caught.value.status, caught.value.code) == (400, "ValidationError")
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
        with pytest.raises(PayloadError, match=reason) as caught:
            router.invoke(body, content_type)
        # What the container answers for it (the toolkit reads status_code).
        assert caught.value.status_code == (415 if "unsupported" in reason else 400)
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


# -- change detection when the stat signature repeats ------------------------------------------
import os  # noqa: E402  (the tests above do not need it)


class _StateStatFrozen:
    """Stands in for `os` inside `serving/state_follower.py`: `stat` of the state file, and `fstat`
    of a descriptor open on it, keep answering with one recorded stat result. That is what a worker
    sees when same-size replacements within one timestamp tick reuse the freed inode of the
    file it read: mtime, ctime, inode and size all equal, content different."""

    def __init__(self, path, frozen):
        self._path = str(path)
        self._frozen = frozen

    def __getattr__(self, name):
        return getattr(os, name)

    def stat(self, path, *args, **kwargs):
        real = os.stat(path, *args, **kwargs)
        return self._frozen if os.fspath(path) == self._path else real

    def fstat(self, fd):
        real = os.fstat(fd)
        current = os.stat(self._path)
        on_state_file = (real.st_dev, real.st_ino) == (current.st_dev, current.st_ino)
        return self._frozen if on_state_file else real


def _shifted_stat(st, seconds):
    """`st` with its times moved by `seconds` (a file written that long ago)."""
    fields = list(st)  # the ten classic fields; 7-9 are the integer atime, mtime, ctime
    fields[7:10] = [int(st.st_atime + seconds), int(st.st_mtime + seconds),
                    int(st.st_ctime + seconds)]
    extra = {name: getattr(st, name) + int(seconds * 1e9)
             for name in ("st_atime_ns", "st_mtime_ns", "st_ctime_ns")}
    extra.update(st_atime=st.st_atime + seconds, st_mtime=st.st_mtime + seconds,
                 st_ctime=st.st_ctime + seconds)
    return os.stat_result(fields, extra)


def test_a_state_replaced_within_one_timestamp_tick_is_applied_on_the_next_request(
        router, home, sample_rows, monkeypatch):
    from mlops_kit.serving import state_follower

    body = sample_rows[0][0].encode()
    router.refresh()  # models loaded; the writes below change weights only, in milliseconds
    save_state(home, load_state(home, ENDPOINT).with_weights({"v3": 1.0, "v2": 0.0}))
    assert router.invoke(body, "text/csv").variant.variant_name == "v3"
    seen = os.stat(router.path)
    monkeypatch.setattr(state_follower, "os", _StateStatFrozen(router.path, seen))
    rollback = load_state(home, ENDPOINT).with_weights({"v3": 0.0, "v2": 1.0})
    save_state(home, rollback)
    assert os.stat(router.path).st_size == seen.st_size  # nothing in the stat tells them apart
    served = router.invoke(body, "text/csv")
    assert served.variant.variant_name == "v2"
    assert router.table.generation == rollback.generation


def test_a_settled_state_with_a_repeated_signature_is_noticed_within_the_recheck_interval(
        home, sample_rows, monkeypatch):
    import time

    from mlops_kit.serving import state_follower

    # The file the router reads looks an hour old: no same-tick write is expected any more, so
    # only the periodic re-read can catch the repeated signature (e.g. after a clock step).
    long_ago = _shifted_stat(os.stat(state_follower.state_path(home, ENDPOINT)), -3600)
    monkeypatch.setattr(state_follower, "os",
                        _StateStatFrozen(state_follower.state_path(home, ENDPOINT), long_ago))
    router = ScoringRouter(home, ENDPOINT, recheck_seconds=0.05)
    try:
        body = sample_rows[0][0].encode()
        assert router.invoke(body, "text/csv").variant.variant_name == "v3"
        before = os.path.getsize(router.path)
        save_state(home, load_state(home, ENDPOINT).with_weights({"v3": 0.0, "v2": 1.0}))
        assert os.path.getsize(router.path) == before
        started = time.monotonic()
        while router.invoke(body, "text/csv").variant.variant_name != "v2":
            assert time.monotonic() - started < 5, "the repeated signature hid the new weights"
            time.sleep(0.01)
    finally:
        router.close()


# -- a broken variant does not stop the others -------------------------------------------------
def _corrupt_model_dir(model_versions, tmp_path):
    import shutil

    corrupt = tmp_path / "corrupt"
    shutil.copytree(model_versions[1], corrupt)
    (corrupt / inference.MODEL_FILE).write_bytes(b"not an xgboost model")
    return corrupt


def test_a_fresh_router_serves_despite_a_broken_fallback_whose_probe_fails_clearly(
        home, model_versions, sample_rows, tmp_path):
    from mlops_kit.monitoring.probe import probe_variants
    from mlops_kit.serving.router import ServingError, VariantUnavailableError

    missing = tmp_path / "deleted-v7"
    corrupt = _corrupt_model_dir(model_versions, tmp_path)
    write_state(home, {**model_versions, 7: missing, 8: corrupt},
                {3: 1.0, 2: 0.0, 7: 0.0, 8: 0.0})
    router = ScoringRouter(home, ENDPOINT, seed=3)
    try:
        body = sample_rows[0][0].encode()
        served = Counter(router.invoke(body, "text/csv").variant.variant_name
                         for _ in range(50))
        assert served == {"v3": 50}
        assert router.champion().variant_name == "v3"
        assert router.invoke(body, "text/csv", target_variant="v2").variant.variant_name == "v2"
        table = router.table
        assert set(table.unavailable) == {"v7", "v8"} and set(table.variants) == {"v3", "v2"}
        assert table.weights() == {"v3": 1.0, "v2": 0.0}
        assert str(missing) in table.unavailable["v7"] and "v8" in router.last_error
        with pytest.raises(VariantUnavailableError) as caught:
            router.invoke(body, "text/csv", target_variant="v8")
        assert caught.value.status == 503 and str(corrupt) in str(caught.value)

        def invoke(variant, csv_body):  # as `mlops monitor` probes the local endpoint
            try:
                return 200, router.invoke(csv_body.encode(), "text/csv", "text/csv",
                                          target_variant=variant).body.decode()
            except ServingError as exc:
                return exc.status, str(exc)

        results = {r.variant_name: r for r in probe_variants(invoke, ["v3", "v2", "v7", "v8"],
                                                             "\n".join(sample_rows[0][:3]))}
        assert results["v3"].ok and results["v2"].ok
        assert not results["v7"].ok and results["v7"].detail.startswith("HTTP 503")
        assert "unavailable" in results["v8"].detail and not results["v8"].ok
    finally:
        router.close()


def test_a_broken_weighted_variant_gives_its_share_to_the_loaded_weighted_ones(
        home, model_versions, sample_rows, tmp_path):
    from mlops_kit.serving.router import VariantUnavailableError

    body = sample_rows[0][0].encode()
    corrupt = _corrupt_model_dir(model_versions, tmp_path)
    with_corrupt = {**model_versions, 8: corrupt}
    write_state(home, with_corrupt, {8: 0.5, 3: 0.3, 2: 0.2, 1: 0.0})
    router = ScoringRouter(home, ENDPOINT, seed=5)
    try:
        served = Counter(router.select().variant_name for _ in range(3000))
        assert set(served) == {"v3", "v2"}  # never v8, never the weight-0 fallback v1
        assert served["v3"] / 3000 == pytest.approx(0.6, abs=0.04)  # 0.3 / (0.3 + 0.2)
        assert router.champion().variant_name == "v3"
    finally:
        router.close()
    # Every weighted variant broken, freshly started: nothing to keep serving, so unpinned
    # requests get 503 naming the broken one while the fallbacks still answer probes.
    write_state(home, with_corrupt, {8: 1.0, 3: 0.0, 2: 0.0})
    router = ScoringRouter(home, ENDPOINT)
    try:
        with pytest.raises(VariantUnavailableError) as caught:
            router.invoke(body, "text/csv")
        assert caught.value.status == 503 and "v8" in str(caught.value)
        with pytest.raises(VariantUnavailableError):
            router.champion()
        assert router.invoke(body, "text/csv", target_variant="v3").variant.variant_name == "v3"
    finally:
        router.close()


def test_a_running_router_applies_a_state_whose_only_broken_variant_is_a_fallback(
        router, home, model_versions, sample_rows, tmp_path):
    from mlops_kit.serving.router import VariantUnavailableError

    body = sample_rows[0][0].encode()
    assert router.invoke(body, "text/csv").variant.variant_name == "v3"
    missing = tmp_path / "deleted-v7"
    rolled = write_state(home, {**model_versions, 7: missing}, {2: 1.0, 3: 0.0, 7: 0.0})
    assert router.invoke(body, "text/csv").variant.variant_name == "v2"
    assert router.table.generation == rolled.generation and set(router.table.unavailable) == {"v7"}
    # A state that leaves no loaded variant with weight is not applied, whether it is a new
    # variant set or (as here, the same variants) only new weights: the last good table keeps
    # serving, and a probe of the broken variant gets 503 with the load error.
    for weights in ({7: 1.0, 3: 0.0, 2: 0.0}, {7: 1.0, 2: 0.0}):
        write_state(home, {**model_versions, 7: missing}, weights)
        assert router.invoke(body, "text/csv").variant.variant_name == "v2"
        assert router.table.generation == rolled.generation
        assert "loading models failed" in router.last_error
        with pytest.raises(VariantUnavailableError) as caught:
            router.invoke(body, "text/csv", target_variant="v7")
        assert caught.value.status == 503 and str(missing) in str(caught.value)


def test_an_unavailable_variant_is_retried_and_served_once_its_model_appears(
        home, model_versions, sample_rows, tmp_path):
    import shutil
    import time

    from mlops_kit.serving.router import VariantUnavailableError

    late = tmp_path / "late-v6"
    write_state(home, {**model_versions, 6: late}, {3: 1.0, 6: 0.0})
    router = ScoringRouter(home, ENDPOINT, retry_seconds=0.05)
    try:
        body = sample_rows[0][0].encode()
        with pytest.raises(VariantUnavailableError):
            router.invoke(body, "text/csv", target_variant="v6")
        generation = router.table.generation
        shutil.copytree(model_versions[2], late)  # the state file does not change
        deadline = time.monotonic() + 10
        while "v6" not in router.refresh().variants:
            assert time.monotonic() < deadline, router.last_error
            time.sleep(0.02)
        assert router.invoke(body, "text/csv", target_variant="v6").variant.version == 6
        assert router.table.generation == generation and not router.table.unavailable
        assert router.last_error is None
    finally:
        router.close()
    # The only weighted variant broken at start: 503 until its model appears, then it serves.
    later = tmp_path / "later-v9"
    write_state(home, {**model_versions, 9: later}, {9: 1.0, 3: 0.0})
    router = ScoringRouter(home, ENDPOINT, retry_seconds=0.05)
    try:
        with pytest.raises(VariantUnavailableError):
            router.invoke(body, "text/csv")
        shutil.copytree(model_versions[2], later)
        deadline = time.monotonic() + 10
        while True:
            try:
                if router.invoke(body, "text/csv").variant.variant_name == "v9":
                    break
            except VariantUnavailableError:
                pass
            assert time.monotonic() < deadline, router.last_error
            time.sleep(0.02)
        assert router.last_error is None
    finally:
        router.close()


def test_ping_names_unavailable_variants_and_refuses_when_nothing_weighted_can_serve(
        home, model_versions, tmp_path):
    from mlops_kit.serving.wire import EndpointApp

    missing = tmp_path / "deleted-v7"
    write_state(home, {**model_versions, 7: missing}, {3: 1.0, 2: 0.0, 7: 0.0})
    app = EndpointApp(ScoringRouter(home, ENDPOINT))
    try:
        status, _, body, _ = app.handle(b"GET", b"/ping", {}, b"")
        answer = json.loads(body)
        assert status == 200 and answer["status"] == "Degraded"
        assert answer["variants"] == {"v3": 1.0, "v2": 0.0}
        assert str(missing) in answer["unavailable"]["v7"]
    finally:
        app.router.close()

    write_state(home, {**model_versions, 7: missing}, {7: 1.0, 3: 0.0})
    fresh = EndpointApp(ScoringRouter(home, ENDPOINT))
    try:
        status, _, body, _ = fresh.handle(b"GET", b"/ping", {}, b"")
        assert status == 503 and b"v7" in body
    finally:
        fresh.router.close()


def test_ping_is_degraded_naming_a_newer_state_that_was_not_applied(
        home, model_versions, tmp_path):
    """A promotion or rollback that never took effect must not look healthy: the old
    generation keeps answering (200), but /ping says "Degraded", which generation it serves,
    which one is wanted and why that one was not applied."""
    from mlops_kit.serving.wire import EndpointApp

    def ping(app):
        status, _, body, _ = app.handle(b"GET", b"/ping", {}, b"")
        return status, json.loads(body)

    missing = tmp_path / "deleted-v7"
    with_missing = {**model_versions, 7: missing}
    app = EndpointApp(ScoringRouter(home, ENDPOINT, background=True))  # as a server worker
    try:
        served = app.router.wait_loaded().generation
        assert ping(app) == (200, {"status": "Healthy", "endpoint": ENDPOINT,
                                   "generation": served,
                                   "variants": {"v3": 1.0, "v2": 0.0, "v1": 0.0},
                                   "unavailable": {}})
        # A promotion to a new variant set whose only weighted model is missing, then a
        # rollback (same variants, weights only) onto it: neither is applied.
        for weights in ({7: 1.0, 3: 0.0, 2: 0.0}, {7: 1.0, 3: 0.0}):
            wanted = write_state(home, with_missing, weights).generation
            app.router.wait_loaded()
            status, answer = ping(app)
            assert status == 200 and answer["status"] == "Degraded", answer
            assert answer["generation"] == served and answer["wanted_generation"] == wanted
            assert answer["variants"]["v3"] == 1.0  # still the table that serves
            not_applied = answer["not_applied"]
            assert not_applied["generation"] == wanted
            assert set(not_applied["unavailable"]) == {"v7"}
            assert str(missing) in not_applied["unavailable"]["v7"]
            assert "v7" in not_applied["reason"] and str(missing) in not_applied["reason"]
        # An unreadable newest state is not applied either: no generation, the reason.
        app.router.path.write_text("{ not json")
        status, answer = ping(app)
        assert (status, answer["status"], answer["generation"]) == (200, "Degraded", served)
        assert answer["wanted_generation"] is None
        assert "unreadable" in answer["not_applied"]["reason"]
        # Once a state is applied, /ping is healthy again and names nothing unapplied.
        fixed = wanted + 1
        save_state(home, make_state(model_versions, {2: 1.0, 3: 0.0}, generation=fixed))
        app.router.wait_loaded()
        status, answer = ping(app)
        assert (status, answer["status"], answer["generation"]) == (200, "Healthy", fixed)
        assert "wanted_generation" not in answer and "not_applied" not in answer
        assert app.router.unapplied is None and app.router.last_error is None
    finally:
        app.router.close()
    # Nothing applied at all (a fresh router whose only weighted variant is missing): still 503.
    write_state(home, with_missing, {7: 1.0, 3: 0.0})
    fresh = EndpointApp(ScoringRouter(home, ENDPOINT))
    try:
        status, _, body, _ = fresh.handle(b"GET", b"/ping", {}, b"")
        assert status == 503 and str(missing).encode() in body
    finally:
        fresh.router.close()
