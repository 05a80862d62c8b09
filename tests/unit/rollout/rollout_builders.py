"""Small builders for example-based rollout tests: instances, fleets, records."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from phoenix_fleet.rollout import FleetState, Instance, Policy, RolloutRecord
from rollout_sim import NEW, OLD, T0, TG

ALL_SIGNALS = frozenset({"asg", "elb", "ec2_status", "alarms"})


def inst(iid: str, image: str = OLD, *, az: str = "us-east-1a", lifecycle: str = "InService",
         age: int = 3600, healthy: bool = True, **kw: Any) -> Instance:
    """An instance launched `age` seconds before T0; healthy on every signal unless `healthy=False`
    (then its target is still `initial`)."""
    th = {TG: "healthy" if healthy else "initial"} if lifecycle == "InService" else {}
    fields: dict[str, Any] = {
        "instance_id": iid, "image_id": image, "az": az, "lifecycle": lifecycle,
        "launch_time": T0 - timedelta(seconds=age), "target_health": th, "status": "ok",
    }
    fields.update(kw)
    return Instance(**fields)


def fleet(*instances: Instance, desired: int | None = None, min_size: int | None = None,
          max_size: int | None = None, now_offset: int = 0, **kw: Any) -> FleetState:
    live = sum(1 for i in instances if i.counts_toward_desired)
    d = live if desired is None else desired
    fields: dict[str, Any] = {
        "asg_name": "web-asg", "desired": d, "min_size": d if min_size is None else min_size,
        "max_size": d if max_size is None else max_size, "instances": tuple(instances),
        "now": T0 + timedelta(seconds=now_offset), "target_group_arns": (TG,), "health_check_type": "ELB",
        "suspended_processes": frozenset({"AZRebalance", "AlarmNotification", "ScheduledActions"}),
        "launch_image_id": NEW,
    }
    fields.update(kw)
    return FleetState(**fields)


def old_fleet(n: int, *, azs: int = 2, **kw: Any) -> FleetState:
    zones = [f"us-east-1{c}" for c in "abc"[:azs]]
    return fleet(*(inst(f"i-old{k:02d}", az=zones[k % azs], age=3600 + k) for k in range(n)), **kw)


def record(state: FleetState, policy: Policy, **kw: Any) -> RolloutRecord:
    fields: dict[str, Any] = {
        "rollout_id": "r-1", "target_image": NEW, "previous_image": OLD,
        "original_desired": state.desired, "original_min": state.min_size, "original_max": state.max_size,
        "started_at": T0, "suspended": policy.suspend_processes,
        "target_lt": "lt-0123456789abcdef0:8", "previous_lt": "lt-0123456789abcdef0:7",
        "target_label": "2026.11.30-1", "previous_label": "2026.11.23-1",
        "desired_written": (state.desired, state.desired), "policy": policy.core(),
    }
    fields.update(kw)
    return RolloutRecord(**fields)
