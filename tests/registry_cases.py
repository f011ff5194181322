"""Cases both registry backends must meet alike (tests/unit/test_registry_local.py and
tests/aws/test_registry_sagemaker.py), written once so the two suites cannot drift apart."""

INVALID_REQUESTS = [
    # (overrides of a valid request, what the refusal names)
    ({"model_group": "bad_name!"}, "model group"),
    ({"owner": " "}, "owner is required"),
    ({"use_case": ""}, "use case is required"),
    ({"gates": [{"gate": "min_aupr", "passed": False}]}, "gates failed"),
    ({"lineage": {"data": {}}}, "lineage.code"),
]
