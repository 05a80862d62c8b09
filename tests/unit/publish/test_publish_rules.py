"""Pure publish rules: publishable images, version resolution, immutability, previous version, bounded extra."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from phoenix_fleet.operators.publish_operators import bound_extra, image_asset
from phoenix_fleet.release.publish_rules import (
    Claim,
    PublishRefusedError,
    VersionConflictError,
    check_not_backwards,
    check_publishable,
    copy_client_token,
    image_claims,
    parameter_claims,
    parse_bool,
    previous_version,
    raise_on_conflicts,
    refuse_unless_publishable,
    resolve_version,
)
from phoenix_fleet.release.versions import Version, VersionError

ACCOUNT = "123456789012"
DAY = dt.date(2026, 11, 30)


def image(ami="ami-1", owner=ACCOUNT, state="available", **tags):
    return {
        "ImageId": ami,
        "OwnerId": owner,
        "State": state,
        "Tags": [{"Key": k.replace("_", ":", 1), "Value": v} for k, v in tags.items()],
    }


def test_a_verified_own_available_image_is_publishable():
    assert check_publishable(image(phoenix_verified="true", phoenix_role="web"), ACCOUNT, "web") == []
    # an untagged role is fine (publish tags it)
    assert check_publishable(image(phoenix_verified="true"), ACCOUNT, "web") == []


def test_every_problem_is_named():
    problems = check_publishable(
        image(owner="999999999999", state="pending", phoenix_verified="false", phoenix_role="worker"), ACCOUNT, "web"
    )
    text = " | ".join(problems)
    assert len(problems) == 4
    assert "owned by '999999999999', not by this account (123456789012)" in text
    assert "is not verified (phoenix:verified='false')" in text
    assert "image of role 'worker'" in text
    assert "is 'pending', not 'available'" in text
    assert all("Fix:" in p for p in problems)
    with pytest.raises(PublishRefusedError, match="refusing to publish"):
        refuse_unless_publishable(image(phoenix_verified="TRUE"), ACCOUNT, "web")  # exactly "true"


def test_verified_reason_is_quoted():
    problems = check_publishable(
        image(phoenix_verified="false", **{"phoenix_verified-reason": "3 tests failed"}), ACCOUNT, "web"
    )
    assert "reason: 3 tests failed" in problems[0]


def test_resolve_version_order():
    existing = ["2026.11.30-1", "2026.11.30-4", "2026.11.29-9", "garbage"]
    assert resolve_version("2026.12.01-2", "2026.11.30-1", existing, DAY).source == "params"
    assert str(resolve_version(None, "2026.11.30-7", existing, DAY).version) == "2026.11.30-7"
    assert resolve_version("", "2026.11.30-7", existing, DAY).source == "image tag"
    assert resolve_version("None", "not-a-version", existing, DAY).source == "next free"
    assert str(resolve_version(None, None, existing, DAY).version) == "2026.11.30-5"
    assert str(resolve_version(None, None, [], DAY).version) == "2026.11.30-1"
    with pytest.raises(VersionError, match=r"params.version: '2026-11-30' is not a release version. Fix: use YYYY.MM.DD-N"):
        resolve_version("2026-11-30", None, [], DAY)


@given(st.lists(st.integers(min_value=1, max_value=50), max_size=20))
def test_next_free_version_never_repeats(ns):
    existing = [f"2026.11.30-{n}" for n in ns]
    got = resolve_version(None, None, existing, DAY).version
    assert str(got) not in existing and got.date == DAY
    assert all(got > Version.parse(v) for v in existing)


def test_conflicts_name_the_other_ami():
    hist = [
        {"Value": "ami-a", "Version": 1, "Labels": ["v2026.11.30-1"]},
        {"Value": "ami-b", "Version": 2, "Labels": ["v2026.11.30-2"]},
    ]
    claims = parameter_claims(hist, "v2026.11.30-2", "/phoenix/images/web/latest")
    assert claims == [Claim("ami-b", "SSM /phoenix/images/web/latest version 2 (label v2026.11.30-2)", True)]
    raise_on_conflicts("2026.11.30-2", "ami-b", claims)  # the same AMI: a re-publish
    with pytest.raises(VersionConflictError, match=r"2026.11.30-2 is already taken by another AMI \(SSM .*version 2"):
        raise_on_conflicts("2026.11.30-2", "ami-c", claims)


def test_image_claims_ignore_copies_unverified_and_failed_images():
    v = "2026.11.30-2"
    images = [
        image("ami-self", phoenix_version=v, phoenix_verified="true"),
        image("ami-copy", phoenix_version=v, phoenix_verified="true", **{"phoenix_copy-of": "ami-self"}),
        image("ami-unverified", phoenix_version=v, phoenix_verified="false"),
        image("ami-failed", state="failed", phoenix_version=v, phoenix_verified="true"),
        image("ami-other-version", phoenix_version="2026.11.30-1", phoenix_verified="true"),
        image("ami-rival", phoenix_version=v, phoenix_verified="true"),
        image("ami-published", phoenix_version=v, **{"phoenix_published-at": "2026-11-30T03:00:00Z"}),
    ]
    claims = image_claims(images, v, "ami-self")
    assert [(c.ami_id, c.published) for c in claims] == [("ami-rival", False), ("ami-published", True)]


def test_previous_version_and_backwards():
    published = ["2026.11.16-1", "2026.11.23-1", "2026.11.23-2", "junk"]
    assert previous_version(published, Version.parse("2026.11.30-1")) == "2026.11.23-2"
    assert previous_version(published, Version.parse("2026.11.23-2")) == "2026.11.23-1"  # a re-publish
    assert previous_version([], Version.parse("2026.11.30-1")) is None
    check_not_backwards("2026.11.23-2", Version.parse("2026.11.23-2"))  # same: fine
    check_not_backwards(None, Version.parse("2020.01.01-1"))
    with pytest.raises(VersionConflictError, match="backwards"):
        check_not_backwards("2026.11.23-2", Version.parse("2026.11.23-1"))


def test_a_copy_token_repeats_for_a_lost_answer_and_changes_after_a_failed_copy():
    first = copy_client_token("ami-0123456789abcdef0", "eu-west-1")
    assert first == "phoenix-ami-0123456789abcdef0-eu-west-1"
    assert copy_client_token("ami-0123456789abcdef0", "eu-west-1") == first  # a retry after a lost answer
    after = copy_client_token("ami-0123456789abcdef0", "eu-west-1", ["ami-0fedcba9876543210"])
    assert after != first and after.endswith("-0fedcba9876543210")  # names the failed copy
    again = copy_client_token("ami-0123456789abcdef0", "eu-west-1", ["ami-0aaaaaaaaaaaaaaaa"])
    assert again not in (first, after)  # the copy after that one failed too
    both = copy_client_token("ami-0123456789abcdef0", "eu-west-1", ["ami-0aaaaaaaaaaaaaaaa", "ami-0fedcba9876543210"])
    assert both not in (first, after, again)
    for region in ("ap-southeast-5", "us-gov-west-1", "x" * 40):
        for failed in ([], ["ami-0fedcba9876543210"], ["ami-1", "ami-2"]):
            assert len(copy_client_token("ami-0123456789abcdef0", region, failed)) <= 64


def test_parse_bool():
    assert parse_bool("True", "x") is True and parse_bool("false", "x") is False and parse_bool(None, "x") is False
    with pytest.raises(ValueError, match="x: 'maybe' is not a boolean"):
        parse_bool("maybe", "x")


def test_asset_uri_costs_no_provider_import_at_parse_time():
    """The image asset is built in DAG files at parse time: its URI must not make Airflow load provider modules.

    A plain ``phoenix://`` URI is accepted as is, but Airflow then looks for a URI normalizer among every provider's
    asset handlers and imports 100+ Amazon provider modules; an ``x-`` scheme skips that lookup.
    """
    import json
    import subprocess
    import sys

    code = (
        "import sys, json\n"
        "from airflow.sdk import Asset\n"
        "from phoenix_fleet.operators.publish_operators import image_asset\n"
        "before = set(sys.modules)\n"
        "out = {}\n"
        "for label, make in (('ours', lambda: image_asset('web')), ('plain', lambda: Asset(name='n', uri='phoenix://images/web'))):\n"
        "    start = set(sys.modules)\n"
        "    a = make()\n"
        "    out[label] = [a.uri, sorted(m for m in set(sys.modules) - start if m.startswith(('airflow.providers.amazon', 'boto')))]\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["ours"] == ["x-phoenix://images/web", []]
    assert out["plain"][0] == "phoenix://images/web"  # accepted as is ...
    assert len(out["plain"][1]) > 50  # ... at the price of the Amazon provider's asset handlers (Airflow 3.3.2)
    asset = image_asset("web")
    assert asset.name == "phoenix_image_web"


def test_bound_extra_keeps_the_event_small():
    rows = [{"name": f"pkg-{i:04d}", "old": "1.0-1", "new": "1.0-2+deb12u1" * 5} for i in range(10)]
    extra = {
        "version": "2026.11.30-1",
        "release_notes": {"counts": {"upgraded": 900}, "upgraded": rows, "upgraded_truncated": 890},
    }
    small = bound_extra(extra, limit=1000)
    assert len(json.dumps(small)) <= 1000
    assert small["version"] == "2026.11.30-1" and small["release_notes"]["counts"] == {"upgraded": 900}
    assert bound_extra(extra) == extra  # fits: unchanged


def test_copy_trigger_round_trips_through_serialize():
    from phoenix_fleet.triggers.publish_triggers import CopiedImageAvailableTrigger

    copy = {"region": "eu-west-1", "ami_id": "ami-2", "source_ami_id": "ami-1", "source_region": "us-east-1", "copied": True}
    trigger = CopiedImageAvailableTrigger(
        image_id="ami-2", copy=copy, waiter_delay=5, waiter_max_attempts=3, aws_conn_id="aws_x", region_name="eu-west-1"
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "phoenix_fleet.triggers.publish_triggers.CopiedImageAvailableTrigger"
    assert kwargs == {
        "waiter_delay": 5,
        "waiter_max_attempts": 3,
        "aws_conn_id": "aws_x",
        "image_id": "ami-2",
        "copy": copy,
        "region_name": "eu-west-1",
    }
    rebuilt = CopiedImageAvailableTrigger(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert rebuilt.waiter_args == {"ImageIds": ["ami-2"]} and rebuilt.return_value == copy
