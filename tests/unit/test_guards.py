"""The pure refusals of core/guards.py: which versions may take the traffic at all."""

import pytest

from mlops_kit.core.guards import VersionFacts, promotion_refusal, rollforward_refusal


def test_an_approved_version_with_its_artifact_may_serve():
    facts = VersionFacts(3, "Approved", model_uri="/models/v3")
    assert promotion_refusal(facts) == "" and rollforward_refusal(facts) == ""


def test_an_archived_version_is_not_promoted_and_the_reason_says_how_to_bring_it_back():
    facts = VersionFacts(7, "Approved", archived_at="2026-11-30T10:00:00.000Z")
    assert promotion_refusal(facts) == (
        "version 7 was archived by retention at 2026-11-30T10:00:00.000Z: unarchive it first "
        "(`mlops registry approve 7 --unarchive --reason ...`)")
    assert rollforward_refusal(facts) == promotion_refusal(facts)


def test_a_rejected_version_is_never_rolled_forward_whatever_else_holds():
    facts = VersionFacts(3, "Rejected", status_reason="leaks the label",
                         archived_at="2026-11-30T10:00:00Z", artifact_available=False)
    why = rollforward_refusal(facts)
    assert why.startswith("v3 is Rejected in the registry (leaks the label)")
    assert "mlops registry approve 3" in why


@pytest.mark.parametrize("uri, shown", [("/home/models/v2", "/home/models/v2"),
                                        ("", "no model URI")])
def test_a_version_whose_artifact_is_missing_is_not_rolled_forward(uri, shown):
    why = rollforward_refusal(VersionFacts(2, "Approved", model_uri=uri,
                                           artifact_available=False))
    assert why.startswith(f"the model artifact of v2 is missing ({shown})")
    assert "pick another version" in why
    # A promotion does not check the artifact here: the endpoint adapter refuses to deploy it.
    assert promotion_refusal(VersionFacts(2, "Approved", artifact_available=False)) == ""
