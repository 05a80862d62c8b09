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
    throughput,
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


def _fleet_report(ages: dict[str, list[float]], max_age: dict[str, int] | None = None) -> dict[str, Any]:
    """A report of ASGs (name -> its instances' ages in days); the role is the name's prefix."""
    max_age = max_age or {}
    lt = {"image_id": "ami-ours", "release_version": "2026.11.15-1", "id": "lt-1", "name": "lt", "version": "$Default",
          "version_number": 2}
    asgs, rows = [], []
    for name, instance_ages in ages.items():
        role = name.split("-")[0]
        limit = max_age.get(role, 14)
        asgs.append({"name": name, "region": "us-east-1", "role": role, "instances": len(instance_ages),
                     "oldest_age_days": max(instance_ages), "max_age_days": limit, "launch_template": lt})
        rows += [{"instance_id": f"{name}-{n}", "asg": name, "region": "us-east-1", "state": "running", "lifecycle": "InService",
                  "age_days": age, "max_age_days": limit, "past_max_age": age > limit} for n, age in enumerate(instance_ages)]
    return {"schema": SCHEMA_ID, "generated_at": "2026-11-25T02:00:00Z",
            "totals": {"stale": sum(r["past_max_age"] for r in rows)}, "instances": rows, "asgs": asgs,
            "amis": [{"region": "us-east-1", "image_id": "ami-ours", "ours": True}]}


def test_the_number_renewed_a_night_comes_from_the_fleet_and_says_when_the_budget_cannot_keep_up() -> None:
    young = {f"web-{n:03d}": [1.0] for n in range(56)}
    rate = throughput(_fleet_report(young), 4, 0)
    assert (rate["needed_per_night"], rate["per_run"], rate["keeps_up"], rate["message"]) == (4, 4, True, None)

    rate = throughput(_fleet_report({**young, "web-x": [1.0]}), 4, 0)  # one ASG more than 4 a night keeps up with
    assert (rate["needed_per_night"], rate["keeps_up"]) == (5, False)
    assert "cannot keep up: 57 renewable ASG(s) need 5 renewal(s) a night" in rate["message"]
    assert "Fix: max_age_asgs_per_run: 5 or more" in rate["message"]

    # per role, each within its own max age minus the lead: web ceil(30 / 13) + worker ceil(20 / 6)
    mixed = {**{f"web-{n}": [2.0] for n in range(30)}, **{f"worker-{n}": [2.0] for n in range(20)}}
    rate = throughput(_fleet_report(mixed, {"worker": 7}), 48, 1)
    assert rate["roles"] == {"web": {"asgs": 30, "window_days": 13, "per_night": 3},
                             "worker": {"asgs": 20, "window_days": 6, "per_night": 4}}
    assert (rate["needed_per_night"], rate["per_run"]) == (7, 7)

    # a backlog past max age goes as fast as the budget allows, never faster
    old = {f"web-{n:03d}": [20.0] for n in range(60)}
    assert throughput(_fleet_report(old), 48, 1)["per_run"] == 48
    assert len(renewals(_fleet_report(old), 48, 1)[0]) == 48
    with pytest.raises(MaxAgeParamError, match="params.lead_days: 7 is not below worker's max age of 7 days"):
        throughput(_fleet_report(mixed, {"worker": 7}), 48, 7)


@pytest.mark.parametrize("asgs", [56, 200, 1000])
def test_night_after_night_no_instance_outlives_max_age(asgs: int) -> None:
    """A fleet that starts with random ages (many past max age) is renewed each night by what the plan picks (a
    renewal replaces the instances older than max age - lead; an ASG's instances are about the same age). With a budget of just what the fleet needs a night,
    the backlog is cleared, then no instance is past max age at any inventory, and no night renews more than the
    budget. With the former fixed 4 a night, a fleet past ~56 ASGs fell behind for good."""
    import random

    rng = random.Random(asgs)
    max_age, lead = 14, 1
    budget = -(-asgs // (max_age - lead))  # ceil(ASGs / window): exactly what keeps up
    # an ASG's instances launched together (a rollout or renewal replaces them within the hour)
    ages = {f"web-{n:04d}": [a, a - rng.uniform(0, 0.2)] for n in range(asgs) for a in [rng.uniform(0.2, 30)]}
    per_night, oldest = [], []
    for _ in range(80):
        kwargs, plan = renewals(_fleet_report(ages), budget, lead)
        assert plan["throughput"]["keeps_up"] and plan["throughput"]["needed_per_night"] == budget
        per_night.append(len(kwargs))
        for k in kwargs:
            ages[k["asg_name"]] = [0.0 if a > k["max_age_days"] else a for a in ages[k["asg_name"]]]
        oldest.append(max(a for v in ages.values() for a in v))
        ages = {name: [a + 1 for a in v] for name, v in ages.items()}  # the next night's inventory
    assert max(per_night) <= budget
    assert max(oldest[40:]) <= max_age, oldest  # every instance renewed before it passed max age
