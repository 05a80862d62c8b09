"""AMI retention: the pure plan (property-tested over random fleets) and the operator against the sandbox,
adversarially: nothing in use is ever deprecated or deleted."""

from __future__ import annotations

import datetime as dt
from typing import Any

import inventory_fleet as F
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from phoenix_fleet.inventory.retention_plan import (
    DEPRECATED_AT_TAG,
    images_in_use,
    iso,
    plan_lines,
    plan_retention,
)
from phoenix_fleet.operators.retention_operators import AmiRetentionOperator, is_unsupported

from tests.helpers.airflow_run import make_context, run_task

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
EU = "eu-west-1"


# ------------------------------------------------------------------------------------------ pure plan


def _img(role: str, version: str | None, state: str = "available", deprecated_days: float | None = None) -> dict[str, Any]:
    tags = {"phoenix:role": role}
    if version is not None:
        tags["phoenix:version"] = version
    if deprecated_days is not None:
        tags[DEPRECATED_AT_TAG] = iso(NOW - dt.timedelta(days=deprecated_days))
    return {"name": f"{role}-{version}", "ours": True, "state": state, "tags": tags, "snapshot_ids": [f"snap-{version}"]}


def _snap(region: str, images: dict[str, Any], **rest: Any) -> dict[str, Any]:
    return {"region": region, "instances": [], "launch_templates": {}, "ssm": {}, "images": images, **rest}


VERSIONS = [f"2026.{m:02d}.{d:02d}-1" for m in (9, 10, 11) for d in (1, 8, 15, 22)]


@st.composite
def fleets(draw: Any) -> tuple[list[dict[str, Any]], int, int, list[str]]:
    regions = draw(st.lists(st.sampled_from(["us-east-1", "eu-west-1", "ap-south-1"]), min_size=1, max_size=3, unique=True))
    snaps = []
    n = 0
    all_ids: list[str] = []
    for region in regions:
        images: dict[str, Any] = {}
        for _ in range(draw(st.integers(0, 10))):
            n += 1
            ami = f"ami-{n:08x}"
            role = draw(st.sampled_from(["web", "web", "web", "worker"]))
            version = draw(st.one_of(st.sampled_from(VERSIONS), st.just("garbage"), st.none()))
            state = draw(st.sampled_from(["available", "available", "available", "pending", "disabled"]))
            dep = draw(st.one_of(st.none(), st.floats(0, 60)))
            images[ami] = _img(role, version, state, dep)
            if draw(st.booleans()):
                images[ami]["deprecation_time"] = iso(NOW - dt.timedelta(days=draw(st.integers(-5, 60))))
        ids = list(images) + [f"ami-f{k:07x}" for k in range(2)]  # plus someone else's
        all_ids += list(images)
        pick = st.sampled_from(ids + all_ids) if ids + all_ids else st.just("ami-ffffffff")
        instances = [
            {"id": f"i-{region}-{k}", "image_id": draw(pick), "state": draw(st.sampled_from(["running", "stopped", "pending", "shutting-down"]))}
            for k in range(draw(st.integers(0, 6)))
        ]
        lts = {}
        for k in range(draw(st.integers(0, 3))):
            versions = {str(v + 1): draw(pick) for v in range(draw(st.integers(1, 3)))}
            lts[f"lt-{region}-{k}"] = {
                "name": f"lt{k}",
                "default_version": draw(st.integers(1, len(versions))),
                "latest_version": len(versions),
                "versions": versions,
            }
        ssm = {}
        if draw(st.booleans()):
            ssm["web"] = {"latest": draw(pick), "latest_version": draw(st.sampled_from([*VERSIONS, None]))}
        asgs = []  # rollout records: what they name may be rolled back to
        for k in range(draw(st.integers(0, 2))):
            tags = {"phoenix:rollout:id": f"r{k}", "phoenix:rollout:previous": draw(st.sampled_from(list(images)) if images else pick)}
            if lts and draw(st.booleans()):
                lt_id = draw(st.sampled_from(sorted(lts)))
                by = draw(st.sampled_from([lt_id, lts[lt_id]["name"]]))
                tags["phoenix:rollout:previous-lt"] = f"{by}:{draw(st.sampled_from(sorted(lts[lt_id]['versions'])))}"
            asgs.append({"name": f"asg-{region}-{k}", "tags": tags})
        snaps.append(_snap(region, images, instances=instances, launch_templates=lts, ssm=ssm, asgs=asgs))
    return snaps, draw(st.integers(1, 4)), draw(st.integers(0, 30)), regions


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fleets(), st.data())
def test_nothing_in_use_is_ever_deprecated_or_deleted(fleet: Any, data: Any) -> None:
    snaps, keep, grace, regions = fleet
    act = data.draw(st.lists(st.sampled_from(regions), unique=True, min_size=1))
    plan = plan_retention(snaps, "web", keep_versions=keep, grace_days=grace, now=NOW, act_regions=act)
    in_use = set(images_in_use(snaps))
    acted = {r["image_id"] for r in plan["images"] if r["action"] in ("deprecate", "wait", "delete")}
    deleted = {r["image_id"] for r in plan["images"] if r["action"] == "delete"}
    assert not (acted & in_use)
    assert not (deleted & in_use)
    # what a rollout record names (its rollback target, directly or through a template version) is never acted on
    for s in snaps:
        by_name = {t["name"]: t for t in s["launch_templates"].values()}
        for g in s.get("asgs", []):
            named = {g["tags"]["phoenix:rollout:previous"]}
            if "phoenix:rollout:previous-lt" in g["tags"]:
                key, _, number = g["tags"]["phoenix:rollout:previous-lt"].rpartition(":")
                named.add((s["launch_templates"].get(key) or by_name[key])["versions"][number])
            assert not (acted & named), (g, acted & named)
    newest = set(plan["versions"][:keep])
    for r in plan["images"]:
        if r["action"] != "keep":
            assert r["region"] in act
        if r["action"] in ("deprecate", "wait", "delete"):
            assert r["version"] not in newest
            assert r["state"] in ("available", "disabled")
        if r["action"] == "delete":
            assert r["deprecated_at"] is not None
            assert NOW - dt.datetime.fromisoformat(r["deprecated_at"].replace("Z", "+00:00")) >= dt.timedelta(days=grace)
    # a version of the role in use anywhere is kept everywhere
    used_versions = {
        img["tags"].get("phoenix:version")
        for s in snaps
        for a, img in s["images"].items()
        if a in in_use and img["tags"].get("phoenix:role") == "web"
    }
    for r in plan["images"]:
        if r["version"] in used_versions:
            assert r["action"] in ("keep", "undeprecate")
    # every image of the role is planned exactly once, and nothing else
    mine = {a for s in snaps for a, img in s["images"].items() if img["tags"].get("phoenix:role") == "web"}
    assert sorted(r["image_id"] for r in plan["images"]) == sorted(mine)


def test_plan_basics_and_lines() -> None:
    images = {
        "ami-1": _img("web", "2026.11.01-1", deprecated_days=20),
        "ami-2": _img("web", "2026.11.08-1", deprecated_days=2),
        "ami-3": _img("web", "2026.11.15-1"),
        "ami-4": _img("web", "2026.11.22-1"),
        "ami-5": _img("web", None),
        "ami-6": _img("worker", "2026.11.01-1"),
        "ami-7": _img("web", "2026.10.01-1"),
    }
    snap = _snap("us-east-1", images, ssm={"web": {"latest": "ami-4", "latest_version": "2026.11.22-1"}})
    plan = plan_retention([snap], "web", keep_versions=1, grace_days=14, now=NOW)
    actions = {r["image_id"]: r["action"] for r in plan["images"]}
    assert actions == {"ami-1": "delete", "ami-2": "wait", "ami-3": "deprecate", "ami-4": "keep", "ami-5": "keep", "ami-7": "deprecate"}
    assert plan["counts"] == {"keep": 2, "undeprecate": 0, "deprecate": 2, "wait": 1, "delete": 1}
    lines = plan_lines(plan, dry_run=True)
    assert any(line.startswith("  would delete ami-1") and "snap-2026.11.01-1" in line for line in lines)
    assert any("ami-2" in line and "deletable in 12d 0h" in line for line in lines)
    with pytest.raises(ValueError, match="keep_versions.*Fix"):
        plan_retention([snap], "web", keep_versions=0, grace_days=14, now=NOW)


def test_unsupported_detection() -> None:
    class ResponseParserError(Exception):
        pass

    class ClientError(Exception):
        def __init__(self, code: str) -> None:
            self.response = {"Error": {"Code": code}}

    assert is_unsupported(ResponseParserError())
    assert is_unsupported(ClientError("InvalidAction"))
    assert not is_unsupported(ClientError("RequestLimitExceeded"))
    assert not is_unsupported(ClientError("UnauthorizedOperation"))


# ------------------------------------------------------------------------------------------ sandbox, adversarial


def _versions(n: int) -> list[str]:
    start = dt.date(2026, 9, 1)
    return [f"{start + dt.timedelta(days=7 * k):%Y.%m.%d}-1" for k in range(n)]


def _image_state(ec2: Any, ami: str) -> dict[str, Any] | None:
    images = ec2.describe_images(Owners=["self"], Filters=[{"Name": "image-id", "Values": [ami]}])["Images"]
    return images[0] if images else None


def _tags(image: dict[str, Any] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in (image or {}).get("Tags", [])}


def _op(**kwargs: Any) -> AmiRetentionOperator:
    kwargs.setdefault("grace_days", 14)
    return AmiRetentionOperator(task_id="retention", role="web", **kwargs)


@pytest.fixture
def adversarial(sandbox_clean: Any) -> dict[str, Any]:
    """Role web, 10 versions in us-east-1 (and one copy in eu-west-1); latest 2026.11.03-1 (v9)."""
    ec2, autoscaling, ssm = F.clients(sandbox_clean)
    eu_ec2 = sandbox_clean.client("ec2", region_name=EU)
    versions = _versions(10)
    amazon = F.amazon_image(ec2)
    builder = ec2.run_instances(ImageId=amazon, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    ami = {v: F.make_image(ec2, builder, "web", v) for v in versions}
    eu_amazon = F.amazon_image(eu_ec2)
    eu_builder = eu_ec2.run_instances(ImageId=eu_amazon, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    eu_v6 = F.make_image(eu_ec2, eu_builder, "web", versions[6])
    ec2.terminate_instances(InstanceIds=[builder])
    eu_ec2.terminate_instances(InstanceIds=[eu_builder])
    sandbox_clean.settle()
    F.set_pointer(ssm, "web", ami[versions[9]], versions[9])

    # v0: deprecated 30 days ago and unused -> goes. v1: deprecated 3 days ago -> waits.
    ec2.create_tags(Resources=[ami[versions[0]]], Tags=[{"Key": DEPRECATED_AT_TAG, "Value": iso(NOW - dt.timedelta(days=30))}])
    ec2.create_tags(
        Resources=[ami[versions[1]]],
        Tags=[{"Key": DEPRECATED_AT_TAG, "Value": iso(dt.datetime.now(dt.UTC) - dt.timedelta(days=3))}],
    )
    # v2: a stopped instance outside any ASG (deprecated long ago: must still stay)
    stopped = ec2.run_instances(ImageId=ami[versions[2]], MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    ec2.create_tags(Resources=[ami[versions[2]]], Tags=[{"Key": DEPRECATED_AT_TAG, "Value": iso(NOW - dt.timedelta(days=60))}])
    # v3: an LT version pinned by an ASG (the template's default and latest are newer)
    lt_id = F.lt(ec2, "web-lt", [ami[versions[3]], ami[versions[9]]], default=2)
    F.make_asg(autoscaling, "web-pinned", lt_id, "1", 1, "web")
    # v4: the $Default of a template no ASG uses
    F.lt(ec2, "spare-lt", [ami[versions[4]], ami[versions[9]]], default=1)
    # v6: used by an instance in the role's other region (only the eu copy is used; the us copy must stay too)
    eu_ec2.run_instances(ImageId=eu_v6, MinCount=1, MaxCount=1)
    # v5, v7: superseded and unused -> deprecated. v8, v9: the newest 2 (keep_versions=2)
    sandbox_clean.settle()
    ec2.stop_instances(InstanceIds=[stopped])
    sandbox_clean.settle()
    # v1 again: an instance launched from an old version outside any ASG, created last (the last page)
    lone = ec2.run_instances(ImageId=ami[versions[1]], MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    sandbox_clean.settle()
    in_use = {ami[versions[1]], ami[versions[2]], ami[versions[3]], ami[versions[4]], ami[versions[6]], eu_v6, ami[versions[9]]}
    return {"ec2": ec2, "eu_ec2": eu_ec2, "ssm": ssm, "versions": versions, "ami": ami, "eu_v6": eu_v6, "lone": lone, "in_use": in_use,
            "handle": sandbox_clean}


SMALL_PAGES = {"instances": 5, "asgs": 1, "lt_versions": 1, "images": 1, "parameters": 1}


def test_dry_run_prints_and_changes_nothing(adversarial: dict[str, Any], capsys: Any) -> None:
    ec2, ami, versions = adversarial["ec2"], adversarial["ami"], adversarial["versions"]
    before = {a: _tags(_image_state(ec2, a)) for a in ami.values()}
    result = run_task(_op(keep_versions=2, dry_run_only=True), make_context()).result
    log = capsys.readouterr().out  # task logs go through structlog to stdout
    assert result["dry_run"] is True and result["deleted"] == [] and result["deprecated"] == []
    assert {a: _tags(_image_state(ec2, a)) for a in ami.values()} == before
    assert f"would delete {ami[versions[0]]}" in log
    assert f"would deprecate {ami[versions[5]]}" in log
    assert "Dry run: nothing was changed" in log


@pytest.mark.parametrize("pages", [None, SMALL_PAGES], ids=["largest-pages", "one-item-pages"])
def test_never_deletes_an_ami_in_use(adversarial: dict[str, Any], capsys: Any, pages: Any) -> None:
    ec2, eu_ec2, ami, versions = adversarial["ec2"], adversarial["eu_ec2"], adversarial["ami"], adversarial["versions"]
    result = run_task(_op(keep_versions=2, page_sizes=pages), make_context()).result
    log = capsys.readouterr().out

    assert result["deleted"] == [ami[versions[0]]]
    assert _image_state(ec2, ami[versions[0]]) is None
    assert result["deleted_snapshots"]  # v0's snapshot went too
    for snap in result["deleted_snapshots"]:
        assert not ec2.describe_snapshots(Filters=[{"Name": "snapshot-id", "Values": [snap]}])["Snapshots"]
    assert sorted(result["deprecated"]) == sorted([ami[versions[5]], ami[versions[7]]])
    for v in (5, 7):
        assert DEPRECATED_AT_TAG in _tags(_image_state(ec2, ami[versions[v]]))
    for a in adversarial["in_use"] - {adversarial["eu_v6"]}:
        assert _image_state(ec2, a) is not None, a
    assert _image_state(eu_ec2, adversarial["eu_v6"]) is not None
    assert _image_state(ec2, ami[versions[6]]) is not None  # the us copy of a version used in eu
    assert DEPRECATED_AT_TAG not in _tags(_image_state(ec2, ami[versions[6]]))
    # in use but deprecated earlier: un-deprecated (v1 lone instance, v2 stopped instance)
    assert sorted(result["undeprecated"]) == sorted([ami[versions[1]], ami[versions[2]]])
    assert DEPRECATED_AT_TAG not in _tags(_image_state(ec2, ami[versions[2]]))
    assert "EnableImageDeprecation is not available at this endpoint" in log
    assert "DescribeImageReferences is not available at this endpoint" in log

    # A second run deletes nothing more: the deprecated ones wait for their grace period.
    again = run_task(_op(keep_versions=2, page_sizes=pages), make_context()).result
    assert again["deleted"] == [] and again["deprecated"] == []
    assert again["counts"]["wait"] == 2


def test_pointer_rolled_back_to_an_old_deprecated_version_is_kept(adversarial: dict[str, Any]) -> None:
    ec2, ssm, ami, versions = adversarial["ec2"], adversarial["ssm"], adversarial["ami"], adversarial["versions"]
    # v0 is deprecated 30 days ago (would be deleted); the pointer now rolls back to it
    F.set_pointer(ssm, "web", ami[versions[0]], versions[0])
    result = run_task(_op(keep_versions=2), make_context()).result
    assert ami[versions[0]] not in result["deleted"] and ami[versions[0]] in result["undeprecated"]
    assert _image_state(ec2, ami[versions[0]]) is not None
    assert DEPRECATED_AT_TAG not in _tags(_image_state(ec2, ami[versions[0]]))
    # everything at or after the rolled-back pointer's version counts as in flight: nothing newer is touched
    assert result["deprecated"] == [] and result["deleted"] == []


def test_an_ami_that_comes_into_use_before_deletion_is_kept(adversarial: dict[str, Any], monkeypatch: Any) -> None:
    ec2, ami, versions = adversarial["ec2"], adversarial["ami"], adversarial["versions"]
    op = _op(keep_versions=2)
    sweeps: list[int] = []
    real = op._sweep

    def sweep(regions: Any, prefix: str) -> Any:
        out = real(regions, prefix)
        if not sweeps:  # between the first sweep and the deletion, someone launches from the doomed AMI
            ec2.run_instances(ImageId=ami[versions[0]], MinCount=1, MaxCount=1)
        sweeps.append(1)
        return out

    monkeypatch.setattr(op, "_sweep", sweep)
    result = run_task(op, make_context()).result
    assert len(sweeps) == 2
    assert result["deleted"] == [] and result["kept_at_deletion"] == [ami[versions[0]]]
    assert _image_state(ec2, ami[versions[0]]) is not None


def test_an_unreadable_template_version_stops_retention(adversarial: dict[str, Any], capsys: Any) -> None:
    """web-pinned's version 1 (v3) cannot be read (DescribeLaunchTemplateVersions by template id refused): what it
    launches is unknown. The sweep says it is incomplete, and retention keeps everything."""
    ec2, ami = adversarial["ec2"], adversarial["ami"]
    adversarial["handle"].update_config(api_faults=[{
        "service": "ec2", "action": "DescribeLaunchTemplateVersions", "params": {"LaunchTemplateId": "lt-*"},
        "code": "UnauthorizedOperation", "message": "You are not authorized to perform this operation.",
    }])
    result = run_task(_op(keep_versions=2), make_context()).result
    assert result["deleted"] == [] and result["deprecated"] == []  # un-deprecating what is in use stays safe
    assert all(_image_state(ec2, a) is not None for a in ami.values())
    assert "the sweep was incomplete" in capsys.readouterr().out


def test_region_name_acts_only_there_but_judges_every_region(adversarial: dict[str, Any]) -> None:
    result = run_task(_op(keep_versions=2, region_name=EU), make_context()).result
    assert result["deleted"] == [] and result["deprecated"] == []
    with pytest.raises(ValueError, match="region_name.*Fix"):
        run_task(_op(region_name="ap-south-1"), make_context())


def test_template_fields() -> None:
    assert set(AmiRetentionOperator.template_fields) >= {
        "aws_conn_id",
        "region_name",
        "role",
        "keep_versions",
        "grace_days",
        "dry_run_only",
    }


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"keep_versions": "five"}, "keep_versions"),
        ({"keep_versions": "2.5"}, "keep_versions"),
        ({"keep_versions": True}, "keep_versions"),
        ({"grace_days": "two weeks"}, "grace_days"),
        ({"grace_days": "-3"}, "grace_days"),
        ({"grace_days": None}, "grace_days"),
    ],
)
def test_a_non_numeric_setting_fails_naming_the_field(aws_env: Any, kwargs: Any, field: str) -> None:
    """Rendered from the trigger form or a DAG author's typo: the error names the field and the fix, before any
    AWS call (nothing is swept, nothing changes)."""
    op = _op(**kwargs)
    calls: list[str] = []
    op._client = lambda service, region, optional_api=False: calls.append(service)  # type: ignore[assignment,method-assign]
    with pytest.raises(ValueError, match=rf"^{field}: .*Fix: ") as err:
        run_task(op, make_context())
    assert "invalid literal" not in str(err.value)
    assert calls == []


def _fail_template_lookups(op: AmiRetentionOperator, code: str) -> list[str]:
    """Make every per-template DescribeLaunchTemplateVersions (the by-id completion of the sweep) answer ``code``."""
    from botocore.awsrequest import AWSResponse

    failed: list[str] = []
    real = op._client

    class _Raw:
        def __init__(self, body: bytes) -> None:
            self.body = body

        def stream(self, **_: Any) -> Any:
            yield self.body

    def reply(request: Any = None, **_: Any) -> Any:
        body = request.body.decode() if isinstance(request.body, bytes) else str(request.body or "")
        if "LaunchTemplateId=" not in body and "LaunchTemplateName=" not in body:
            return None
        failed.append(body)
        xml = (f'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>{code}</Code>'
               "<Message>no</Message></Error></Errors><RequestID>t</RequestID></Response>").encode()
        return AWSResponse(request.url, 403, {}, _Raw(xml))

    def client(service: str, region: str, optional_api: bool = False) -> Any:
        c = real(service, region, optional_api)
        if service == "ec2":
            c.meta.events.register("before-send.ec2.DescribeLaunchTemplateVersions", reply, unique_id="fail-lt")
        return c

    op._client = client  # type: ignore[method-assign]
    return failed


def test_a_failed_template_lookup_makes_the_sweep_incomplete_and_deletes_nothing(adversarial: dict[str, Any], capsys: Any) -> None:
    """web-pinned pins web-lt version 1 (v3), which neither listing ($Default, $Latest) returns: only the per-template
    lookup sees it. v3 was deprecated long ago (before the group pinned it). When that lookup fails, v3 looks unused:
    retention must not delete it (nor v0, nor anything) in a region it cannot see completely, and must say why."""
    ec2, ami, versions = adversarial["ec2"], adversarial["ami"], adversarial["versions"]
    ec2.create_tags(Resources=[ami[versions[3]]], Tags=[{"Key": DEPRECATED_AT_TAG, "Value": iso(NOW - dt.timedelta(days=40))}])
    op = _op(keep_versions=" 2 ", grace_days="14")  # numbers as the trigger form renders them
    code = "UnauthorizedOperation"  # a throttle (retried by botocore first) takes the same path: test_inventory_collect
    failed = _fail_template_lookups(op, code)
    result = run_task(op, make_context()).result
    log = capsys.readouterr().out
    assert failed, "the per-template lookup was never made"
    assert result["deleted"] == [] and result["deprecated"] == []
    assert all(_image_state(ec2, a) is not None for a in ami.values())
    assert "the sweep was incomplete" in log and code in log
    assert result["incomplete"] and result["counts"]["deprecate"] == result["counts"]["wait"] == result["counts"]["delete"] == 0


# ------------------------------------------------------------------------------------------ rollout records


def _record_tags(target: str, previous: str | None, target_lt: str | None, previous_lt: str | None,
                 phase: str = "forward") -> dict[str, str]:
    """The tags a rollout writes on its ASG, made by the rollout record itself (the format is its to know)."""
    from phoenix_fleet.rollout import FleetState, Policy, RolloutRecord

    state = FleetState("web-rolling", 2, 1, 3, (), NOW)
    record = RolloutRecord.begin("fleet_rollout_web:manual__2026-11-25T10:00:00+00:00", state, Policy(),
                                 target_image=target, previous_image=previous, target_lt=target_lt, previous_lt=previous_lt,
                                 target_label="2026.11.03-1", previous_label="2026.10.06-1")
    if phase == "failed":
        record = record.halted(NOW, "halted: deadline passed")
    return record.to_tags()


def test_every_ami_and_template_version_a_rollout_record_names_is_found() -> None:
    """The record's own tags (every field that can name an AMI or a launch-template version filled in, in each phase)
    are read completely: any AMI-valued tag, and every ``*-lt`` tag, however the record grows."""
    from phoenix_fleet.inventory.collect import rollout_references

    for phase in ("forward", "failed"):
        tags = _record_tags("ami-0000000000000000a", "ami-0000000000000000b", "lt-0123456789abcdef0:7", "web-lt:6", phase)
        amis, refs = rollout_references(tags)
        assert sorted(a for _, a in amis) == ["ami-0000000000000000a", "ami-0000000000000000b"]
        assert sorted((t, n) for _, t, n in refs) == [("lt-0123456789abcdef0", "7"), ("web-lt", "6")]
        named = {k for k, v in tags.items() if v.startswith("ami-") or k.endswith("-lt")}
        assert named == {k for k, _ in amis} | {k for k, _, _ in refs}
    assert rollout_references({"phoenix:rollout:id": "x:12", "Name": "ami-0000000000000000c"}) == ([], [])


def test_a_rollout_record_keeps_its_rollback_target_in_the_plan() -> None:
    images = {
        "ami-0000000000000001": _img("web", "2026.10.06-1", deprecated_days=30),  # previous: named by the record
        "ami-0000000000000002": _img("web", "2026.10.13-1", deprecated_days=30),  # previous-lt's image only
        "ami-0000000000000003": _img("web", "2026.10.20-1", deprecated_days=30),  # nothing: goes
        "ami-0000000000000009": _img("web", "2026.11.22-1"),
    }
    lts = {"lt-0000000000000000a": {"name": "web-lt", "default_version": 9, "latest_version": 9,
                                    "versions": {"9": "ami-0000000000000009", "6": "ami-0000000000000002"}}}
    tags = _record_tags("ami-0000000000000009", "ami-0000000000000001", "lt-0000000000000000a:9", "web-lt:6", "failed")
    snap = _snap("us-east-1", images, launch_templates=lts, asgs=[{"name": "web-rolling", "tags": tags}],
                 ssm={"web": {"latest": "ami-0000000000000009", "latest_version": "2026.11.22-1"}})
    in_use = images_in_use([snap])
    assert "rollout record of ASG web-rolling (phoenix:rollout:previous) in us-east-1" in in_use["ami-0000000000000001"]
    assert any("v6 named by the rollout record of ASG web-rolling (phoenix:rollout:previous-lt)" in r
               for r in in_use["ami-0000000000000002"])
    plan = plan_retention([snap], "web", keep_versions=1, grace_days=14, now=NOW)
    actions = {r["image_id"]: r["action"] for r in plan["images"]}
    assert actions == {"ami-0000000000000001": "undeprecate", "ami-0000000000000002": "undeprecate",
                       "ami-0000000000000003": "delete", "ami-0000000000000009": "keep"}


def test_retention_never_deletes_a_rollout_records_rollback_target(adversarial: dict[str, Any]) -> None:
    """A rollout of web-rolling from v5 to v9 halted (phase failed, waiting for a human): its record names v5
    (``previous``) and web-rolling-lt version 1 (``previous-lt``, which launches v7; neither $Default nor $Latest, no
    ASG pins it). Both were deprecated long ago; both stay, with their snapshots, and are un-deprecated."""
    ec2, ami, versions = adversarial["ec2"], adversarial["ami"], adversarial["versions"]
    autoscaling = F.clients(adversarial["handle"])[1]
    lt_id = F.lt(ec2, "web-rolling-lt", [ami[versions[7]], ami[versions[9]]], default=2)
    F.make_asg(autoscaling, "web-rolling", lt_id, "$Default", 1, "web")
    tags = _record_tags(ami[versions[9]], ami[versions[5]], f"{lt_id}:2", f"{lt_id}:1", "failed")
    autoscaling.create_or_update_tags(Tags=[
        {"ResourceId": "web-rolling", "ResourceType": "auto-scaling-group", "Key": k, "Value": v, "PropagateAtLaunch": False}
        for k, v in tags.items()
    ])
    long_ago = iso(NOW - dt.timedelta(days=40))
    ec2.create_tags(Resources=[ami[versions[5]], ami[versions[7]]], Tags=[{"Key": DEPRECATED_AT_TAG, "Value": long_ago}])
    adversarial["handle"].settle()
    result = run_task(_op(keep_versions=2), make_context()).result
    assert result["deleted"] == [ami[versions[0]]]  # the one that is really unused still goes
    for v in (5, 7):
        image = _image_state(ec2, ami[versions[v]])
        assert image is not None and DEPRECATED_AT_TAG not in _tags(image), v
        snaps = [b["Ebs"]["SnapshotId"] for b in image["BlockDeviceMappings"] if "Ebs" in b]
        assert snaps and not set(snaps) & set(result["deleted_snapshots"])
    assert sorted(result["undeprecated"]) == sorted([ami[versions[1]], ami[versions[2]], ami[versions[5]], ami[versions[7]]])
