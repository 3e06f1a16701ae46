"""The OCSF output against the OCSF schema itself: the Detection Finding JSON Schema that the
`ocsf-json-schema` package generates from the OCSF release it ships (no network), validated with
jsonschema (Draft 2020-12, unknown attributes refused), for every detector and lifecycle step."""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from detectors import ALL
from sinks.alert_delivery.lifecycle import with_lifecycle
from sinks.alert_outputs import ocsf
from tests.alert_feeds.samples import sample_alert

ocsf_json_schema = pytest.importorskip(
    "ocsf_json_schema", reason="the dev extra's ocsf-json-schema is not installed"
)
jsonschema = pytest.importorskip("jsonschema")


@cache
def validator() -> Any:
    schema = ocsf_json_schema.OcsfJsonSchemaEmbedded(
        ocsf_json_schema.get_ocsf_schema(version=ocsf.OCSF_VERSION)
    )
    class_name = schema.lookup_class_name_from_uid(class_uid=ocsf.CLASS_UID)
    assert class_name == "detection_finding"
    document = schema.get_class_schema(class_name=class_name, profiles=[])
    assert (
        document["additionalProperties"] is False
    )  # an attribute OCSF does not define is an error
    jsonschema.Draft202012Validator.check_schema(document)
    return jsonschema.Draft202012Validator(document)


def errors(finding: dict[str, Any]) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator().iter_errors(finding)
    ]


def lifecycle(status: str, actor: str = "ana", note: str = "credentials rotated") -> dict[str, str]:
    return {"status": status, "actor": actor, "note": note, "at": "2026-11-21T08:00:00.000Z"}


def test_the_validator_refuses_what_ocsf_does_not_define() -> None:
    """The check can fail: a made-up attribute, a wrong type, an unknown enum value or a missing
    required one is an error."""
    good = ocsf.to_ocsf(sample_alert())
    assert errors(good) == []
    assert errors(good | {"account_id": "A-1001"})  # not an OCSF attribute
    assert errors(good | {"status_id": 7})  # not a Detection Finding status
    assert errors(good | {"time": "yesterday"})
    broken = ocsf.to_ocsf(sample_alert())
    broken["finding_info"]["analytic"]["type_id"] = 42
    assert errors(broken)
    del broken["finding_info"]["uid"]
    assert any("uid" in e for e in errors(broken))


@pytest.mark.parametrize("detector", sorted(name for name, _ in ALL))
def test_every_detector_s_finding_is_valid_ocsf(detector: str) -> None:
    finding = ocsf.to_ocsf(sample_alert(detector=detector, count=2, evidence=3))
    assert errors(finding) == []
    analytic = finding["finding_info"]["analytic"]
    assert analytic["uid"] == detector
    expected = (4, "Learning (ML/DL)") if detector == "behaviour_anomaly" else (1, "Rule")
    assert (analytic["type_id"], analytic["type"]) == expected


def test_account_provider_and_principal_are_resources_and_actor() -> None:
    alert = sample_alert(evidence=2)
    finding = ocsf.to_ocsf(alert)
    assert "unmapped" not in finding
    assert finding["resources"] == [{"uid": "A-1001", "name": "A-1001", "type": "Seller account"}]
    [evidence] = finding["evidences"]
    assert evidence["actor"]["user"]["uid"] == "agent-3"
    assert evidence["actor"]["user"]["org"] == {"uid": "P-7", "name": "P-7"}
    assert evidence["data"]["evidence_event_ids"] == alert["evidence_event_ids"]
    # an account-level alert (no principal, no provider) still has valid evidence
    bare = ocsf.to_ocsf(sample_alert() | {"principal_id": "", "provider_id": ""})
    assert errors(bare) == [] and "actor" not in bare["evidences"][0]
    seller = ocsf.to_ocsf(sample_alert() | {"provider_id": ""})
    assert errors(seller) == [] and "org" not in seller["evidences"][0]["actor"]["user"]


@pytest.mark.parametrize(
    ("status", "activity", "status_id", "status_name"),
    [
        ("acknowledged", 2, 2, "In Progress"),
        ("resolved", 3, 4, "Resolved"),
        ("reopened", 2, 1, "New"),
    ],
)
def test_lifecycle_moves_the_finding_s_status(
    status: str, activity: int, status_id: int, status_name: str
) -> None:
    alert = sample_alert(count=4)
    open_finding = ocsf.to_ocsf(alert)
    assert (open_finding["status_id"], open_finding["activity_id"]) == (1, 2)
    finding = ocsf.to_ocsf(with_lifecycle(alert, lifecycle(status)))
    assert errors(finding) == []
    assert (finding["activity_id"], finding["type_uid"]) == (activity, 200400 + activity)
    assert (finding["status_id"], finding["status"]) == (status_id, status_name)
    assert finding["status_detail"] == f"{status} by ana at 2026-11-21T08:00:00.000Z"
    assert finding["comment"] == "credentials rotated"
    assert finding["finding_info"]["modified_time"] == finding["time"] == 1795248000000
    assert (
        finding["finding_info"]["uid"] == open_finding["finding_info"]["uid"]
    )  # the same finding, updated
