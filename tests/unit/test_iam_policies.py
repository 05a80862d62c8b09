"""include/iam/: the policies per principal, linted with parliament (its own action database, offline), and held to the
rules of include/iam/README.md: one Sid per purpose, destructive actions conditioned on the project's tags,
iam:PassRole only for the canary's role, every wildcard and every condition reviewed in the README, names that agree
with include/fleet.yaml. The run-time half (every DAG call authorized against these files) is the IAM-enforced e2e
tests (tests/helpers/iam_enforced.py)."""

from __future__ import annotations

import json
import re
import warnings
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
IAM = REPO / "include" / "iam"
README = IAM / "README.md"
POLICIES = ("worker.json", "terraform.json", "packer.json", "canary.json")
DESTRUCTIVE = {
    "ec2:TerminateInstances",
    "autoscaling:TerminateInstanceInAutoScalingGroup",
    "ec2:DeregisterImage",
    "ec2:DeleteSnapshot",
    "autoscaling:UpdateAutoScalingGroup",
    "ec2:ModifyImageAttribute",
}
PROJECT_TAG_KEY = re.compile(r"^(aws|ec2|autoscaling):ResourceTag/phoenix:")


def _statements(name: str) -> list[dict[str, Any]]:
    doc = json.loads((IAM / name).read_text())
    assert doc["Version"] == "2012-10-17", name
    return list(doc["Statement"])


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


@cache
def _parliament() -> Any:
    with warnings.catch_warnings():  # parliament imports pkg_resources (setuptools<81 in the dev group)
        warnings.simplefilter("ignore")
        import parliament
    return parliament


def _readme_rows(section: str) -> set[tuple[str, ...]]:
    """The first cells (`file`, `Sid`, ...) of the table rows under ``## <section>`` of include/iam/README.md."""
    text = README.read_text()
    match = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"include/iam/README.md has no section '## {section}'"
    rows = set()
    for line in match.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) >= 2 and cells[0].startswith("`"):
            rows.add(tuple(c.strip("`") for c in cells[:3]))
    return rows


def _sid_at(name: str, line: int) -> str:
    """The Sid of the statement holding ``line`` (parliament points at the statement's opening brace, or at the
    offending action): the last statement that opens at or before it (statements open at 4 spaces: ``    {``)."""
    lines = (IAM / name).read_text().splitlines()
    starts = [n for n, text in enumerate(lines, start=1) if text == "    {" and n <= line]
    assert starts, f"no statement at line {line} of {name}"
    for text in lines[starts[-1]:]:
        found = re.search(r'"Sid": "([^"]+)"', text)
        if found:
            return found.group(1)
    raise AssertionError(f"no Sid in the statement at line {starts[-1]} of {name}")


def test_one_policy_per_principal_one_sid_per_purpose() -> None:
    assert sorted(p.name for p in IAM.glob("*.json")) == sorted([*POLICIES, "canary-trust.json"])
    for name in POLICIES:
        sids = [s.get("Sid") for s in _statements(name)]
        assert all(sids) and len(set(sids)) == len(sids), f"{name}: every statement needs its own Sid: {sids}"
        for s in _statements(name):
            assert s["Effect"] == "Allow" and "NotAction" not in s and "NotResource" not in s, (name, s["Sid"])
            for action in _as_list(s["Action"]):
                assert "*" not in action, f"{name} {s['Sid']}: no action wildcards ({action})"


@pytest.mark.parametrize("name", [*POLICIES, "canary-trust.json"])
def test_parliament_finds_nothing_but_the_reviewed_findings(name: str) -> None:
    """No unknown action, no malformed condition, no finding at all except the rows of the README's reviewed table."""
    parliament = _parliament()
    policy = parliament.analyze_policy_string((IAM / name).read_text(), include_community_auditors=True)
    if name == "canary-trust.json":  # a trust policy: only well-formedness applies (no Resource by design)
        assert {f.issue for f in policy.findings} <= {"MALFORMED"}, [(f.issue, f.detail) for f in policy.findings]
        return
    found = {(name, _sid_at(name, f.location["line"]), f.issue) for f in policy.findings}
    accepted = {row for row in _readme_rows("Linter findings we accept") if row[0] == name}
    assert found == accepted, (
        f"{name}: parliament's findings differ from the README's reviewed table.\n  new: {sorted(found - accepted)}"
        f"\n  stale rows: {sorted(accepted - found)}"
    )


def test_the_accepted_unknown_actions_are_really_missing_from_parliaments_database() -> None:
    """An UNKNOWN_ACTION row is accepted only while parliament's database lacks the action (a real AWS action newer
    than the database); once parliament learns it, the row must go."""
    parliament = _parliament()
    for name, sid, issue in _readme_rows("Linter findings we accept"):
        if issue != "UNKNOWN_ACTION":
            continue
        statement = next(s for s in _statements(name) if s["Sid"] == sid)
        unknown = []
        for action in _as_list(statement["Action"]):
            prefix, _, verb = action.partition(":")
            service = next(s for s in parliament.iam_definition if s["prefix"] == prefix)
            if not any(p["privilege"] == verb for p in service["privileges"]):
                unknown.append(action)
        assert unknown, f"{name} {sid}: parliament knows every action now; drop the README row"


def test_destructive_actions_are_conditioned_on_the_projects_tags() -> None:
    for name in POLICIES:
        for s in _statements(name):
            actions = DESTRUCTIVE & set(_as_list(s["Action"]))
            if not actions:
                continue
            keys = {k for cond in s.get("Condition", {}).values() for k in cond}
            if any(PROJECT_TAG_KEY.match(k) for k in keys):
                continue
            # the one exception: Packer sets the new image's IMDS attribute before it tags the image, and may set
            # nothing else (no launch permission, no public image)
            assert (name, s["Sid"], actions) == ("packer.json", "SetImageImdsSupport", {"ec2:ModifyImageAttribute"}), (
                f"{name} {s['Sid']}: {sorted(actions)} without a condition on the project's resource tags"
            )
            assert s["Condition"] == {"StringEquals": {"ec2:Attribute": "imdsSupport"}}


def test_pass_role_only_for_the_canarys_role() -> None:
    config = yaml.safe_load((REPO / "include" / "fleet.yaml").read_text())
    profiles = {r["image"]["instance_profile"] for r in config["roles"].values() if r["image"].get("instance_profile")}
    passing = [(name, s) for name in POLICIES for s in _statements(name) if "iam:PassRole" in _as_list(s["Action"])]
    assert [(name, s["Sid"]) for name, s in passing] == [("worker.json", "PassCanaryRole")]
    statement = passing[0][1]
    assert _as_list(statement["Action"]) == ["iam:PassRole"]
    assert _as_list(statement["Resource"]) == [f"arn:aws:iam::*:role/{p}" for p in sorted(profiles)]
    assert statement["Condition"] == {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}


def _resource_wildcard(arn: str) -> bool:
    """A wildcard beyond the region and account fields: ``*`` alone, or in the resource part of the ARN."""
    return arn == "*" or "*" in ":".join(arn.split(":")[5:])


def test_every_wildcard_is_justified_in_the_readme() -> None:
    wild = {
        (name, s["Sid"])
        for name in POLICIES
        for s in _statements(name)
        if any(_resource_wildcard(r) for r in _as_list(s.get("Resource", [])))
    }
    rows = {row[:2] for row in _readme_rows("Wildcards, justified")}
    assert wild == rows, f"README wildcard table differs.\n  unjustified: {sorted(wild - rows)}\n  stale: {sorted(rows - wild)}"


def test_every_condition_is_in_the_reviewed_table_of_what_moto_does_not_evaluate() -> None:
    conditioned = {(name, s["Sid"]) for name in POLICIES for s in _statements(name) if s.get("Condition")}
    rows = {row[:2] for row in _readme_rows("Conditions moto does not evaluate (reviewed)")}
    assert conditioned == rows, (
        f"README conditions table differs.\n  missing: {sorted(conditioned - rows)}\n  stale: {sorted(rows - conditioned)}"
    )


def test_the_names_in_the_policies_are_the_fleet_configs() -> None:
    """artifacts_bucket, ssm_prefix (pointers and version claims) and the canary's role, as include/fleet.yaml says."""
    config = yaml.safe_load((REPO / "include" / "fleet.yaml").read_text())
    worker = {s["Sid"]: s for s in _statements("worker.json")}
    bucket = config["artifacts_bucket"]
    assert _as_list(worker["ArtifactsReadWrite"]["Resource"]) == [f"arn:aws:s3:::{bucket}/*"]
    assert _as_list(worker["ArtifactsList"]["Resource"]) == [f"arn:aws:s3:::{bucket}"]
    prefix = config["ssm_prefix"].strip("/")
    assert set(_as_list(worker["ImagePointersAndVersionClaims"]["Resource"])) == {
        f"arn:aws:ssm:*:*:parameter/{prefix}", f"arn:aws:ssm:*:*:parameter/{prefix}/*",
        f"arn:aws:ssm:*:*:parameter/{prefix}-claims/*",
    }
