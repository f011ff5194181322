import pytest

from mlops_kit.core.gates import GATES
from mlops_pipelines import parameters
from mlops_pipelines.steps import train


def test_every_gate_is_a_parameter_with_its_default():
    for gate in GATES:
        p = parameters.PARAMETERS_BY_NAME[gate.name]
        assert (p.type, p.default) == ("float", gate.default)


def test_training_parameters_match_the_train_step():
    assert set(parameters.TRAINING_HYPERPARAMETERS) == set(train.HYPERPARAMETER_DEFAULTS)
    for name, default in train.HYPERPARAMETER_DEFAULTS.items():
        assert parameters.PARAMETERS_BY_NAME[name].default == default


def test_resolve_applies_typed_overrides():
    values = parameters.resolve({"max_depth": "3", "min_aupr": "0.999", "target": "label"})
    assert values["max_depth"] == 3 and values["min_aupr"] == 0.999 and values["target"] == "label"
    assert values["eta"] == 0.1


@pytest.mark.parametrize("overrides,match", [
    ({"nope": "1"}, "unknown parameter"),
    ({"max_depth": "deep"}, "expects int"),
    ({"eta": "nan"}, "expects float"),
])
def test_resolve_rejects_bad_values(overrides, match):
    with pytest.raises(ValueError, match=match):
        parameters.resolve(overrides)
