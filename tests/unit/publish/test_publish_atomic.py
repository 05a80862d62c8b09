"""Publish moves every planned region's pointers or none (a failed move puts the moved ones back), publishes a
planned subset of regions and says so, and tells a re-run from a retry (``already_published``).

Faults come from the sandbox (``api_faults``): SSM refuses one PutParameter in one region, as an SCP or an outage
would. The pointers are read back through the SSM API.
"""

from __future__ import annotations

from typing import Any

import pytest
from phoenix_fleet.operators.publish_operators import (
    CopyImageToRegionOperator,
    PublishReleaseOperator,
    PublishRolledBackError,
    ReleaseImageOperator,
    image_asset,
)
from phoenix_fleet.release.publish_rules import PublishRefusedError
from publish_helpers import BUCKET, HOME, OTHER, bake, fleet_config, make_bucket, outlet_context, today

from tests.helpers.airflow_run import run_task

LATEST, LATEST_VERSION = "/phoenix/images/web/latest", "/phoenix/images/web/latest-version"


def release_and_copy(cfg: str, ami: str, regions=(HOME, OTHER), run_id: str = "manual__1") -> tuple[dict, list]:
    rel = run_task(
        ReleaseImageOperator(task_id="release", role="web", ami_id=ami, config_path=cfg), outlet_context(run_id=run_id)
    ).result
    copies = [
        run_task(
            CopyImageToRegionOperator(
                task_id=f"copy_{r}", ami_id=ami, source_region=HOME, dest_region=r, poll_interval=0.05, timeout=60
            ),
            outlet_context(run_id=run_id),
        ).result
        for r in regions
    ]
    return rel, copies


def publish_op(cfg: str, rel: dict, copies: list, **kw: Any) -> PublishReleaseOperator:
    return PublishReleaseOperator(task_id="publish", role="web", release=rel, copies=copies, config_path=cfg, **kw)


def pointers(sandbox: Any) -> dict[str, tuple[str, str]]:
    """(latest, latest-version) per region, read back through SSM."""
    out = {}
    for region in (HOME, OTHER):
        ssm = sandbox.client("ssm", region)
        out[region] = tuple(ssm.get_parameter(Name=n)["Parameter"]["Value"] for n in (LATEST, LATEST_VERSION))
    return out


def labels(sandbox: Any, region: str, name: str = LATEST) -> list[str]:
    hist = sandbox.client("ssm", region).get_parameter_history(Name=name)["Parameters"]
    return [lab for h in hist for lab in h.get("Labels", [])]


def record(sandbox: Any, version: str) -> dict:
    import json

    body = sandbox.client("s3").get_object(Bucket=BUCKET, Key=f"images/web/{version}/release.json")["Body"].read()
    return json.loads(body)


def evidence(version: str) -> str | None:
    """Whether the release DAG's settle_version_claim counts ``version`` as published (it keeps the claim)."""
    from phoenix_fleet.hooks.image_hook import ImageHook

    return ImageHook(aws_conn_id="aws_default", region_name=HOME).publication_evidence(
        BUCKET, "web", version, LATEST_VERSION, HOME
    )


def test_a_release_published_before_the_log_counts_by_its_ssm_label(sandbox_clean, tmp_path):
    """No record in the log: the label publish used to write on latest-version is the evidence; an unlabelled value
    in the history (a try that was put back) is not."""
    ssm = sandbox_clean.client("ssm")
    make_bucket(sandbox_clean)
    v1, v2, v3 = today(1), today(2), today(3)
    for value in (v1, v3, v2):  # v1 released (labelled), v3 tried and put back (unlabelled), v2 holds now
        ssm.put_parameter(Name=LATEST_VERSION, Value=value, Type="String", Overwrite=True)
    ssm.label_parameter_version(Name=LATEST_VERSION, ParameterVersion=1, Labels=[f"v{v1}"])
    assert f"version 1 is labelled v{v1}" in (evidence(v1) or ""), evidence(v1)
    assert f"holds {v2}" in (evidence(v2) or ""), evidence(v2)
    assert evidence(v3) is None


@pytest.mark.parametrize("failing", [OTHER, HOME])
def test_a_failed_move_leaves_every_region_on_the_previous_version_and_the_retry_moves_all(
    sandbox_clean, tmp_path, failing
):
    sandbox = sandbox_clean
    sandbox.update_config(image_build=None)
    cfg = fleet_config(tmp_path)
    make_bucket(sandbox)
    v1, v2 = today(1), today(2)
    rel1, copies1 = release_and_copy(cfg, bake(sandbox, version=v1))
    run_task(publish_op(cfg, rel1, copies1), outlet_context(run_id="manual__1"))
    before = pointers(sandbox)
    assert {v for _, v in before.values()} == {v1}

    rel2, copies2 = release_and_copy(cfg, bake(sandbox, version=v2), run_id="manual__2")
    new_amis = {c["region"]: c["ami_id"] for c in copies2}
    # SSM refuses to move `latest` in one region, once (the home region moves last, so HOME fails after OTHER moved)
    sandbox.update_config(api_faults=[{
        "service": "ssm", "action": "PutParameter", "region": failing, "params": {"Name": LATEST},
        "code": "AccessDeniedException", "message": "explicit deny in a service control policy", "times": 1,
    }])
    ctx = outlet_context(run_id="manual__2")
    with pytest.raises(PublishRolledBackError) as exc:
        run_task(publish_op(cfg, rel2, copies2), ctx)
    assert pointers(sandbox) == before, "a region was left on the new version"
    msg = str(exc.value)
    assert "AccessDeniedException" in msg and "every region is on its previous version" in msg and "Fix:" in msg
    for region in (HOME, OTHER):
        assert f"v{v2}" not in labels(sandbox, region) + labels(sandbox, region, LATEST_VERSION)
    assert record(sandbox, v2)["state"] == "rolled-back"
    assert len(ctx["outlet_events"]) == 0  # no event extra was set: the task failed before announcing
    # the rolled-back try left v2 in latest-version's history (put, then put back) but published nothing: the
    # release DAG's settle_version_claim asks this and releases the run's claim
    assert evidence(v2) is None
    # the rolled-back try is no release: another image released now diffs against v1
    rel3 = run_task(
        ReleaseImageOperator(task_id="release", role="web", ami_id=bake(sandbox, version=today(3)), config_path=cfg),
        outlet_context(run_id="manual__3"),
    ).result
    assert rel3["previous_version"] == v1

    # the retry (the fault is spent) stages and moves every region
    result = run_task(publish_op(cfg, rel2, copies2), ctx).result
    assert pointers(sandbox) == {r: (new_amis[r], v2) for r in (HOME, OTHER)}
    assert result["already_published"] is False and result["regions"] == [HOME, OTHER]
    assert ctx["outlet_events"][image_asset("web")].extra["version"] == v2
    rec = record(sandbox, v2)
    assert rec["state"] == "published" and rec["amis"] == new_amis and rec["published_by"] == "manual__2"
    assert "says published" in (evidence(v2) or ""), evidence(v2)
    assert rec["pointers_before"][OTHER]["latest"]["value"] == before[OTHER][0]


def test_a_region_that_cannot_be_staged_moves_nothing(sandbox_clean, tmp_path):
    sandbox = sandbox_clean
    sandbox.update_config(image_build=None)
    cfg = fleet_config(tmp_path)
    make_bucket(sandbox)
    rel, copies = release_and_copy(cfg, bake(sandbox, version=today(1)))
    sandbox.update_config(api_faults=[{"action": "PutParameter", "region": OTHER, "code": "AccessDeniedException"}])
    with pytest.raises(Exception, match="AccessDeniedException"):
        run_task(publish_op(cfg, rel, copies), outlet_context())
    for region in (HOME, OTHER):
        names = [p["Name"] for p in sandbox.client("ssm", region).describe_parameters()["Parameters"]]
        assert LATEST not in names and LATEST_VERSION not in names, (region, names)


def test_a_planned_subset_of_regions_is_published_and_named_in_the_event(sandbox_clean, tmp_path):
    sandbox = sandbox_clean
    sandbox.update_config(image_build=None)
    cfg = fleet_config(tmp_path)
    make_bucket(sandbox)
    v1, v2 = today(1), today(2)
    rel1, copies1 = release_and_copy(cfg, bake(sandbox, version=v1))
    run_task(publish_op(cfg, rel1, copies1), outlet_context())
    eu_before = pointers(sandbox)[OTHER]

    ami2 = bake(sandbox, version=v2)
    rel2, copies2 = release_and_copy(cfg, ami2, regions=(HOME,), run_id="manual__2")  # the plan's regions
    ctx = outlet_context(run_id="manual__2")
    result = run_task(publish_op(cfg, rel2, copies2, regions=[HOME]), ctx).result
    extra = ctx["outlet_events"][image_asset("web")].extra
    assert extra["regions"] == [HOME] and extra["amis"] == {HOME: ami2} and result["regions"] == [HOME]
    after = pointers(sandbox)
    assert after[HOME] == (ami2, v2) and after[OTHER] == eu_before  # the unplanned region is left alone
    assert record(sandbox, v2)["amis"] == {HOME: ami2}

    # the subset must hold the home region and only the role's regions; copies must match it
    for regions, message in (([OTHER], "lacks the home region"), ([HOME, "ap-south-1"], "not regions of role")):
        with pytest.raises(ValueError, match=message):
            run_task(publish_op(cfg, rel2, copies2, regions=regions), outlet_context())
    with pytest.raises(ValueError, match=r"no copy for region\(s\) \['eu-west-1'\]"):
        run_task(publish_op(cfg, rel2, copies2), outlet_context())  # no regions: the role's, and eu has no copy


def test_already_published_means_published_by_another_run(sandbox_clean, tmp_path):
    sandbox = sandbox_clean
    sandbox.update_config(image_build=None)
    cfg = fleet_config(tmp_path, regions=(HOME,), accounts=[])
    make_bucket(sandbox)
    rel, copies = release_and_copy(cfg, bake(sandbox, version=today(1)), regions=(HOME,))
    first = run_task(publish_op(cfg, rel, copies), outlet_context(run_id="manual__a")).result
    retried = run_task(publish_op(cfg, rel, copies), outlet_context(run_id="manual__a")).result  # a task retry
    rerun = run_task(publish_op(cfg, rel, copies), outlet_context(run_id="manual__b")).result  # the DAG again
    assert (first["already_published"], retried["already_published"], rerun["already_published"]) == (
        False, False, True,
    )
    hist = sandbox.client("ssm").get_parameter_history(Name=LATEST)["Parameters"]
    assert len(hist) == 1  # nothing moved twice
    # a published version is immutable: the same version with another AMI is refused, naming the log
    other = bake(sandbox, version=today(1), name="phoenix-web-other")
    with pytest.raises(Exception, match="release log"):
        run_task(ReleaseImageOperator(task_id="r", role="web", ami_id=other, config_path=cfg), outlet_context())


def test_a_label_someone_else_put_on_the_oldest_of_100_versions_is_refused_before_anything_moves(
    sandbox_clean, tmp_path
):
    sandbox = sandbox_clean
    sandbox.update_config(image_build=None)
    cfg = fleet_config(tmp_path, regions=(HOME,), accounts=[])
    make_bucket(sandbox)
    ssm = sandbox.client("ssm")
    for i in range(100):
        ssm.put_parameter(Name=LATEST, Value=f"ami-{i:017x}", Type="String", Overwrite=True)
    ssm.label_parameter_version(Name=LATEST, ParameterVersion=1, Labels=["pinned-by-ops"])
    rel, copies = release_and_copy(cfg, bake(sandbox, version=today(1)), regions=(HOME,))
    with pytest.raises(PublishRefusedError, match=r"oldest, version 1, carries the label\(s\) \['pinned-by-ops'\].*Fix:"):
        run_task(publish_op(cfg, rel, copies), outlet_context())
    assert ssm.get_parameter(Name=LATEST)["Parameter"]["Value"] == f"ami-{99:017x}"
