"""The no-regression gate on the demo's own data: a retrain on another month of the same size
(the old demo's v2, AUPR 0.536 against the champion's 0.572 on the same rows) is refused; the
demo's v2, trained on three times the data, is better on the same rows and passes.

Real pipeline runs on the demo's generator and seeds; about a minute.
"""

import pytest

from mlops_kit.config import LocalSettings
from mlops_kit.data.synthetic import generate
from mlops_kit.local.control_plane import local_registry
from mlops_kit.local.demo import V2_DATA_FACTOR
from mlops_kit.local.pipeline_runner import run_pipeline
from mlops_pipelines.steps._io import write_table

ROWS = 50_000  # the demo's default


@pytest.fixture(scope="module")
def home_with_champion(tmp_path_factory):
    from mlops_kit.homes.local import backend

    home = tmp_path_factory.mktemp("champion-gate")
    settings = LocalSettings.from_env({"MLOPS_HOME": str(home)})
    registry = local_registry(settings)
    write_table(generate(ROWS, seed=42), home / "month-1.parquet")
    first = run_pipeline(settings, registry, data=home / "month-1.parquet")
    assert first.version is not None, first.to_dict()["gates"]
    local = backend(settings)
    approved, _ = local.registry.approve(1, actor="test", reason="champion for the gate test")
    local.emit_status_change(approved, "champion for the gate test")
    assert local_registry(settings).champion().version == 1
    return settings


def run_on(settings, name, rows):
    path = settings.home / f"{name}.parquet"
    write_table(generate(rows, seed=43), path)
    return run_pipeline(settings, local_registry(settings), data=path)


def test_a_retrain_worse_on_the_same_rows_is_refused(home_with_champion):
    result = run_on(home_with_champion, "month-2", ROWS)
    gate = {v.gate: v for v in result.verdicts}["max_aupr_regression"]
    aupr = result.evaluation["comparison"]["aupr"]
    assert aupr["candidate"] < aupr["champion"]
    assert not gate.passed and gate.value == pytest.approx(aupr["upper"])
    assert result.version is None  # not registered


def test_more_data_is_better_on_the_same_rows_and_passes(home_with_champion):
    result = run_on(home_with_champion, "quarter", ROWS * V2_DATA_FACTOR)
    aupr = result.evaluation["comparison"]["aupr"]
    assert aupr["upper"] < 0  # the whole interval says the candidate gains AUPR
    assert result.passed and result.version is not None
    assert result.version.metrics["champion_aupr"] == pytest.approx(aupr["champion"])
