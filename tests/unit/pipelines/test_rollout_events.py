"""The rollout's reading of the publish event, against the sandbox: one version, one rollout (an event whose
version was rolled already, or that says already_published, starts nothing, and says so); a release of a subset
of the role's regions rolls those regions only. The events are what the real publish operators emit."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from phoenix_fleet.config import load_fleet_config
from phoenix_fleet.hooks.image_hook import ImageHook
from phoenix_fleet.operators.publish_operators import (
    CopyImageToRegionOperator,
    PublishReleaseOperator,
    ReleaseImageOperator,
    image_asset,
)
from phoenix_fleet.pipelines.rollout_plan import RolloutSkipped, describe_rollout, plan_triggered_rollout

from tests.helpers.airflow_run import run_task

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "publish"))
from publish_helpers import BUCKET, HOME, OTHER, bake, fleet_config, make_bucket, outlet_context, today  # noqa: E402

URI = image_asset("web").uri
NOW = "2026-12-01T10:00:00+00:00"


def events(*extras: dict) -> dict:
    return {image_asset("web"): [SimpleNamespace(extra=e) for e in extras]}


def publish(cfg: str, ami: str, run_id: str, regions=(HOME, OTHER)) -> dict[str, Any]:
    ctx = outlet_context(run_id=run_id)
    rel = run_task(ReleaseImageOperator(task_id="release", role="web", ami_id=ami, config_path=cfg), ctx).result
    copies = [
        run_task(CopyImageToRegionOperator(task_id="c", ami_id=ami, source_region=HOME, dest_region=r,
                                           poll_interval=0.05, timeout=60), outlet_context()).result
        for r in regions
    ]
    run_task(PublishReleaseOperator(task_id="publish", role="web", release=rel, copies=copies, regions=list(regions),
                                    config_path=cfg), ctx)
    return dict(ctx["outlet_events"][image_asset("web")].extra)


@pytest.fixture
def web(sandbox_clean, tmp_path) -> SimpleNamespace:
    """The web role in two regions, one empty ASG per region, v1 published to both."""
    sandbox = sandbox_clean
    sandbox.update_config(image_build=None)
    cfg = fleet_config(tmp_path)
    make_bucket(sandbox)
    ami = bake(sandbox, version=today(1))
    for region in (HOME, OTHER):
        ec2, asg = sandbox.client("ec2", region), sandbox.client("autoscaling", region)
        subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
        lt = ec2.create_launch_template(LaunchTemplateName="web-a", LaunchTemplateData={"ImageId": ami})
        asg.create_auto_scaling_group(
            AutoScalingGroupName=f"web-a-{region}", MinSize=0, MaxSize=2, DesiredCapacity=0, VPCZoneIdentifier=subnet,
            LaunchTemplate={"LaunchTemplateId": lt["LaunchTemplate"]["LaunchTemplateId"], "Version": "$Default"},
            Tags=[{"Key": k, "Value": v, "PropagateAtLaunch": True}
                  for k, v in {"phoenix:role": "web", "phoenix:env": "sandbox"}.items()],
        )
    v1 = publish(cfg, ami, "manual__release1")
    return SimpleNamespace(sandbox=sandbox, cfg=cfg, fleet=load_fleet_config(cfg), v1=v1,
                           hook=ImageHook(aws_conn_id="aws_default", region_name=HOME))


def plan(web: SimpleNamespace, run_id: str, evs: Any = None, **params: Any) -> dict[str, Any]:
    return plan_triggered_rollout(web.fleet, "web", params, web.hook, evs, URI, run_id=run_id,
                                  dag_id="fleet_rollout_web", now=NOW)


def claim(web: SimpleNamespace, version: str) -> dict | None:
    text = web.hook.read_s3_text(BUCKET, f"images/web/{version}/rollout.json")
    return json.loads(text) if text else None


def test_an_event_is_rolled_out_once(web):
    v1 = web.v1["version"]
    first = plan(web, "asset_triggered__a", events(web.v1))
    assert first["version"] == v1 and first["amis"] == web.v1["amis"]
    assert claim(web, v1)["run_id"] == "asset_triggered__a"
    assert plan(web, "asset_triggered__a", events(web.v1))["version"] == v1  # the plan task's own retry
    with pytest.raises(RolloutSkipped) as exc:  # a second event for the same version (publish cleared and re-run)
        plan(web, "asset_triggered__b", events(web.v1))
    assert f"web {v1} was rolled out already, by fleet_rollout_web run asset_triggered__a" in str(exc.value)
    assert f"target_version={v1}" in str(exc.value)
    # by hand, a rolled version rolls again (how a rollout is repeated or rolled back); the claim stays
    assert plan(web, "manual__c", None, target_version=v1)["amis"] == web.v1["amis"]
    assert claim(web, v1)["run_id"] == "asset_triggered__a"
    # a dry run plans whatever it is given and claims nothing
    assert plan(web, "asset_triggered__d", events(web.v1), dry_run=True)["dry_run"] is True


def test_a_manual_rollout_claims_the_version_so_its_event_starts_nothing(web):
    ami = bake(web.sandbox, version=today(2))
    extra = publish(web.cfg, ami, "manual__release2")
    assert plan(web, "manual__first", None, target_version=extra["version"])["version"] == extra["version"]
    with pytest.raises(RolloutSkipped, match="rolled out already, by fleet_rollout_web run manual__first"):
        plan(web, "asset_triggered__late", events(extra))


def test_an_already_published_event_starts_nothing(web):
    again = publish(web.cfg, web.v1["ami_id"], "manual__release1_again")  # the release DAG run again
    assert again["already_published"] is True and again["version"] == web.v1["version"]
    with pytest.raises(RolloutSkipped, match="says already_published") as exc:
        plan(web, "asset_triggered__x", events(again))
    assert "Fix: to roll it out again, trigger fleet_rollout_web by hand" in str(exc.value)
    assert claim(web, web.v1["version"]) is None  # skipped before anything, the claim included


def test_a_release_of_a_subset_of_regions_rolls_those_regions_only(web):
    ami = bake(web.sandbox, version=today(2))
    extra = publish(web.cfg, ami, "manual__release2", regions=(HOME,))
    assert extra["regions"] == [HOME]
    result = plan(web, "asset_triggered__s", events(extra))
    assert result["amis"] == {HOME: ami} and result["regions_left_alone"] == [OTHER]
    assert [(t["asg_name"], t["target_image_id"]) for t in result["targets"]] == [(f"web-a-{HOME}", ami)]
    assert f"regions left alone (not in this release): {OTHER}" in describe_rollout(result)
    # by hand too: the version goes where it was published
    assert plan(web, "manual__s", None, target_version=extra["version"])["amis"] == {HOME: ami}


def test_the_rollout_dags_plan_task_skips_and_the_notification_says_so(web, monkeypatch):
    from airflow.sdk.exceptions import AirflowSkipException
    from phoenix_fleet.dag_facts import facts_from_config
    from phoenix_fleet.pipelines.notify import rollout_message
    from phoenix_fleet.pipelines.rollout_dag import build_rollout_dag

    from tests.helpers.airflow_run import make_context

    monkeypatch.setenv("PHOENIX_FLEET_CONFIG", web.cfg)
    task = build_rollout_dag(facts_from_config(web.fleet)["web"]).task_dict["plan"]
    ctx = make_context(run_id="asset_triggered__1")
    out = task.python_callable(params={}, triggering_asset_events=events(web.v1), ti=ctx["ti"],
                               run_id="asset_triggered__1")
    assert out["version"] == web.v1["version"]
    ctx2 = make_context(run_id="asset_triggered__2")
    with pytest.raises(AirflowSkipException, match="rolled out already"):
        task.python_callable(params={}, triggering_asset_events=events(web.v1), ti=ctx2["ti"],
                             run_id="asset_triggered__2")
    message = rollout_message("web", "succeeded", ctx2)
    assert message.subject == "[phoenix-fleet] web: rollout skipped" and "rolled out already" in message.body


def test_a_publish_that_fails_half_way_and_is_retried_ends_on_one_version_one_event_one_rollout(web):
    """#17's "done when": the eu pointers move, then SSM refuses the home region's `latest` (once); the try puts
    eu back and announces nothing (an error the SDK does not retry itself); the task's retry publishes every region; the release DAG run again (and the
    publish task cleared in the first run) announce it again. Watched from outside: the pointers through SSM in
    every region after each step, the events the tries set, and the rollouts the events start."""
    from phoenix_fleet.operators.publish_operators import PublishRolledBackError

    sandbox = web.sandbox
    v1, v2 = web.v1["version"], today(2)
    ami = bake(sandbox, version=v2)
    rel = run_task(ReleaseImageOperator(task_id="release", role="web", ami_id=ami, config_path=web.cfg),
                   outlet_context(run_id="manual__r2")).result
    copies = [
        run_task(CopyImageToRegionOperator(task_id="c", ami_id=ami, source_region=HOME, dest_region=r,
                                           poll_interval=0.05, timeout=60), outlet_context()).result
        for r in (HOME, OTHER)
    ]
    amis = {c["region"]: c["ami_id"] for c in copies}

    def pointers() -> dict[str, tuple[str, str]]:
        out = {}
        for region in (HOME, OTHER):
            ssm = sandbox.client("ssm", region)
            out[region] = tuple(ssm.get_parameter(Name=f"/phoenix/images/web/{leaf}")["Parameter"]["Value"]
                                for leaf in ("latest", "latest-version"))
        return out

    def publish_try(run_id: str) -> dict | None:
        ctx = outlet_context(run_id=run_id)
        op = PublishReleaseOperator(task_id="publish", role="web", release=rel, copies=copies,
                                    regions=[HOME, OTHER], config_path=web.cfg)
        try:
            run_task(op, ctx)
        except PublishRolledBackError:
            assert len(ctx["outlet_events"]) == 0, "a failed try announced the release"
            return None
        return dict(ctx["outlet_events"][image_asset("web")].extra)

    before = pointers()
    assert {v for _, v in before.values()} == {v1}
    sandbox.update_config(api_faults=[{
        "service": "ssm", "action": "PutParameter", "region": HOME, "params": {"Name": "/phoenix/images/web/latest"},
        "code": "AccessDeniedException", "message": "explicit deny in a service control policy", "times": 1,
    }])
    assert publish_try("manual__r2") is None  # try 1: eu had moved, home refused; eu put back
    assert pointers() == before, "a region stayed on the new version after the failed try"
    announced = [publish_try("manual__r2")]  # try 2 (the task's retry)
    assert pointers() == {r: (amis[r], v2) for r in (HOME, OTHER)}
    announced.append(publish_try("manual__r2"))  # the publish task cleared in the same run
    announced.append(publish_try("manual__r2_again"))  # the release DAG run again
    assert pointers() == {r: (amis[r], v2) for r in (HOME, OTHER)}
    assert [(e["version"], e["already_published"]) for e in announced] == [(v2, False), (v2, False), (v2, True)]

    rolled, skipped = [], []
    for n, extra in enumerate(announced):  # each event starts a rollout run
        try:
            rolled.append(plan(web, f"asset_triggered__{n}", events(extra)))
        except RolloutSkipped as e:
            skipped.append(str(e))
    assert [(p["version"], p["amis"]) for p in rolled] == [(v2, amis)], "not exactly one rollout"
    assert claim(web, v2)["run_id"] == "asset_triggered__0"
    assert "rolled out already" in skipped[0] and "says already_published" in skipped[1], skipped
