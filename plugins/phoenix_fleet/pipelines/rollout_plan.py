"""The first task of a rollout: validate the trigger, resolve the target version and the ASGs.

Runs on a worker. A bad trigger conf (wrong types, an unknown ASG, a negative batch, a version that
does not exist) raises here, before anything changes, with a message naming ``params.<field>``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # import-light: the pydantic models and the rollout core load inside the functions
    from phoenix_fleet.config import FleetConfig, RolloutPolicy

POLICY_PARAMS = ("strategy", "batch_size", "min_healthy_percent")
#: the trigger form's fields (``rollout_dag.rollout_params``); any other conf key fails the plan
FIELDS = ("target_version", "asgs", *POLICY_PARAMS, "require_approval", "dry_run")

#: the limits of the rollout DAG's tasks that the worst case counts (rollout_dag.py sets them)
APPLY_LIMIT = {"terraform": timedelta(minutes=30), "native": timedelta(minutes=10)}
CHECK_LIMIT = timedelta(minutes=5)  # plan, check_launch_templates
GATE_LIMIT = timedelta(seconds=1800)  # health_gate's timeout
#: per task on the path: scheduling, start-up, a retry's delay
TASK_MARGIN = timedelta(minutes=2)


@dataclass(frozen=True)
class RolloutBudget:
    """The worst case of one ``fleet_rollout_<role>`` run, by part (see :func:`rollout_budget`)."""

    total: timedelta
    parts: dict[str, timedelta] = field(default_factory=dict)
    waves: int = 1

    def describe(self) -> str:
        return " + ".join(f"{name} {_hours(d)}" for name, d in self.parts.items())


def _hours(d: timedelta) -> str:
    minutes = math.ceil(d.total_seconds() / 60)
    return f"{minutes // 60}h{minutes % 60:02d}" if minutes >= 60 else f"{minutes} min"


def rollout_budget(
    *,
    targets: int,
    concurrency: int,
    per_asg: timedelta,
    approval: timedelta | None = None,
    backend: str = "terraform",
) -> RolloutBudget:
    """The longest a rollout run of ``targets`` ASGs can take: plan, apply and check; the canary (one ASG's worst
    case, ``per_asg``: ``rollout.Policy.execution_budget()``, the recycle tasks' own limit: forward and rollback
    deadlines, what a replaced fleet may take past one, unknown health's bound, a halt, slack; a retry resumes and
    does not restart the clocks); the approval's timeout (when asked for); the mapped recycle in
    ``ceil(targets / concurrency)`` waves of ``per_asg`` each; the health gate's timeout; a margin per task. (A
    rejected or unanswered approval takes the shorter path: the canary's rollback instead of the waves.)"""
    waves = max(1, math.ceil(max(1, targets) / max(1, concurrency)))
    one = per_asg
    parts = {
        "plan, apply and check": CHECK_LIMIT * 2 + APPLY_LIMIT.get(backend, APPLY_LIMIT["terraform"]),
        "canary": one,
    }
    if approval:
        parts["approval"] = approval
    parts[f"recycle ({targets} ASG(s), {waves} wave(s) of {concurrency})"] = one * waves
    parts["health gate"] = GATE_LIMIT
    parts["scheduling"] = TASK_MARGIN * (10 + waves)
    return RolloutBudget(total=sum(parts.values(), timedelta(0)), parts=parts, waves=waves)


class RolloutParamError(ValueError):
    """A trigger value is invalid; the message names ``params.<field>`` and the fix."""


class RolloutSkipped(Exception):
    """Nothing to roll: the event announces a version that was rolled already (the message says why)."""


def policy_overrides(params: Mapping[str, Any], base: RolloutPolicy) -> dict[str, Any]:
    """The policy keys the trigger form overrides, validated against the full RolloutPolicy model."""
    from pydantic import ValidationError

    from phoenix_fleet.config import RolloutPolicy
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
    event = event_from_events(events, asset_uri)
    return str(event["version"]) if event else None


def event_from_events(events: Any, asset_uri: str) -> Mapping[str, Any] | None:
    """The extra of the newest event (with a version) on ``asset_uri`` among ``triggering_asset_events``."""
    from phoenix_fleet.asset_events import extras

    found = [extra for extra in extras(events, asset_uri) if extra.get("version")]
    return found[-1] if found else None


def event_regions(event: Mapping[str, Any] | None) -> list[str] | None:
    """The regions a publish event announces (``regions``, else the keys of ``amis``); None: not said."""
    if not event:
        return None
    regions = event.get("regions") or list(event.get("amis") or {})
    return [str(r) for r in regions] or None


def already_published_reason(role: str, event: Mapping[str, Any] | None) -> str | None:
    """Why an event must not start a rollout (it re-announces a release), or None."""
    if not event or not event.get("already_published"):
        return None
    return (
        f"the publish event for {role} {event.get('version')} says already_published: a re-run of "
        f"ami_release_{role} announced a version that another run published (and whose event started its "
        "rollout then). One version, one rollout: nothing to do. Fix: to roll it out again, trigger "
        f"fleet_rollout_{role} by hand with target_version={event.get('version')}"
    )


def claim_rollout(
    hook: Any, bucket: str, role: str, version: str, run_id: str, dag_id: str, regions: Iterable[str], now: str
) -> dict[str, Any]:
    """Record that ``run_id`` rolls ``version`` out, unless a run did already: the claim that holds.

    ``s3://<bucket>/images/<role>/<version>/rollout.json``, created only if absent (``If-None-Match: *``, atomic):
    of two runs racing for a version, exactly one makes the claim; the other reads it.
    """
    import json

    from phoenix_fleet.release.release_log import rollout_claim_key

    key = rollout_claim_key(role, version)
    claim = {"role": role, "version": version, "run_id": run_id, "dag_id": dag_id, "claimed_at": now,
             "regions": list(regions)}
    if hook.create_s3_text(bucket, key, json.dumps(claim, indent=1), "application/json"):
        return claim
    text = hook.read_s3_text(bucket, key)
    try:
        held = json.loads(text or "")
    except json.JSONDecodeError:
        held = None
    if not isinstance(held, dict) or not held.get("run_id"):
        raise RolloutParamError(
            f"s3://{bucket}/{key} is not a rollout claim ({(text or '')[:200]!r}). Fix: delete it, then retry"
        )
    return held


def rolled_already_reason(role: str, version: str, claim: Mapping[str, Any], run_id: str) -> str | None:
    """Why an event-triggered run must not roll ``version`` (another run claimed it), or None."""
    if claim.get("run_id") == run_id:
        return None
    return (
        f"{role} {version} was rolled out already, by {claim.get('dag_id')} run {claim.get('run_id')} (claimed "
        f"{claim.get('claimed_at')}): one version, one rollout, so this event starts nothing. Fix: to roll it out "
        f"again, trigger fleet_rollout_{role} by hand with target_version={version}"
    )


def plan_rollout(
    fleet: FleetConfig,
    role_name: str,
    params: Mapping[str, Any],
    hook: Any,
    event_version: str | None = None,
    regions: Iterable[str] | None = None,
    run_timeout: timedelta | None = None,
    max_map_length: int | None = None,
) -> dict[str, Any]:
    """Resolve version → AMI per region and the ASGs to roll; raise RolloutParamError on bad input, when the
    run's worst case (:func:`rollout_budget`) exceeds ``run_timeout`` (the DAG's ``dagrun_timeout``: past it the
    scheduler would stop the run mid-way, groups locked), and when there are more ASGs than Airflow may map
    (``max_map_length``, ``[core] max_map_length``: the recycle and the health gate are mapped over them, and
    their expansion would fail after the canary changed its group)."""
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
    if wanted == "latest":
        for region in regions or role.regions:
            ami = (hook.get_parameter(pointer, region=region) or {}).get("Value")
            version = (hook.get_parameter(version_param, region=region) or {}).get("Value") or version
            if not ami:
                raise RolloutParamError(
                    f"params.target_version: latest has no published AMI for {role_name} in {region} "
                    f"({pointer}). Fix: publish it first (ami_release_{role_name}) or choose a published version"
                )
            amis[region] = ami
    else:
        from phoenix_fleet.operators.apply_operators import published_images

        Version.parse(wanted, field="params.target_version")
        version = wanted
        # the release log says where the version went: a release of a subset of the role's regions rolls there
        amis = published_images(hook, fleet, role_name, wanted, list(regions or role.regions))
        missing = [r for r in (regions or []) if r not in amis]
        if missing or not amis:
            raise RolloutParamError(
                f"params.target_version: {wanted} has no published AMI for {role_name} in "
                f"{', '.join(missing or list(regions or role.regions))} (release log s3://{fleet.artifacts_bucket}/"
                f"images/{role_name}/{wanted}/release.json, or {pointer}:v{wanted}). Fix: publish it first "
                f"(ami_release_{role_name}) or choose a published version"
            )

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
    if max_map_length is not None and len(targets) > max_map_length:
        raise RolloutParamError(
            f"params.asgs: a rollout of {len(targets)} ASGs of {role_name} is more than Airflow maps in one task "
            f"([core] max_map_length = {max_map_length}): the recycle and the health gate are mapped over the ASGs and "
            f"could not expand, after the canary had changed its group. Nothing was changed. Fix: roll at most "
            f"{max_map_length} at a time (params.asgs, e.g. one region per run), or raise [core] max_map_length "
            f"(AIRFLOW__CORE__MAX_MAP_LENGTH) to at least {len(targets)} on the scheduler and every worker"
        )
    env = fleet.environment(role_name)
    approval = approval_required(env.require_approval, params.get("require_approval"))
    dry_run = bool(params.get("dry_run") or False)
    from phoenix_fleet.rollout import Policy

    policy = role.rollout
    budget = rollout_budget(
        targets=len(targets), concurrency=policy.max_concurrent_asgs,
        per_asg=Policy.from_config(policy).execution_budget(), backend=role.terraform.backend,
        approval=timedelta(hours=env.approval_timeout_hours) if approval and not dry_run else None,
    )
    if run_timeout is not None and budget.total > run_timeout:
        need = math.ceil(budget.total.total_seconds() / 3600)
        raise RolloutParamError(
            f"roles.{role_name}.rollout.run_timeout_hours: a rollout of {len(targets)} ASG(s) of {role_name} at "
            f"{policy.max_concurrent_asgs} at a time may take up to {_hours(budget.total)} ({budget.describe()}), "
            f"more than the run's timeout of {_hours(run_timeout)}: the scheduler would stop it part way, with "
            f"groups locked and processes suspended. Nothing was changed. Fix: raise "
            f"roles.{role_name}.rollout.run_timeout_hours to at least {need} in include/fleet.yaml, or raise "
            f"max_concurrent_asgs (fewer waves), or roll a subset (params.asgs)"
        )
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
        "regions_left_alone": [r for r in role.regions if r not in amis],
        "policy": overrides,
        "require_approval": bool(approval),
        "dry_run": dry_run,
        "worst_case_minutes": math.ceil(budget.total.total_seconds() / 60),
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


def plan_triggered_rollout(
    fleet: FleetConfig,
    role_name: str,
    params: Mapping[str, Any],
    hook: Any,
    events: Any,
    asset_uri: str,
    run_id: str,
    dag_id: str,
    now: str,
    run_timeout: timedelta | None = None,
    max_map_length: int | None = None,
) -> dict[str, Any]:
    """The rollout task's plan: :func:`plan_rollout` for this run's trigger, and one rollout per version.

    A run started by a publish event rolls the event's version to the event's regions, unless the event says
    ``already_published`` or another run already claimed that version (:func:`claim_rollout`): then it raises
    :class:`RolloutSkipped` saying so, before anything changes. A run triggered by hand rolls what it is asked
    (a version rolled before included: that is how a rollout is repeated or rolled back); it records its claim
    when the version has none, so a later event for it starts nothing. A dry run claims nothing.
    """
    event = event_from_events(events, asset_uri)
    reason = already_published_reason(role_name, event)
    if reason:
        raise RolloutSkipped(reason)
    plan = plan_rollout(
        fleet, role_name, params, hook,
        event_version=str(event["version"]) if event else None, regions=event_regions(event),
        run_timeout=run_timeout, max_map_length=max_map_length,
    )
    if plan["dry_run"] or not plan.get("version"):
        return plan
    claim = claim_rollout(hook, fleet.artifacts_bucket, role_name, str(plan["version"]), run_id, dag_id,
                          list(plan["amis"]), now)
    reason = rolled_already_reason(role_name, str(plan["version"]), claim, run_id) if event else None
    if reason:
        raise RolloutSkipped(reason)
    plan["claim"] = claim
    return plan


def describe_rollout(plan: Mapping[str, Any]) -> str:
    lines = [
        f"{'DRY RUN, nothing will change. ' if plan['dry_run'] else ''}rollout of {plan['role']} to "
        f"{plan['version']} ({', '.join(f'{r}: {a}' for r, a in plan['amis'].items())})",
        f"  ASGs: {', '.join(t['asg_name'] + '@' + t['region_name'] for t in plan['targets'])}",
        *(
            [f"  regions left alone (not in this release): {', '.join(plan['regions_left_alone'])}"]
            if plan.get("regions_left_alone") else []
        ),
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
    if plan.get("worst_case_minutes"):
        lines.append(f"  worst case: {_hours(timedelta(minutes=plan['worst_case_minutes']))} (within the run's timeout)")
    return "\n".join(lines)
