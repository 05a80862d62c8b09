"""The release log: records in S3 next to the release notes, SSM labels on the newest releases only, so the log
outlives SSM's 100 versions per parameter (105 releases in the sandbox), plus the pure parts."""

from __future__ import annotations

import json
import time

import pytest
from phoenix_fleet.config import load_fleet_config
from phoenix_fleet.hooks.image_hook import ImageHook
from phoenix_fleet.operators.apply_operators import resolve_release_image
from phoenix_fleet.operators.publish_operators import PublishReleaseOperator, ReleaseImageOperator
from phoenix_fleet.release.publish_rules import VersionConflictError
from phoenix_fleet.release.release_log import (
    PUBLISHED,
    ReleaseLogError,
    ReleaseRecord,
    labels_to_drop,
    limit_blocker,
    record_key,
    versions_in_keys,
)
from publish_helpers import BUCKET, HOME, fleet_config, make_bucket, outlet_context, today

from tests.helpers.airflow_run import run_task

LATEST, LATEST_VERSION = "/phoenix/images/web/latest", "/phoenix/images/web/latest-version"


def hist(*labels_per_version: list[str], name: str = LATEST) -> list[dict]:
    return [{"Name": name, "Version": i + 1, "Value": f"ami-{i}", "Labels": labs} for i, labs in enumerate(labels_per_version)]


def test_labels_beyond_the_newest_are_dropped_and_only_ours():
    h = hist(["v2026.11.01-1", "ops-pin"], [], ["v2026.11.08-1"], ["v2026.11.15-1"], ["v2026.11.22-1"])
    assert labels_to_drop(h, keep=2) == [(1, ["v2026.11.01-1"]), (3, ["v2026.11.08-1"])]
    assert labels_to_drop(h, keep=2, adding=1) == [(1, ["v2026.11.01-1"]), (3, ["v2026.11.08-1"]), (4, ["v2026.11.15-1"])]
    assert labels_to_drop(h, keep=10) == []


def test_the_limit_blocker_names_a_label_that_would_stop_ssm():
    full = hist(["ops-pin"], *[[] for _ in range(99)])
    assert "ops-pin" in (limit_blocker(full) or "") and "ParameterMaxVersionLimitExceeded" in limit_blocker(full)
    assert limit_blocker(full[:99]) is None  # room left
    ours = hist(["v2026.11.01-1"], *[[] for _ in range(99)])
    assert limit_blocker(ours, labels_to_drop(ours, keep=0)) is None  # dropping it makes room


def test_records_round_trip_and_bad_ones_name_the_problem():
    rec = ReleaseRecord(role="web", version="2026.11.30-1", amis={"us-east-1": "ami-1"}, home_region="us-east-1")
    assert ReleaseRecord.from_json(rec.to_json()) == rec
    for text, message in (
        ("nope", "not JSON"),
        ("[]", "not a JSON object"),
        (json.dumps({"role": "web", "version": "x", "home_region": "r"}), "lacks"),
        (json.dumps({**json.loads(rec.to_json()), "amis": {"r": "i-1"}}), "amis must map"),
        (json.dumps({**json.loads(rec.to_json()), "state": "maybe"}), "state"),
    ):
        with pytest.raises(ReleaseLogError, match=message):
            ReleaseRecord.from_json(text, "s3://b/k")
    keys = [record_key("web", "2026.11.30-1"), "images/web/2026.11.30-1/release-notes.md", "images/web/x/release.json",
            record_key("worker", "2026.11.30-2")]
    assert versions_in_keys(keys, "web") == ["2026.11.30-1"]


def register(ec2, version: str) -> str:
    ami = ec2.register_image(Name=f"phoenix-web-{version}", RootDeviceName="/dev/xvda")["ImageId"]
    tags = {"phoenix:role": "web", "phoenix:version": version, "phoenix:verified": "true"}
    ec2.create_tags(Resources=[ami], Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
    return ami


def test_the_release_log_survives_its_101st_release(sandbox_clean, tmp_path, record_property):
    """105 releases of a one-region role. Publishing used to label every `latest` version; SSM keeps 100 versions
    and never drops a labelled one, so the 101st release failed with ParameterMaxVersionLimitExceeded, for good.
    Each release here is the publish task on a fresh AMI (release and copy add nothing to the log's growth: the
    full release path runs at the end)."""
    sandbox = sandbox_clean
    sandbox.update_config(image_build=None)
    cfg = fleet_config(tmp_path, regions=(HOME,), accounts=[])
    make_bucket(sandbox)
    ec2, ssm = sandbox.client("ec2"), sandbox.client("ssm")
    keep = 5
    hook = ImageHook(aws_conn_id="aws_default", region_name=HOME)
    started = time.monotonic()
    amis: dict[str, str] = {}
    previous = None
    for n in range(1, 106):
        version = today(n)
        amis[version] = register(ec2, version)
        release = {"role": "web", "version": version, "ami_id": amis[version], "region": HOME,
                   "previous_version": previous, "release_notes": {}}
        op = PublishReleaseOperator(task_id="publish", role="web", release=release, copies=[], config_path=cfg,
                                    ssm_labelled_releases=keep)
        op.hook = lambda region: hook  # type: ignore[method-assign]  # one set of boto3 clients for the loop
        out = run_task(op, outlet_context(run_id=f"manual__{n}")).result
        assert out["version"] == version and out["amis"] == {HOME: amis[version]}, n
        previous = version
    seconds = time.monotonic() - started

    history = sorted(ssm.get_paginator("get_parameter_history").paginate(Name=LATEST).build_full_result()["Parameters"],
                     key=lambda h: h["Version"])
    assert len(history) == 100 and history[-1]["Value"] == amis[today(105)]  # SSM dropped the 5 oldest
    labelled = {lab: h["Value"] for h in history for lab in h.get("Labels", [])}
    assert labelled == {f"v{today(n)}": amis[today(n)] for n in range(101, 106)}  # the newest `keep` only
    # the log has every release, the ones SSM forgot included: apply resolves any version to its AMI
    fleet = load_fleet_config(cfg)
    assert sorted(hook.release_log_versions(BUCKET, "web")) == sorted(amis)
    for n in (1, 5, 50, 100, 105):
        rec = hook.release_record(BUCKET, "web", today(n))
        assert rec is not None and rec.state == PUBLISHED and rec.amis == {HOME: amis[today(n)]}
        assert resolve_release_image(hook, fleet, "web", HOME, None, today(n)) == amis[today(n)]
    # the full release path on top: a version SSM no longer knows is still taken (versions are immutable) ...
    with pytest.raises(VersionConflictError, match=rf"{amis[today(1)]}.*release log"):
        run_task(ReleaseImageOperator(task_id="r", role="web", ami_id=register(ec2, "x"), version=today(1),
                                      config_path=cfg), outlet_context())
    # ... and the 106th release goes through release and publish
    ami = register(ec2, today(106))
    rel = run_task(ReleaseImageOperator(task_id="r", role="web", ami_id=ami, config_path=cfg), outlet_context()).result
    assert rel["version"] == today(106) and rel["previous_version"] == today(105)
    run_task(PublishReleaseOperator(task_id="p", role="web", release=rel, copies=[], config_path=cfg),
             outlet_context(run_id="manual__106"))
    assert ssm.get_parameter(Name=f"{LATEST}:v{today(106)}")["Parameter"]["Value"] == ami
    print(f"\n105 publishes in {seconds:.1f}s")
    record_property("release_log_105_publishes_seconds", round(seconds, 1))
