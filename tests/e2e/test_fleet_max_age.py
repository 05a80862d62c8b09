"""fleet_inventory then fleet_max_age, end to end with dag.test() in the sandbox: the instance past max age is
replaced on the same image, the young one stays; a dry run changes nothing; a bad report fails naming the Param."""

from __future__ import annotations

import json

import pytest
from e2e_fleet import dag_from, images_in

pytestmark = pytest.mark.e2e


def _states(run):
    return {(ti.task_id, ti.map_index): ti.state for ti in run.get_task_instances()}


@pytest.fixture
def inventory(airflow_db, seeded, worker_fleet, tmp_path, monkeypatch):
    """The worker ASG with one of its two instances 20 days old, and tonight's inventory report of it."""
    h = seeded["handle"]
    group, images = images_in(h, worker_fleet["asg"])
    old = sorted(images)[0]
    h.age_instances(instance_ids=[old], days=20)
    monkeypatch.setenv("PHOENIX_REPORT_DIR", str(tmp_path / "reports"))
    run = dag_from("fleet_inventory", "fleet_inventory").test()
    assert run.state == "success", _states(run)
    report = tmp_path / "reports" / "inventory" / "latest" / "report.json"
    data = json.loads(report.read_text())
    assert [r["instance_id"] for r in data["instances"] if r["past_max_age"]] == [old]
    return {"old": old, "young": sorted(images)[1], "report": report, **worker_fleet}


def test_max_age_renews_only_the_old_instance(seeded, inventory):
    h = seeded["handle"]
    dry = dag_from("fleet_max_age", "fleet_max_age").test(run_conf={"report": str(inventory["report"]), "dry_run": True})
    assert dry.state == "success", _states(dry)
    _, images = images_in(h, inventory["asg"])
    assert inventory["old"] in images  # the dry run replaced nothing

    run = dag_from("fleet_max_age", "fleet_max_age").test(run_conf={"report": str(inventory["report"])})
    states = _states(run)
    assert run.state == "success", states
    assert states[("renew", 0)] == "success" and states[("summary", -1)] == "success"
    group, images = images_in(h, inventory["asg"])
    assert inventory["old"] not in images and inventory["young"] in images
    assert set(images.values()) == {inventory["old_ami"]}  # renewed on the image it ran, not upgraded
    assert group["DesiredCapacity"] == 2
    assert not [t for t in group["Tags"] if t["Key"].startswith("phoenix:rollout:")]


def test_a_bad_report_fails_naming_the_param(airflow_db, seeded, worker_fleet, tmp_path):
    bad = tmp_path / "report.json"
    bad.write_text(json.dumps({"schema": "something-else/1"}))
    for report in (str(bad), str(tmp_path / "missing.json")):
        run = dag_from("fleet_max_age", "fleet_max_age").test(run_conf={"report": report})
        states = _states(run)
        assert run.state == "failed" and states[("select", -1)] == "failed", states
        assert ("renew", 0) not in states
