"""Health rules: when an instance counts as healthy capacity, and when a new instance has failed.

An instance is **healthy** when all of these hold (each signal only if it is in ``policy.health_signals``):

- it is ``InService`` (Pending, Pending:Wait, Pending:Proceed, Standby, Terminating* never are);
- ``asg``: the ASG reports it ``Healthy``;
- ``elb``: it is ``healthy`` in *every* target group attached to the ASG (``initial``, ``draining``,
  ``unused``, ``unavailable``, ``unhealthy`` and not registered all fail this);
- ``ec2_status``: both EC2 status checks are ``ok``;
- ``alarms``: none of the policy's CloudWatch alarms is in ALARM (a fleet-wide signal);
- its warmup has passed: ``launch_time + warmup_seconds <= now`` (always, whatever the signals).

A **new** instance (one on the rollout's target image) has **failed** when, after its warmup,

- ``asg``: the ASG reports it ``Unhealthy``; or
- ``elb``: some attached target group reports it ``unhealthy``; or
- ``ec2_status``: a status check is ``impaired``;

or when it is still not healthy ``health_timeout_seconds`` after its warmup ended (whatever the
reason: stuck in Pending:Wait, target stuck in ``initial``, status checks never ok). Alarms are judged
for the whole fleet by ``firing_alarms``, not per instance.

Health is **three-valued** (``health_state``): *healthy*, *unhealthy* (some signal is known to be bad), or
*unknown* (nothing known is bad, but a signal could not be observed: status checks missing from
DescribeInstanceStatus, or the target group not found). Unknown is never healthy capacity and never a
failure: the planner does not act on it (it re-observes, and halts when it stays unknown too long).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Literal

from .fleet_state import FleetState, Instance
from .rollout_policy import Policy


def target_group_name(arn: str) -> str:
    """``arn:...:targetgroup/web/0123`` -> ``web`` (the ARN itself when it has another shape)."""
    parts = arn.split(":targetgroup/", 1)
    return parts[1].split("/", 1)[0] if len(parts) == 2 else arn


def warmup_end(inst: Instance, policy: Policy) -> datetime:
    return inst.launch_time + timedelta(seconds=policy.warmup_seconds)


def health_deadline(inst: Instance, policy: Policy) -> datetime:
    """When a new instance that is still not healthy counts as failed."""
    return warmup_end(inst, policy) + timedelta(seconds=policy.health_timeout_seconds)


HealthState = Literal["healthy", "unhealthy", "unknown"]
HEALTHY: HealthState = "healthy"
UNHEALTHY: HealthState = "unhealthy"
UNKNOWN: HealthState = "unknown"


def unknown_signals(inst: Instance, policy: Policy) -> tuple[str, ...]:
    """The signals the policy counts that could not be observed for `inst` (status None = unknown)."""
    unknown = set(inst.unknown)
    if inst.status is None:
        unknown.add("ec2_status")
    return tuple(s for s in ("asg", "elb", "ec2_status") if s in unknown and policy.uses(s))


def firing_alarms(state: FleetState, policy: Policy) -> tuple[str, ...]:
    """The policy's alarms now in ALARM (empty when ``alarms`` is not a health signal)."""
    if not policy.uses("alarms"):
        return ()
    return tuple(a for a in policy.alarms if a in state.alarms_in_alarm)


def health_problems(
    inst: Instance,
    state: FleetState,
    policy: Policy,
    *,
    alarms: bool = True,
    warmup: bool = True,
    known_only: bool = False,
) -> list[str]:
    """Why `inst` is not healthy; empty when it is. ``alarms=False`` ignores the fleet-wide alarms (the
    rollback phase does, see planner); ``warmup=False`` ignores the warmup (for failure timeouts);
    ``known_only=True`` leaves out the signals that could not be observed (unknown is not bad)."""
    problems: list[str] = []
    unknown = unknown_signals(inst, policy)
    if not inst.in_service:
        problems.append(f"lifecycle {inst.lifecycle}")
    if policy.uses("asg") and "asg" not in unknown and inst.asg_health != "Healthy":
        problems.append(f"ASG health {inst.asg_health}")
    if policy.uses("elb") and "elb" not in unknown:
        for tg in state.target_group_arns:
            th = inst.target_health.get(tg)
            if th != "healthy":
                problems.append(f"target {th or 'not registered'} in {target_group_name(tg)}")
    if policy.uses("ec2_status") and "ec2_status" not in unknown and inst.status != "ok":
        problems.append(f"status checks {inst.status}")
    if not known_only:
        names = {"asg": "ASG health", "elb": "target health", "ec2_status": "status checks"}
        problems += [f"{names[s]} unknown" for s in unknown]
    if alarms:
        firing = firing_alarms(state, policy)
        if firing:
            problems.append("alarm in ALARM: " + ", ".join(firing))
    if warmup and state.now < warmup_end(inst, policy):
        left = int((warmup_end(inst, policy) - state.now).total_seconds() + 0.999)
        problems.append(f"warming up ({left}s left)")
    return problems


def is_healthy(inst: Instance, state: FleetState, policy: Policy, *, alarms: bool = True) -> bool:
    """``not health_problems(...)``, without building the reasons (the planner asks this very often)."""
    if not inst.in_service or state.now < warmup_end(inst, policy):
        return False
    if policy.uses("asg") and (inst.asg_health != "Healthy" or "asg" in inst.unknown):
        return False
    if policy.uses("elb"):
        if "elb" in inst.unknown:
            return False
        th = inst.target_health
        if any(th.get(tg) != "healthy" for tg in state.target_group_arns):
            return False
    if policy.uses("ec2_status") and (inst.status != "ok" or "ec2_status" in inst.unknown):
        return False
    return not (alarms and firing_alarms(state, policy))


def health_state(inst: Instance, state: FleetState, policy: Policy, *, alarms: bool = True) -> HealthState:
    """healthy, unhealthy (something known is bad: not InService, warming up, a bad signal, an alarm), or
    unknown (nothing known is bad, but a signal the policy counts could not be observed)."""
    if is_healthy(inst, state, policy, alarms=alarms):
        return HEALTHY
    if not unknown_signals(inst, policy):
        return UNHEALTHY
    if health_problems(inst, state, policy, alarms=alarms, known_only=True):
        return UNHEALTHY
    return UNKNOWN


def unknown_ids(state: FleetState, policy: Policy, *, alarms: bool = True) -> frozenset[str]:
    """Ids of the members whose health is unknown (neither healthy capacity nor known to be bad)."""
    return frozenset(
        i.instance_id
        for i in state.members
        if (i.status is None or i.unknown) and health_state(i, state, policy, alarms=alarms) == UNKNOWN
    )


def only_warming_up(inst: Instance, state: FleetState, policy: Policy, *, alarms: bool = True) -> bool:
    """Healthy in every respect except that its warmup has not passed yet."""
    return (
        state.now < warmup_end(inst, policy)
        and not health_problems(inst, state, policy, alarms=alarms, warmup=False)
    )


def healthy_ids(state: FleetState, policy: Policy, *, alarms: bool = True) -> frozenset[str]:
    """Ids of the healthy instances: the fleet's healthy capacity is the size of this set."""
    return frozenset(i.instance_id for i in state.members if is_healthy(i, state, policy, alarms=alarms))


def failure(inst: Instance, state: FleetState, policy: Policy) -> str | None:
    """Why a new instance has failed, or None while it is healthy or may still become healthy."""
    now = state.now
    if now < warmup_end(inst, policy):
        return None
    name = inst.instance_id
    if policy.uses("asg") and inst.asg_health == "Unhealthy":
        return f"{name} is Unhealthy in the ASG"
    if policy.uses("elb"):
        for tg in state.target_group_arns:
            if inst.target_health.get(tg) in ("unhealthy", "unhealthy.draining"):
                return f"{name} is unhealthy in target group {target_group_name(tg)}"
    if policy.uses("ec2_status") and inst.status == "impaired":
        return f"{name} status checks are impaired"
    if now >= health_deadline(inst, policy):
        # only what is known to be bad: a signal that could not be observed is no failure (never acted on)
        problems = health_problems(inst, state, policy, alarms=False, warmup=False, known_only=True)
        if problems:
            waited = int((now - inst.launch_time).total_seconds())
            return f"{name} not healthy {waited}s after launch ({'; '.join(problems)})"
    return None


def fleet_healthy(
    state: FleetState, policy: Policy, image_id: str | None = None, skipped: Collection[str] = ()
) -> tuple[bool, str]:
    """(healthy?, why): the group at desired capacity, nothing in transition, every instance healthy and,
    when ``image_id`` is given, on it. The gate of ``AsgHealthySensor`` and ``AsgHealthyTrigger`` (both call
    it; it lives here, in the pure core, so that neither imports the other).

    ``skipped``: the instances the rollout left on their image by policy (``protected: skip`` / ``standby:
    skip``, the recycle result's ``skipped``): exactly those may be on another image than ``image_id`` (they
    must still be healthy); any other instance off ``image_id`` keeps the gate closed."""
    live = state.live
    moving = [i for i in state.members if i.in_transition]
    if len(live) != state.desired:
        return False, f"{len(live)} instance(s) for desired {state.desired}"
    if moving:
        sample = sorted(moving, key=lambda i: i.instance_id)[0]
        return False, f"{len(moving)} instance(s) in transition (e.g. {sample.instance_id} {sample.lifecycle})"
    left: list[str] = []
    if image_id:
        other = sorted(i.instance_id for i in live if i.image_id != image_id and i.instance_id not in skipped)
        if other:
            return False, f"{len(other)} instance(s) not on {image_id} (e.g. {other[0]})"
        left = sorted(i.instance_id for i in live if i.image_id != image_id)
    sick = sorted((i for i in live if not is_healthy(i, state, policy)), key=lambda i: i.instance_id)
    if sick:
        why = "; ".join(health_problems(sick[0], state, policy))
        return False, f"{len(sick)} instance(s) not healthy (e.g. {sick[0].instance_id}: {why})"
    on = f" on {image_id}" if image_id else ""
    kept = f" ({len(left)} skipped by policy on another image: {' '.join(left[:5])})" if left else ""
    return True, f"{state.asg_name}: {len(live)}/{state.desired} healthy{on}{kept}"
