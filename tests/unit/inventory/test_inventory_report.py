"""The report (inventory.report, inventory.report_html): rows, summaries, drift, schema, CSV, HTML, max age."""

from __future__ import annotations

import copy
import csv
import datetime as dt
import io
import json
import re
from typing import Any

import inventory_fleet as F
import jsonschema
import pytest
from phoenix_fleet.config import load_fleet_config
from phoenix_fleet.inventory.collect import collect_region
from phoenix_fleet.inventory.report import (
    INSTANCE_COLUMNS,
    SCHEMA_ID,
    asgs_past_max_age,
    build_report,
    fleet_regions,
    load_schema,
    max_age_plan,
    render_all,
    to_csv,
    to_json,
    validate_report,
    write_local,
)
from phoenix_fleet.inventory.report_html import render_html


@pytest.fixture
def fleet_report(sandbox_clean: Any) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    fleet = F.build_fleet(sandbox_clean)
    snap = collect_region(*F.clients(sandbox_clean), F.REGION)
    return fleet, snap, build_report([snap], load_fleet_config(), now=F.NOW)


def _row(report: dict[str, Any], instance_id: str) -> dict[str, Any]:
    return next(r for r in report["instances"] if r["instance_id"] == instance_id)


def test_rows_versions_ages_and_flags(fleet_report: Any) -> None:
    fleet, _, report = fleet_report
    assert report["schema"] == SCHEMA_ID
    assert report["generated_at"] == "2026-11-25T12:00:00Z"
    assert report["max_age_days"] == 14

    stale = _row(report, fleet.stale_instance)
    assert stale["asg"] == "web-a" and stale["role"] == "web"
    assert stale["running_version"] == "2026.11.08-1" and stale["latest_version"] == "2026.11.15-1"
    assert stale["versions_behind"] == 1 and stale["behind_latest"] is True
    assert stale["age_days"] == 20.0 and stale["max_age_days"] == 14 and stale["past_max_age"] is True
    assert stale["lifecycle"] == "InService" and stale["health"] == "Healthy"
    assert stale["ami_ours"] is True and stale["ami_owner"] == "self"
    assert stale["behind_launch_template"] is False

    fresh = _row(report, fleet.instances["web-a"][1])
    assert fresh["age_days"] == 2.0 and fresh["past_max_age"] is False

    web_b = _row(report, fleet.instances["web-b"][0])
    assert web_b["behind_launch_template"] is True
    assert web_b["launch_template_image_id"] == fleet.web["2026.11.15-1"]

    worker = _row(report, fleet.instances["worker-a"][0])
    assert worker["running_version"] == worker["latest_version"] == F.WORKER_VERSION
    assert worker["versions_behind"] == 0 and worker["behind_latest"] is False

    lone = _row(report, fleet.lone_instance)
    assert lone["asg"] is None and lone["role"] is None and lone["lifecycle"] is None
    assert lone["ami_ours"] is False and lone["ami_owner"] == "other" and lone["running_version"] is None
    assert lone["behind_launch_template"] is None and lone["versions_behind"] is None

    assert report["totals"] == {
        "instances": 8,
        "running": 8,
        "stale": 1,
        "behind_latest": 5,
        "behind_launch_template": 2,
        "not_ours": 1,
        "unknown_version": 1,
        "asgs": 3,
        "asgs_drifted": 2,
        "roles": 2,
        "amis": 5,
        "amis_not_ours": 1,
        "canaries": 0,
        "canaries_expired": 0,
        "warm": 0,
    }


def test_asg_and_role_summaries_with_drift(fleet_report: Any) -> None:
    fleet, _, report = fleet_report
    asgs = {a["name"]: a for a in report["asgs"]}
    assert asgs["web-a"]["drift"] == ["launch-template-behind-latest"]
    assert asgs["web-a"]["launch_template"]["version"] == "$Default"
    assert asgs["web-a"]["launch_template"]["version_number"] == 2
    assert asgs["web-a"]["launch_template"]["release_version"] == "2026.11.08-1"
    assert asgs["web-a"]["stale"] == 1 and asgs["web-a"]["oldest_age_days"] == 20.0
    assert asgs["web-b"]["drift"] == ["instances-behind-launch-template"]
    assert asgs["web-b"]["instances_behind_launch_template"] == 2
    assert asgs["web-b"]["launch_template_behind_latest"] is False
    assert asgs["worker-a"]["drift"] == [] and asgs["worker-a"]["launch_template"]["version"] == "$Latest"
    assert asgs["web-a"]["versions"] == {"2026.11.08-1": 3}

    roles = {r["role"]: r for r in report["roles"]}
    assert roles["web"]["versions"] == {"2026.11.08-1": 5} and roles["web"]["latest_version"] == "2026.11.15-1"
    assert roles["web"]["stale"] == 1 and roles["web"]["asgs_drifted"] == 2
    assert roles["worker"]["behind_latest"] == 0

    amis = {a["image_id"]: a for a in report["amis"]}
    assert amis[fleet.amazon_ami]["ours"] is False and amis[fleet.amazon_ami]["instances"] == 1
    assert amis[fleet.web["2026.11.15-1"]]["latest_pointer"] is True
    assert amis[fleet.web["2026.11.01-1"]]["instances"] == 0


def test_injectable_now_and_max_age_override(fleet_report: Any) -> None:
    _, snap, _ = fleet_report
    later = build_report([snap], load_fleet_config(), now=F.NOW + dt.timedelta(days=13))
    assert later["totals"]["stale"] == 8  # everyone is 15+ days old by then
    strict = build_report([snap], load_fleet_config(), now=F.NOW, max_age_days=1)
    assert strict["totals"]["stale"] == 8 and strict["max_age_days"] == 1
    lenient = build_report([snap], load_fleet_config(), now=F.NOW, max_age_days=30)
    assert lenient["totals"]["stale"] == 0


def test_a_role_max_age_from_the_config(fleet_report: Any) -> None:
    _, snap, _ = fleet_report
    cfg = load_fleet_config()
    worker = cfg.roles["worker"].model_copy(update={"max_age_days": 1})
    cfg = cfg.model_copy(update={"roles": {**cfg.roles, "worker": worker}})
    report = build_report([snap], cfg, now=F.NOW)
    roles = {r["role"]: r for r in report["roles"]}
    assert roles["worker"]["max_age_days"] == 1 and roles["worker"]["stale"] == 2
    assert roles["web"]["max_age_days"] == 14 and roles["web"]["stale"] == 1


def test_json_validates_against_the_schema(fleet_report: Any) -> None:
    _, _, report = fleet_report
    validate_report(report)
    validate_report(json.loads(to_json(report)))
    jsonschema.Draft202012Validator.check_schema(load_schema())
    broken = copy.deepcopy(report)
    broken["instances"][0]["age_days"] = "old"
    with pytest.raises(jsonschema.ValidationError):
        validate_report(broken)
    extra = copy.deepcopy(report)
    extra["instances"][0]["surprise"] = 1
    with pytest.raises(jsonschema.ValidationError):
        validate_report(extra)


def test_empty_report_validates() -> None:
    report = build_report([], None, now=F.NOW)
    validate_report(report)
    assert report["totals"]["instances"] == 0
    html = render_html(report)
    assert "No instance is past its max age" in html


def test_csv_columns_and_values(fleet_report: Any) -> None:
    fleet, _, report = fleet_report
    rows = list(csv.DictReader(io.StringIO(to_csv(report))))
    assert tuple(rows[0].keys()) == INSTANCE_COLUMNS
    assert len(rows) == report["totals"]["instances"]
    stale = next(r for r in rows if r["instance_id"] == fleet.stale_instance)
    assert stale["past_max_age"] == "true" and stale["age_days"] == "20.0" and stale["asg"] == "web-a"
    lone = next(r for r in rows if r["instance_id"] == fleet.lone_instance)
    assert lone["asg"] == "" and lone["ami_ours"] == "false"


def test_html_is_self_contained_and_shows_the_pictures(fleet_report: Any) -> None:
    fleet, _, report = fleet_report
    html = render_html(report)
    assert html.startswith("<!DOCTYPE html>")
    assert not re.search(r"https?://", html), "the page must not reference anything outside itself"
    for banned in ("<script", "<link", "@import", "url(", "<img", "<iframe"):
        assert banned not in html.lower()
    assert '<section id="version-chart">' in html and 'id="asg-chart-svg"' in html
    assert 'data-group="web-b" data-version="2026.11.08-1" data-count="2"' in html
    assert 'id="max-age-line" data-days="14"' in html
    assert 'class="bin stale" data-from="20" data-to="21" data-count="1"' in html
    stale_section = html.split('<section id="stale-list">')[1].split("</section>")[0]
    assert f'data-instance-id="{fleet.stale_instance}"' in stale_section
    assert fleet.instances["web-a"][1] not in stale_section
    assert fleet.amazon_ami in html.split('<section id="not-ours">')[1]


def test_html_escapes_what_it_shows(fleet_report: Any) -> None:
    _, _, report = fleet_report
    evil = copy.deepcopy(report)
    evil["asgs"][0]["name"] = '<script>alert("x")</script>'
    html = render_html(evil)
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_big_fleet_html_is_bounded(fleet_report: Any) -> None:
    _, _, report = fleet_report
    big = copy.deepcopy(report)
    row = big["instances"][0]
    big["instances"] = [{**row, "instance_id": f"i-{n:017x}", "age_days": 30.0 + n % 400, "past_max_age": True} for n in range(3000)]
    big["asgs"] = [{**big["asgs"][0], "name": f"asg-{n}"} for n in range(300)]
    html = render_html(big)
    assert html.count('class="stale"') == 500 and "2500 more in report.csv" in html
    assert "Showing 60 of 300 ASGs" in html
    assert html.count('class="bin ') <= 120


def test_write_local_dated_and_latest(fleet_report: Any, tmp_path: Any) -> None:
    _, _, report = fleet_report
    paths = write_local(report, tmp_path)
    for name in ("report.json", "report.csv", "report.html"):
        assert (tmp_path / "inventory" / "2026-11-25" / name).is_file()
        assert (tmp_path / "inventory" / "latest" / name).read_bytes() == (tmp_path / "inventory" / "2026-11-25" / name).read_bytes()
    assert paths["report.html"].endswith("inventory/2026-11-25/report.html")
    assert set(render_all(report)) == {"report.json", "report.csv", "report.html"}
    assert not list((tmp_path / "inventory" / "latest").glob(".*tmp*"))


def test_asgs_past_max_age_bounded_and_ordered(fleet_report: Any) -> None:
    fleet, snap, report = fleet_report
    (only,) = asgs_past_max_age(report, 5)
    assert only["asg"] == "web-a" and only["role"] == "web" and only["region"] == F.REGION
    assert only["stale_instance_ids"] == [fleet.stale_instance] and only["overdue_days"] == 6.0
    assert only["target_image_id"] == fleet.web["2026.11.08-1"] and only["target_version"] == "2026.11.08-1"
    assert asgs_past_max_age(report, 0) == []
    with pytest.raises(ValueError, match="limit"):
        asgs_past_max_age(report, -1)

    everyone = build_report([snap], load_fleet_config(), now=F.NOW + dt.timedelta(days=13))
    plan = max_age_plan(everyone, 2)
    assert [e["asg"] for e in plan["recycle"]] == ["web-a", "web-b"]  # most overdue first, then more stale
    assert [e["asg"] for e in plan["deferred"]] == ["worker-a"]
    assert plan["skipped"] == []  # the lone instance is in no ASG: nothing to recycle


def test_asgs_past_max_age_skips_what_is_not_ours(fleet_report: Any) -> None:
    _, _, report = fleet_report
    changed = copy.deepcopy(report)
    a = next(x for x in changed["asgs"] if x["name"] == "web-a")
    a["role"] = None
    assert asgs_past_max_age(changed, 5) == []
    assert max_age_plan(changed, 5)["skipped"][0]["reason"] == "belongs to no role in the fleet config"
    changed = copy.deepcopy(report)
    a = next(x for x in changed["asgs"] if x["name"] == "web-a")
    for ami in changed["amis"]:
        if ami["image_id"] == a["launch_template"]["image_id"]:
            ami["ours"] = False
    assert asgs_past_max_age(changed, 5) == []
    assert "is not ours" in max_age_plan(changed, 5)["skipped"][0]["reason"]


def test_fleet_regions() -> None:
    cfg = load_fleet_config()
    assert fleet_regions(cfg) == ["eu-west-1", "us-east-1"]
    assert fleet_regions(cfg, ["us-east-1"]) == ["us-east-1"]
    with pytest.raises(ValueError, match="params.regions.*Fix"):
        fleet_regions(cfg, ["ap-south-1"])


def test_missing_ami_is_flagged(fleet_report: Any) -> None:
    fleet, snap, _ = fleet_report
    gone = copy.deepcopy(snap)
    del gone["images"][fleet.amazon_ami]
    gone["missing_images"] = [fleet.amazon_ami]
    report = build_report([gone], load_fleet_config(), now=F.NOW)
    assert _row(report, fleet.lone_instance)["ami_owner"] == "missing"
    ami = next(a for a in report["amis"] if a["image_id"] == fleet.amazon_ami)
    assert ami["missing"] is True and ami["ours"] is False
    validate_report(report)


def test_canaries_past_their_bound_are_reported(sandbox_clean: Any) -> None:
    """A canary that outlived its run (its release ended without the terminate_canary teardown) shows up in the
    report with its bound: the expiry tag, else launch time + canaries.DEFAULT_LIFETIME."""
    fleet = F.build_fleet(sandbox_clean)
    ec2 = sandbox_clean.client("ec2")
    ami = fleet.web["2026.11.15-1"]

    def canary(expires: str | None, run: str) -> str:
        tags = {"phoenix:canary": "true", "phoenix:role": "web", "phoenix:verify-run": run,
                "phoenix:managed-by": "phoenix-fleet", **({"phoenix:canary-expires": expires} if expires else {})}
        return ec2.run_instances(
            ImageId=ami, MinCount=1, MaxCount=1, InstanceType="t3.small",
            TagSpecifications=[{"ResourceType": "instance", "Tags": F.tags(tags)}],
        )["Instances"][0]["InstanceId"]

    orphan = canary("2026-11-25T06:00:00+00:00", "manual__timed-out")
    live = canary("2026-11-25T18:00:00+00:00", "manual__running")
    old_untagged = canary(None, "manual__old")
    F.backdate(F.REGION, old_untagged, F.NOW - dt.timedelta(hours=13))
    F.backdate(F.REGION, orphan, F.NOW - dt.timedelta(hours=7))

    report = build_report([collect_region(*F.clients(sandbox_clean), F.REGION)], load_fleet_config(), now=F.NOW)
    validate_report(report)
    by_id = {c["instance_id"]: c for c in report["canaries"]}
    assert set(by_id) == {orphan, live, old_untagged}
    assert by_id[orphan]["expired"] is True and by_id[orphan]["bound_from"] == "tag"
    assert by_id[orphan]["expires_at"] == "2026-11-25T06:00:00+00:00" and by_id[orphan]["age_hours"] == 7.0
    assert by_id[orphan]["verify_run"] == "manual__timed-out" and by_id[orphan]["role"] == "web"
    assert by_id[live]["expired"] is False
    assert by_id[old_untagged]["expired"] is True and by_id[old_untagged]["bound_from"] == "default"
    assert [c["instance_id"] for c in report["canaries"][:2]] == sorted([orphan, old_untagged])
    assert report["totals"]["canaries"] == 3 and report["totals"]["canaries_expired"] == 2
    html = render_html(report)
    section = html.split('<section id="canaries">')[1].split("</section>")[0]
    assert f'<tr class="stale" data-canary="{orphan}">' in section and f'<tr data-canary="{live}">' in section
    assert 'data-total="canaries_expired"><div class="n">2</div>' in html
    from phoenix_fleet.inventory.report import summary, summary_text

    assert summary(report)["canaries_expired"] == 2
    assert f"{orphan} (us-east-1)" in summary_text(report)
