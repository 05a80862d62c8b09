"""The first task of a rollout: validate the trigger, resolve the target version and the ASGs.

Runs on a worker. A bad trigger conf (wrong types, an unknown ASG, a negative batch, a version that
does not exist) raises here, before anything changes, with a message naming ``params.<field>``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from phoenix_fleet.config import FleetConfig, RolloutPolicy

POLICY_PARAMS = ("strategy", "batch_size", "min_healthy_percent")
#: the trigger form's fields (``rollout_dag.rollout_params``); any other conf key fails the plan
FIELDS = ("target_version", "asgs", *POLICY_PARAMS, "require_approval", "dry_run")


class RolloutParamError(ValueError):
    """A trigger value is invalid; the message names ``params.<field>`` and the fix."""


def policy_overrides(params: Mapping[str, Any], base: RolloutPolicy) -> dict[str, Any]:
    """The policy keys the trigger form overrides, validated against the full RolloutPolicy model."""
    from pydantic import ValidationError

    from phoenix_fleet.form_params import shown

    overrides: dict[str, Any] = {}
    problems: list[str] = []
    for key in POLICY_PARAMS:
        value = params.get(key)
        if value in (None, ""):
            continue
        if key in ("batch_size", "min_healthy_percent"):
            if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).lstrip("-").isdigit():
                problems.append(f"params.{key}: {shown(value)} is not a whole number. Fix: e.g. 2")
                continue
            value = int(value)
        overrides[key] = value
    if "batch_size" in overrides:
        overrides["batch_percent"] = None
    if not problems:
        try:
            RolloutPolicy.model_validate({**base.model_dump(), **overrides})
        except ValidationError as e:
            for err in e.errors():
                field = ".".join(str(p) for p in err["loc"]) or "policy"
                msg = str(err["msg"]).removeprefix("Value error, ")
                problems.append(f"params.{field}: {msg}")
    if problems:
        raise RolloutParamError("invalid rollout parameters:\n  " + "\n  ".join(problems))
    return overrides


def approval_required(environment_requires: bool, asked: Any) -> bool:
    """The form can ask for approval (``require_approval`` on); it cannot waive an environment's requirement."""
    return bool(environment_requires) or asked is True


def version_from_events(events: Any, asset_uri: str) -> str | None:
    """The version a publish announced, from ``triggering_asset_events`` (newest event wins)."""
    from phoenix_fleet.asset_events import extras

    versions = [str(extra["version"]) for extra in extras(events, asset_uri) if extra.get("version")]
    return versions[-1] if versions else None


def plan_rollout(
    fleet: FleetConfig,
    role_name: str,
    params: Mapping[str, Any],
    hook: Any,
    event_version: str | None = None,
    regions: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Resolve version → AMI per region and the ASGs to roll; raise RolloutParamError on bad input."""
    from phoenix_fleet.form_params import shown, unknown_fields
    from phoenix_fleet.release.versions import Version, is_version

    unknown = unknown_fields(params, FIELDS)
    if unknown:
        raise RolloutParamError("invalid rollout parameters:\n  " + "\n  ".join(unknown))
    role = fleet.role(role_name)
    overrides = policy_overrides(params, role.rollout)
    wanted = params.get("target_version") or "latest"
    if not isinstance(wanted, str) or (wanted != "latest" and not is_version(wanted)):
        raise RolloutParamError(
            f"params.target_version: {shown(wanted)} is not 'latest' or a release version. "
            "Fix: 'latest' or YYYY.MM.DD-N, e.g. 2026.11.30-1"
        )
    if wanted == "latest" and event_version:
        wanted = event_version
    pointer = fleet.latest_parameter(role_name)
    version_param = fleet.latest_version_parameter(role_name)
    amis: dict[str, str] = {}
    version = None
    for region in regions or role.regions:
        if wanted == "latest":
            ami = (hook.get_parameter(pointer, region=region) or {}).get("Value")
            version = (hook.get_parameter(version_param, region=region) or {}).get("Value") or version
        else:
            label = Version.parse(wanted, field="params.target_version").label
            ami = None
            for entry in hook.parameter_history(pointer, region=region):
                if label in (entry.get("Labels") or []):
                    ami = entry["Value"]
            version = wanted
        if not ami:
            raise RolloutParamError(
                f"params.target_version: {wanted} has no published AMI for {role_name} in {region} "
                f"({pointer}). Fix: publish it first (ami_release_{role_name}) or choose a published version"
            )
        amis[region] = ami

    asked = params.get("asgs") or []
    if isinstance(asked, str):
        asked = [a.strip() for a in asked.split(",") if a.strip()]
    if not isinstance(asked, list):
        raise RolloutParamError(f"params.asgs: {shown(asked)} is not a list. Fix: a list of ASG names, or empty for all")
    asked = [str(a).strip() for a in asked if str(a or "").strip()]  # the form's blank lines are no names
    targets: list[dict[str, Any]] = []
    found_names: set[str] = set()
    for region in amis:
        for g in hook.find_asgs(tags=role.asgs.tags, names=role.asgs.names, region=region):
            name = g["AutoScalingGroupName"]
            found_names.add(name)
            if asked and name not in asked:
                continue
            targets.append({"asg_name": name, "region_name": region, "target_image_id": amis[region]})
    unknown = sorted(set(asked) - found_names)
    if unknown:
        raise RolloutParamError(
            f"params.asgs: {shown(unknown, 200)} are not ASGs of role {role_name}. "
            f"Fix: choose from {sorted(found_names)}"
        )
    if not targets:
        raise RolloutParamError(
            f"params.asgs: role {role_name} has no ASG matching {role.asgs.tags} in {list(amis)}. "
            "Fix: check roles.<role>.asgs in include/fleet.yaml"
        )
    approval = approval_required(fleet.environment(role_name).require_approval, params.get("require_approval"))
    return {
        "role": role_name,
        "version": version,
        "amis": amis,
        "targets": targets,
        "canary": targets[0],
        # flat keys: DAG wiring reads them as XComArgs (nested keys are not resolvable there)
        "canary_asg": targets[0]["asg_name"],
        "canary_region": targets[0]["region_name"],
        "canary_ami": targets[0]["target_image_id"],
        "home_ami": amis.get(role.home_region) or targets[0]["target_image_id"],
        "policy": overrides,
        "require_approval": bool(approval),
        "dry_run": bool(params.get("dry_run") or False),
        **published_notes(fleet, role_name, str(version), hook),
    }


def published_notes(fleet: FleetConfig, role_name: str, version: str, hook: Any) -> dict[str, Any]:
    """``{"operator_notes", "release_notes_uri"}`` of the version, from its release notes in the artifacts bucket
    (what publish wrote; the same for a rollout the asset event started and one a person triggered). The operator's
    notes are clipped as in the asset event. A version without release notes (the seed's) has none; one that cannot
    be read is said in ``release_notes_error`` and never stops the rollout."""
    import json

    from phoenix_fleet.release.release_notes import clip_notes, release_notes_keys

    md_key, json_key = release_notes_keys(role_name, version)
    bucket = fleet.artifacts_bucket
    out: dict[str, Any] = {"operator_notes": "", "release_notes_uri": None}
    try:
        text = hook.read_s3_text(bucket, json_key, region=fleet.role(role_name).home_region)
        if text is None:
            return out
        stored = json.loads(text)
    except Exception as e:  # the rollout goes on without them; the summary says why
        out["release_notes_error"] = f"s3://{bucket}/{json_key}: {e}"[:500]
        return out
    out["release_notes_uri"] = f"s3://{bucket}/{md_key}"
    notes = stored.get("operator_notes") if isinstance(stored, dict) else None
    out["operator_notes"] = clip_notes(notes if isinstance(notes, str) else "")
    return out


def describe_rollout(plan: Mapping[str, Any]) -> str:
    lines = [
        f"{'DRY RUN, nothing will change. ' if plan['dry_run'] else ''}rollout of {plan['role']} to "
        f"{plan['version']} ({', '.join(f'{r}: {a}' for r, a in plan['amis'].items())})",
        f"  ASGs: {', '.join(t['asg_name'] + '@' + t['region_name'] for t in plan['targets'])}",
        f"  canary: first batch of {plan['canary']['asg_name']}",
        f"  approval: {'required' if plan['require_approval'] else 'not required'}",
        f"  policy overrides: {plan['policy'] or 'none (fleet config)'}",
    ]
    if plan.get("release_notes_uri"):
        lines.append(f"  release notes: {plan['release_notes_uri']}")
    if plan.get("operator_notes"):
        lines.append(f"  operator's notes: {plan['operator_notes']}")
    if plan.get("release_notes_error"):
        lines.append(f"  release notes unreadable: {plan['release_notes_error']}")
    return "\n".join(lines)
