"""Warm pools in the inventory (issue 18 item 5): a group's warmed instances (DescribeWarmPool, asked only for a
group that has a pool) are reported as instance rows marked ``warm`` (lifecycle ``Warmed:*``), not counted among
the group's members, and per ASG as ``warm_pool``: how many, on which images and versions, how many behind the
launch template (drift ``warm-pool-behind-launch-template``: every scale-out from the pool brings that image)."""

from __future__ import annotations

import csv
import io
from typing import Any

import inventory_fleet as F
from phoenix_fleet.config import load_fleet_config
from phoenix_fleet.inventory.collect import collect_region, minimum_pages
from phoenix_fleet.inventory.report import build_report, to_csv, validate_report
from phoenix_fleet.inventory.report_html import render_html


def test_warmed_instances_and_their_images_are_counted_per_asg(sandbox_clean: Any) -> None:
    fleet = F.build_fleet(sandbox_clean)
    ec2, autoscaling, ssm = F.clients(sandbox_clean)
    plain = collect_region(ec2, autoscaling, ssm, F.REGION)
    assert "autoscaling:DescribeWarmPool" not in plain["stats"]["calls"]  # no pool, no call
    assert all(g["warm_pool"] is None for g in plain["asgs"])

    # web-a (desired 3) gets a pool of 2 warmed from its template's default (2026.11.08-1), then the default moves
    autoscaling.put_warm_pool(AutoScalingGroupName="web-a", MaxGroupPreparedCapacity=5, MinSize=2)
    autoscaling.describe_warm_pool(AutoScalingGroupName="web-a")  # the pool fills (booting: Warmed:Pending)
    sandbox_clean.settle()  # booted: the next request stops them (Warmed:Stopped)
    lt_id = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["web-a"])["AutoScalingGroups"][0][
        "LaunchTemplate"]["LaunchTemplateId"]
    ec2.modify_launch_template(LaunchTemplateId=lt_id, DefaultVersion="3")
    snap = collect_region(ec2, autoscaling, ssm, F.REGION)
    assert snap["stats"]["calls"]["autoscaling:DescribeWarmPool"] == 1
    assert sum(snap["stats"]["calls"].values()) == sum(minimum_pages(snap).values())
    report = build_report([snap], load_fleet_config(), now=F.NOW)
    validate_report(report)

    warm = [r for r in report["instances"] if r["warm"]]
    assert len(warm) == 2 and not {r["instance_id"] for r in warm} & set(fleet.instances["web-a"])
    assert {(r["asg"], r["lifecycle"], r["state"], r["ami_id"]) for r in warm} == {
        ("web-a", "Warmed:Stopped", "stopped", fleet.web["2026.11.08-1"])}
    assert all(r["behind_launch_template"] for r in warm)
    asgs = {a["name"]: a for a in report["asgs"]}
    assert asgs["web-a"]["instances"] == 3  # the members only
    assert asgs["web-a"]["warm_pool"] == {
        "instances": 2, "images": {fleet.web["2026.11.08-1"]: 2}, "versions": {"2026.11.08-1": 2},
        "behind_launch_template": 2,
    }
    assert "warm-pool-behind-launch-template" in asgs["web-a"]["drift"]
    assert asgs["web-b"]["warm_pool"] is None and asgs["worker-a"]["warm_pool"] is None
    assert report["totals"]["warm"] == 2 and report["totals"]["instances"] == 8 + 2

    rows = list(csv.DictReader(io.StringIO(to_csv(report))))
    assert {r["instance_id"] for r in rows if r["warm"] == "true"} == {r["instance_id"] for r in warm}
    html = render_html(report)
    row = html[html.index('<tr data-asg="web-a">'):]
    row = row[: row.index("</tr>")]
    assert '<td class="warm"><code>2026.11.08-1×2</code></td>' in row
    assert "warm-pool-behind-launch-template" in row
