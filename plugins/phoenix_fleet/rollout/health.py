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
"""

from __future__ import annotations

from datetime import datetime, timedelta

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


def firing_alarms(state: FleetState, policy: Policy) -> tuple[str, ...]:
    """The policy's alarms now in ALARM (empty when ``alarms`` is not a health signal)."""
    if not policy.uses("alarms"):
        return ()
    return tuple(a for a in policy.alarms if a in state.alarms_in_alarm)


def health_problems(
    inst: Instance, state: FleetState, policy: Policy, *, alarms: bool = True, warmup: bool = True
) -> list[str]:
    """Why `inst` is not healthy; empty when it is. ``alarms=False`` ignores the fleet-wide alarms (the
    rollback phase does, see planner); ``warmup=False`` ignores the warmup (for failure timeouts)."""
    problems: list[str] = []
    if not inst.in_service:
        problems.append(f"lifecycle {inst.lifecycle}")
    if policy.uses("asg") and inst.asg_health != "Healthy":
        problems.append(f"ASG health {inst.asg_health}")
    if policy.uses("elb"):
        for tg in state.target_group_arns:
            th = inst.target_health.get(tg)
            if th != "healthy":
                problems.append(f"target {th or 'not registered'} in {target_group_name(tg)}")
    if policy.uses("ec2_status") and inst.status != "ok":
        problems.append(f"status checks {inst.status or 'unknown'}")
    if alarms:
        firing = firing_alarms(state, policy)
        if firing:
            problems.append("alarm in ALARM: " + ", ".join(firing))
    if warmup and state.now < warmup_end(inst, policy):
        left = int((warmup_end(inst, policy) - state.now).total_seconds() + 0.999)
        problems.append(f"warming up ({left}s left)")
    return problems


def is_healthy(inst: Instance, state: FleetState, policy: Policy, *, alarms: bool = True) -> bool:
    return not health_problems(inst, state, policy, alarms=alarms)


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
        problems = health_problems(inst, state, policy, alarms=False, warmup=False)
        if problems:
            waited = int((now - inst.launch_time).total_seconds())
            return f"{name} not healthy {waited}s after launch ({'; '.join(problems)})"
    return None


def fleet_healthy(state: FleetState, policy: Policy, image_id: str | None = None) -> tuple[bool, str]:
    """(healthy?, why): the group at desired capacity, nothing in transition, every instance healthy and,
    when ``image_id`` is given, on it. The gate of ``AsgHealthySensor`` and ``AsgHealthyTrigger`` (both call
    it; it lives here, in the pure core, so that neither imports the other)."""
    live = state.live
    moving = [i for i in state.members if i.in_transition]
    if len(live) != state.desired:
        return False, f"{len(live)} instance(s) for desired {state.desired}"
    if moving:
        sample = sorted(moving, key=lambda i: i.instance_id)[0]
        return False, f"{len(moving)} instance(s) in transition (e.g. {sample.instance_id} {sample.lifecycle})"
    if image_id:
        other = sorted(i.instance_id for i in live if i.image_id != image_id)
        if other:
            return False, f"{len(other)} instance(s) not on {image_id} (e.g. {other[0]})"
    sick = sorted((i for i in live if not is_healthy(i, state, policy)), key=lambda i: i.instance_id)
    if sick:
        why = "; ".join(health_problems(sick[0], state, policy))
        return False, f"{len(sick)} instance(s) not healthy (e.g. {sick[0].instance_id}: {why})"
    on = f" on {image_id}" if image_id else ""
    return True, f"{state.asg_name}: {len(live)}/{state.desired} healthy{on}"
