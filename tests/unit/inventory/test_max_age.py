"""fleet_max_age's choices (phoenix_fleet.inventory.max_age): which report, what to renew, bad Params."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk import Asset
from phoenix_fleet.inventory.inventory_assets import INVENTORY_ASSET
from phoenix_fleet.inventory.max_age import (
    MaxAgeParamError,
    describe,
    limits,
    read_report,
    renewals,
    report_ref,
)
from phoenix_fleet.inventory.report import SCHEMA_ID


def _report() -> dict[str, Any]:
    """Three ASGs with stale instances (one of them on an AMI that is not ours), one without."""
    def asg(name: str, oldest: float, ami: str, role: str | None = "web") -> dict[str, Any]:
        lt = {"image_id": ami, "release_version": "2026.11.15-1", "id": "lt-1", "name": f"{name}-lt",
              "version": "$Default", "version_number": 2}
        return {"name": name, "region": "us-east-1", "role": role, "instances": 3, "oldest_age_days": oldest,
                "max_age_days": 14, "launch_template": lt}

    def inst(iid: str, asg_name: str, stale: bool) -> dict[str, Any]:
        return {"instance_id": iid, "asg": asg_name, "region": "us-east-1", "past_max_age": stale}

    return {
        "schema": SCHEMA_ID,
        "generated_at": "2026-11-25T02:00:00Z",
        "totals": {"stale": 4},
        "instances": [inst("i-1", "web-a", True), inst("i-2", "web-a", False), inst("i-3", "web-b", True),
                      inst("i-4", "web-b", True), inst("i-5", "web-c", True), inst("i-6", "web-d", False)],
        "asgs": [asg("web-a", 20.5, "ami-ours"), asg("web-b", 15.0, "ami-ours"), asg("web-c", 30.0, "ami-theirs"),
                 asg("web-d", 3.0, "ami-ours")],
        "amis": [{"region": "us-east-1", "image_id": "ami-ours", "ours": True},
                 {"region": "us-east-1", "image_id": "ami-theirs", "ours": False}],
    }


def _event(**extra: Any) -> dict[Any, list[Any]]:
    return {INVENTORY_ASSET: [SimpleNamespace(extra={"path": "/old/report.json"}), SimpleNamespace(extra=extra)]}


def test_report_ref_prefers_the_param_then_the_event_s3_copy_then_its_path_then_latest() -> None:
    assert report_ref(" /x/report.html ", _event(s3_uri="s3://b/k/report.html"), "bkt") == "/x/report.json"
    assert report_ref("", _event(s3_uri="s3://b/inventory/2026-11-25/report.html", path="/p/report.json"), "bkt") == (
        "s3://b/inventory/2026-11-25/report.json"
    )
    # the newest event wins; without an S3 copy its local path
    assert report_ref(None, _event(s3_uri=None, path="/r/inventory/latest/report.json"), "bkt") == (
        "/r/inventory/latest/report.json"
    )
    assert report_ref(None, None, "bkt") == "s3://bkt/inventory/latest/report.json"
    other = {Asset(name="phoenix_image_web", uri="x-phoenix://images/web"): [SimpleNamespace(extra={"path": "/nope"})]}
    assert report_ref(None, other, "bkt") == "s3://bkt/inventory/latest/report.json"


def test_read_report_from_a_file_and_from_s3(tmp_path, sandbox_clean) -> None:
    path = tmp_path / "report.json"
    path.write_text(json.dumps(_report()))
    assert read_report(str(path), lambda: None)["generated_at"] == "2026-11-25T02:00:00Z"
    s3 = sandbox_clean.client("s3")
    s3.create_bucket(Bucket="bkt")
    s3.put_object(Bucket="bkt", Key="inventory/latest/report.json", Body=path.read_bytes())
    assert read_report("s3://bkt/inventory/latest/report.json", lambda: s3)["schema"] == SCHEMA_ID
    with pytest.raises(MaxAgeParamError, match=r"params.report: cannot read s3://bkt/inventory/none.json \(NoSuchKey"):
        read_report("s3://bkt/inventory/none.json", lambda: s3)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist. Fix: run fleet_inventory first"),
        ("{not json", "is not JSON"),
        (json.dumps({"schema": "other/1"}), "is not an inventory report \\(schema 'other/1'"),
        (json.dumps([1, 2]), "is not an inventory report \\(schema 'list'"),
    ],
)
def test_read_report_errors_name_the_param(tmp_path, content, message) -> None:
    path = tmp_path / "report.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(MaxAgeParamError, match="params.report: .*" + message):
        read_report(str(path), lambda: None)


def test_renewals_most_overdue_first_within_the_limit_and_never_a_foreign_ami() -> None:
    kwargs, plan = renewals(_report(), 1, 1.0)
    assert kwargs == [{
        "asg_name": "web-a", "region_name": "us-east-1", "role": "web", "max_age_days": 13.0,
        "target_image_id": "ami-ours", "target_label": "2026.11.15-1",
    }]
    assert [e["asg"] for e in plan["deferred"]] == ["web-b"]
    assert [(e["asg"], e["reason"]) for e in plan["skipped"]] == [("web-c", "its launch template AMI ami-theirs is not ours")]
    text = describe(plan, _report(), "/r/report.json", 1.0)
    assert "us-east-1/web-a (role web): 1/3 past 14 days" in text
    assert "deferred to the next run (limit reached): us-east-1/web-b" in text
    assert "skipped us-east-1/web-c: its launch template AMI ami-theirs is not ours" in text
    assert [k["asg_name"] for k in renewals(_report(), 5, 0)[0]] == ["web-a", "web-b"]


def test_limits_and_their_errors() -> None:
    assert limits({}, 4) == (4, 1.0)
    assert limits({"max_asgs": 0, "lead_days": 0}, 4) == (4, 0.0)
    assert limits({"max_asgs": 2, "lead_days": "2.5"}, 4) == (2, 2.5)
    for params, field in (({"max_asgs": -1}, "max_asgs"), ({"lead_days": 31}, "lead_days"),
                          ({"lead_days": "soon"}, "lead_days"), ({"max_asgs": True}, "max_asgs")):
        with pytest.raises(MaxAgeParamError, match=f"params.{field}: .*Fix:"):
            limits(params, 4)
    with pytest.raises(MaxAgeParamError, match="params.lead_days: 14 is not below web's max age of 14 days"):
        renewals(_report(), 1, 14)


def test_a_transient_s3_error_is_raised_for_the_retries() -> None:
    """Only a missing or forbidden report is bad input (fail now); throttling or the network are retried."""
    from botocore.exceptions import ClientError

    class S3:
        def __init__(self, code: str) -> None:
            self.code = code

        def get_object(self, **_: Any) -> Any:
            raise ClientError({"Error": {"Code": self.code, "Message": "x"}}, "GetObject")

    with pytest.raises(ClientError, match="SlowDown"):
        read_report("s3://bkt/inventory/latest/report.json", lambda: S3("SlowDown"))
    with pytest.raises(MaxAgeParamError, match=r"params.report: cannot read .* \(AccessDenied"):
        read_report("s3://bkt/inventory/latest/report.json", lambda: S3("AccessDenied"))
