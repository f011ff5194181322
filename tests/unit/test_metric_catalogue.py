"""One metric catalogue: the publishers build their datapoints from it, the alarm definitions
are checked against it when loaded, and the contract lists what each Lambda publishes."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from mlops_kit import contract
from mlops_kit.core import metric_catalogue as catalogue
from mlops_kit.core.alarms import DEFINITIONS_FILE, load_specs

AT = datetime(2026, 11, 27, 12, tzinfo=timezone.utc)


def test_a_datum_takes_its_unit_and_namespace_from_the_catalogue():
    datum = catalogue.CHAMPION_LATENCY.datum(4000, {"EndpointName": "ep"}, AT)
    assert (datum.name, datum.unit, datum.namespace, datum.value) == (
        "ChampionModelLatency", "Microseconds", "MLOpsKit/Monitoring", 4000.0)
    assert catalogue.CAPTURE_SKIPPED.datum(1, {"VariantName": "v1", "EndpointName": "ep"},
                                           AT).unit == "Count"


def test_a_datum_under_dimensions_the_catalogue_does_not_list_is_refused():
    with pytest.raises(ValueError, match=r"FeaturePSIMax is not published with dimensions "
                                         r"\['EndpointName', 'VariantName'\]"):
        catalogue.FEATURE_PSI_MAX.datum(0.1, {"EndpointName": "ep", "VariantName": "v1"}, AT)


def test_an_unknown_metric_is_named_with_the_known_ones():
    with pytest.raises(ValueError, match="no metric MLOpsKit/Monitoring/FeaturePsiMax.*"
                                         "FeaturePSIMax"):
        catalogue.lookup("MLOpsKit/Monitoring", "FeaturePsiMax")


def test_every_alarm_watches_a_published_metric_under_its_dimensions():
    for spec in load_specs():
        metric = catalogue.lookup(spec.namespace, spec.metric)
        assert metric.publishes(spec.dimensions), spec.id


def _definitions_with(tmp_path, **changes) -> str:
    raw = json.loads(DEFINITIONS_FILE.read_text())
    raw["alarms"][0].update(changes)
    path = tmp_path / "alarm_definitions.json"
    path.write_text(json.dumps(raw))
    return str(path)


def test_an_alarm_on_a_metric_nobody_publishes_fails_at_load(tmp_path):
    path = _definitions_with(tmp_path, metric="FeaturePsiMax")
    with pytest.raises(ValueError, match="alarm feature-drift: no metric "
                                         "MLOpsKit/Monitoring/FeaturePsiMax"):
        load_specs(path)


def test_an_alarm_on_a_dimension_set_nobody_publishes_fails_at_load(tmp_path):
    path = _definitions_with(tmp_path, dimensions={"EndpointName": "{endpoint}",
                                                   "VariantName": "{champion}"})
    with pytest.raises(ValueError, match="alarm feature-drift: FeaturePSIMax is not published "
                                         "with dimensions"):
        load_specs(path)


@pytest.mark.parametrize("function", ["drift_monitor", "probe"])
def test_the_contract_lists_what_the_catalogue_says_each_lambda_publishes(function):
    listed = {(m.namespace, m.name, tuple(m.dimensions))
              for m in contract.function(function).metrics}
    published = {(m.namespace, m.name, dims) for m in catalogue.published_by(function)
                 for dims in m.dimension_sets}
    assert listed == published


def test_emf_round_trips_a_datum():
    datum = catalogue.FEATURE_PSI.datum(
        0.3, {"EndpointName": "ep", "VariantName": "v1", "Feature": "amount"}, AT)
    assert catalogue.MetricDatum.from_emf(datum.to_emf()) == [datum]
