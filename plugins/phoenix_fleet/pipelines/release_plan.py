"""The first task of a release: validate the trigger form and decide what this run will do.

Runs on a worker (it reads AWS); everything it decides is returned as XCom, so later tasks and the
UI show the same plan. Bad input raises before anything changes, naming the field and the fix.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from phoenix_fleet.config import FleetConfig, Role

_AMI_RE = re.compile(r"^ami-[0-9a-f]{8,17}$")
#: the trigger form's fields (``release_dag.release_params``); any other conf key fails the plan
FIELDS = ("version", "skip_bake", "ami_id", "base_ami_name", "base_ami_owners", "regions", "release_notes", "dry_run")
#: what Packer's source_ami_filter asks for besides name and owners (include/packer/phoenix.pkr.hcl)
#: (root-device-type is left to Packer: moto reports CreateImage AMIs as "standard", see sandbox/packer_double.py)
BASE_AMI_FILTERS = {"architecture": "x86_64", "virtualization-type": "hvm", "state": "available"}


class ReleaseParamError(ValueError):
    """A trigger-form value is invalid; the message names ``params.<field>`` and the fix."""


def _str(params: Mapping[str, Any], key: str) -> str:
    value = params.get(key)
    return "" if value is None else str(value).strip()


def _lines(params: Mapping[str, Any], key: str) -> list[str]:
    """A list field: a list (the form's lines; blank ones dropped) or a comma-separated string (the REST API)."""
    value = params.get(key) or []
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list | tuple):
        return [str(value)]
    return [str(v).strip() for v in value if str(v if v is not None else "").strip()]


def validate_release_params(params: Mapping[str, Any], role: Role, role_name: str) -> dict[str, Any]:
    """The pure part: fields, types, formats and subsets. Returns the normalised params."""
    from phoenix_fleet.form_params import AMI_NAME_PATTERN, NOTES_MAX, shown, unknown_fields
    from phoenix_fleet.release.versions import Version

    problems: list[str] = unknown_fields(params, FIELDS)
    version = _str(params, "version")
    if len(version) > 32:
        problems.append(f"params.version: {shown(version)} is not a release version. Fix: use YYYY.MM.DD-N")
    elif version:
        try:
            Version.parse(version, field="params.version")
        except ValueError as e:
            problems.append(str(e))
    skip_bake = bool(params.get("skip_bake") or False)
    ami_id = _str(params, "ami_id")
    if skip_bake and not ami_id:
        problems.append("params.ami_id: required when skip_bake is true. Fix: give the existing AMI id (ami-...)")
    if ami_id and not _AMI_RE.match(ami_id):
        problems.append(f"params.ami_id: {shown(ami_id)} is not an AMI id. Fix: use ami- followed by 8-17 hex digits")
    if ami_id and not skip_bake:
        problems.append("params.ami_id: given without skip_bake. Fix: set skip_bake true to release an existing AMI")
    base_name = _str(params, "base_ami_name")
    owners = _lines(params, "base_ami_owners")
    if base_name and not re.fullmatch(AMI_NAME_PATTERN, base_name):
        problems.append(
            f"params.base_ami_name: {shown(base_name)} is not an AMI name pattern. Fix: 3-128 characters: letters, "
            "digits, ( ) [ ] space . / - ' @ _ and the wildcard *"
        )
    if base_name and not owners:
        problems.append(
            "params.base_ami_owners: required with base_ami_name (an AMI name alone can be squatted). "
            "Fix: give the owner account ids, e.g. [\"136693071363\"] or [\"self\"]"
        )
    if owners and not base_name:
        problems.append("params.base_ami_name: required with base_ami_owners. Fix: give the AMI name pattern")
    for o in owners:
        if not (re.fullmatch(r"\d{12}", str(o)) or o in ("self", "amazon")):
            problems.append(f"params.base_ami_owners: {shown(o)} is not an account id. Fix: 12 digits, 'self' or 'amazon'")
    regions = _lines(params, "regions")
    unknown = [r for r in regions if r not in role.regions]
    if unknown:
        problems.append(
            f"params.regions: {shown(unknown, 200)} are not regions of role {role_name}. "
            f"Fix: choose a subset of {role.regions} (or leave empty for all)"
        )
    if regions and role.home_region not in regions:
        problems.append(
            f"params.regions: must include the home region {role.home_region} (the image is baked there). "
            "Fix: add it"
        )
    notes = _str(params, "release_notes")
    if len(notes) > NOTES_MAX:
        problems.append(
            f"params.release_notes: {len(notes)} characters, more than the {NOTES_MAX} allowed. Fix: shorten them"
        )
    if re.search(r"\{\{|\{%|\{#", notes):
        problems.append("params.release_notes: contains a Jinja delimiter ({{, {% or {#). Fix: remove it")
    if problems:
        raise ReleaseParamError("invalid release parameters:\n  " + "\n  ".join(problems))
    return {
        "version": version or None,
        "skip_bake": skip_bake,
        "ami_id": ami_id or None,
        "base_ami_name": base_name or None,
        "base_ami_owners": list(owners),
        "regions": list(regions) or list(role.regions),
        "dry_run": bool(params.get("dry_run") or False),
        "release_notes": notes,
    }


CLAIM_ATTEMPTS = 20  # next-free versions tried when others are claimed (concurrent runs, released failures)


def _image_version(image: Mapping[str, Any], role_name: str) -> str:
    """The version an image stands for: its ``phoenix:version`` tag, else its name ``phoenix-<role>-<version>``
    (Packer tags an AMI only once it is available: a build in flight, or an orphaned one, has only its name)."""
    from phoenix_fleet.release.publish_rules import tag_map

    tagged = tag_map(image).get("phoenix:version")
    if tagged:
        return tagged
    name = str(image.get("Name") or "")
    prefix = f"phoenix-{role_name}-"
    return name[len(prefix):] if name.startswith(prefix) else ""


def _refuse_held_version(version: str, images: list[dict[str, Any]], role_name: str, ami_id: str | None, run_id: str | None) -> None:
    """An explicit version is refused when an image already stands for it: verified (held), or marked
    ``phoenix:verified=false`` by another run (a failed build or verify is never re-released under its number,
    and bake would refuse to adopt it), or a build of it in flight or abandoned (no tags yet)."""
    from phoenix_fleet.release.publish_rules import tag_map

    fix = "Fix: leave version empty for the next free one, or pick another"
    for image in images:
        if image["ImageId"] == ami_id or _image_version(image, role_name) != version:
            continue
        if image.get("State") in ("failed", "error", "invalid", "deregistered"):
            continue  # a failed AMI stands for nothing (bake deregisters it)
        t = tag_map(image)
        if t.get("phoenix:verified") == "true":
            raise ReleaseParamError(
                f"params.version: {version} is already held by {image['ImageId']} (versions are immutable). {fix}"
            )
        if run_id is not None and t.get("phoenix:build-run") == run_id:
            continue  # this run's own build (plan re-run after a clear): bake reuses it
        if t.get("phoenix:verified") == "false":
            why = t.get("phoenix:verified-reason") or "baked, never verified"
            raise ReleaseParamError(
                f"params.version: {version} already has image {image['ImageId']} marked phoenix:verified=false "
                f"({why}; build run {t.get('phoenix:build-run') or '?'}): a version whose image failed is not "
                f"released again. {fix}"
            )
        if not t.get("phoenix:version"):
            raise ReleaseParamError(
                f"params.version: {version} has an untagged image {image['ImageId']} ({image.get('Name')}, "
                f"{image.get('State')}): a build of it is in flight or was abandoned. {fix}; or, once no build is "
                f"running, deregister {image['ImageId']}"
            )


def plan_release(
    fleet: FleetConfig,
    role_name: str,
    params: Mapping[str, Any],
    hook: Any,
    today: dt.date | None = None,
    *,
    run_id: str | None = None,
    dag_id: str | None = None,
    claim_ttl: dt.timedelta | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Validate params, resolve the version, check an existing AMI, and (given ``run_id``/``dag_id``, not on a
    dry run) claim the version atomically (:mod:`phoenix_fleet.pipelines.version_claims`): the release plan (XCom).
    Claims live for ``claim_ttl`` (the release run's ``dagrun_timeout``)."""
    from phoenix_fleet.pipelines.version_claims import claim_parameter, claim_version
    from phoenix_fleet.release.publish_rules import resolve_version, tag_map
    from phoenix_fleet.release.versions import Version

    role = fleet.role(role_name)
    p = validate_release_params(params, role, role_name)
    now = now or dt.datetime.now(dt.UTC)
    today = today or now.date()
    history = hook.parameter_history(fleet.latest_version_parameter(role_name))
    images = hook.find_images({"tag:phoenix:role": role_name})
    known = {i["ImageId"] for i in images}
    images += [i for i in hook.find_images({"name": f"phoenix-{role_name}-*"}) if i["ImageId"] not in known]
    seen = [str(h["Value"]) for h in history] + [_image_version(i, role_name) for i in images]
    if p["version"]:
        _refuse_held_version(p["version"], images, role_name, p["ami_id"], run_id)
    # every check that can refuse the run comes before the claim: a refused run leaves nothing behind
    if p["skip_bake"]:
        image = hook.describe_image(p["ami_id"])
        if image.get("OwnerId") != hook.get_account_id():
            raise ReleaseParamError(
                f"params.ami_id: {p['ami_id']} is owned by {image.get('OwnerId')}, not this account. "
                "Fix: release only AMIs you built (copy it into this account first)"
            )
        tags = tag_map(image)
        if tags.get("phoenix:role") not in (None, role_name):
            raise ReleaseParamError(
                f"params.ami_id: {p['ami_id']} is a {tags.get('phoenix:role')} image, not {role_name}. Fix: pick this role's AMI"
            )
    packer_vars: dict[str, Any] = {}
    if p["base_ami_name"]:
        packer_vars = {"base_ami_name": p["base_ami_name"], "base_ami_owners": p["base_ami_owners"]}
    base_ami = None
    if not p["skip_bake"]:
        base_ami = find_base_ami(hook, role_name, role, packer_vars)
    resolved = resolve_version(p["version"], None, seen, today)
    claim: dict[str, Any] | None = None
    if run_id and dag_id and not p["dry_run"]:
        ssm = hook.client("ssm", role.home_region)
        ttl = claim_ttl or dt.timedelta(hours=24)
        for _attempt in range(CLAIM_ATTEMPTS):
            parameter = claim_parameter(fleet.ssm_prefix, role_name, str(resolved.version))
            ok, holder = claim_version(
                ssm, parameter, run_id=run_id, dag_id=dag_id, now=now, ttl=ttl,
                description=f"phoenix-fleet: {role_name} {resolved.version} is being released by {dag_id} {run_id}",
            )
            if ok and holder is not None:
                claim = holder.as_dict()
                break
            if p["version"]:
                raise ReleaseParamError(
                    f"params.version: {resolved.version} is claimed by "
                    f"{holder.describe() if holder else 'another run'} ({parameter}). Fix: leave version empty for "
                    "the next free one, or pick another; if that run is over and never released its claim, delete "
                    f"the parameter {parameter}"
                )
            seen.append(str(resolved.version))
            resolved = resolve_version(None, None, seen, today)
        else:
            raise ReleaseParamError(
                f"params.version: {CLAIM_ATTEMPTS} versions in a row were claimed by other runs "
                f"({claim_parameter(fleet.ssm_prefix, role_name, '')}*). Fix: let the other releases finish, or "
                "give an explicit version"
            )
    version = str(resolved.version)
    plan = {
        "role": role_name,
        "version": version,
        "version_source": resolved.source,
        "label": Version.parse(version).label,
        "skip_bake": p["skip_bake"],
        "ami_id": p["ami_id"],
        "regions": p["regions"],
        "home_region": role.home_region,
        "dry_run": p["dry_run"],
        "packer_vars": packer_vars,
        "operator_notes": p["release_notes"],
        "base_ami": {
            **(packer_vars or {
                "base_ami_name": role.image.base_ami.name,
                "base_ami_owners": role.image.base_ami.owners,
            }),
            "image_id": base_ami,
        },
        "claim": claim,
    }
    return plan


def find_base_ami(hook: Any, role_name: str, role: Role, override: Mapping[str, Any]) -> str:
    """The image Packer will bake from (the newest match, as its ``source_ami_filter`` with ``most_recent``),
    looked up now: a base that does not exist fails the plan naming the field, instead of the bake failing
    inside Packer after its retries."""
    from phoenix_fleet.form_params import shown

    name = str(override.get("base_ami_name") or role.image.base_ami.name)
    owners = [str(o) for o in (override.get("base_ami_owners") or role.image.base_ami.owners)]
    found = hook.find_images({"name": name, **BASE_AMI_FILTERS}, owners=owners)
    if found:
        return str(max(found, key=lambda i: (i.get("CreationDate", ""), i["ImageId"]))["ImageId"])
    where = f"owned by {', '.join(owners)} in {role.home_region} (x86_64, hvm, available)"
    if override.get("base_ami_name"):
        raise ReleaseParamError(
            f"params.base_ami_name: no AMI named {shown(name, 130)} {where}. Fix: check the name pattern and "
            "params.base_ami_owners, or leave both empty for the role's base image"
        )
    raise ReleaseParamError(
        f"roles.{role_name}.image.base_ami: no AMI named {name!r} {where}. Fix: correct the role's base_ami in "
        "the fleet config, or give params.base_ami_name and params.base_ami_owners for this run"
    )


def late_scheduled_run(run_type: Any, slot: dt.datetime | None, now: dt.datetime, grace_hours: float) -> str | None:
    """Why a *scheduled* run should not release, or None. With catchup off, Airflow still creates a run for the
    latest missed slot when a DAG is unpaused (or the scheduler was down): a weekly release would then start at
    whatever hour someone unpaused it. Past ``grace_hours`` after its slot, such a run skips; a manual run never
    does."""
    kind = str(getattr(run_type, "value", run_type) or "")
    if kind != "scheduled" or slot is None:
        return None
    late = now - slot
    if late <= dt.timedelta(hours=grace_hours):
        return None
    return (
        f"this scheduled run is for the slot at {slot:%Y-%m-%d %H:%M} UTC, {late.total_seconds() / 3600:.1f} h ago "
        f"(more than schedule_grace_hours={grace_hours:g}): it was created late, by unpausing the DAG or after a "
        "scheduler outage, so it releases nothing. Fix: trigger the DAG by hand to release now; the next slot "
        "runs as scheduled"
    )


def describe_plan(plan: Mapping[str, Any]) -> str:
    steps = []
    if plan["skip_bake"]:
        steps.append(f"use existing AMI {plan['ami_id']} (no bake)")
    else:
        b = plan["base_ami"]
        steps.append(f"bake {plan['role']} {plan['version']} with Packer from {b['base_ami_name']} (owners {b['base_ami_owners']}; "
                     f"today {b.get('image_id') or '?'})")
    steps += [
        f"wait until the AMI is available in {plan['home_region']}",
        "verify: launch a canary, wait for status ok, run the image test suite via SSM, terminate the canary",
        f"release as {plan['version']} ({plan['version_source']}), write the release notes (package diff)",
        f"copy to {', '.join(plan['regions'])}, share, move /…/{plan['role']}/latest, emit x-phoenix://images/{plan['role']}",
    ]
    head = "DRY RUN, nothing will change. " if plan["dry_run"] else ""
    return head + f"release plan for {plan['role']}:\n" + "\n".join(f"  {i}. {s}" for i, s in enumerate(steps, 1))
