"""The observed state of one AutoScalingGroup, as the rollout planner sees it.

Everything here is plain data: the operator fills it from batched describes (DescribeAutoScalingGroups,
DescribeInstances, DescribeInstanceStatus, DescribeTargetHealth, DescribeAlarms) and hands it to the
planner together with ``now``. No I/O, no clock.

Conventions:
- times are timezone-aware ``datetime`` (UTC); ``now`` is an input, never read from a clock;
- "outdated" is decided by the instance's EC2 ``ImageId``, never by the ASG's LaunchTemplate.Version field
  (moto reports the template's current default for every instance, see notes/moto.md);
- one instance is one unit of capacity (weighted capacity is not supported).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal


class Lifecycle:
    """AutoScaling lifecycle states (the ``LifecycleState`` field of DescribeAutoScalingGroups)."""

    PENDING = "Pending"
    PENDING_WAIT = "Pending:Wait"
    PENDING_PROCEED = "Pending:Proceed"
    QUARANTINED = "Quarantined"
    IN_SERVICE = "InService"
    TERMINATING = "Terminating"
    TERMINATING_WAIT = "Terminating:Wait"
    TERMINATING_PROCEED = "Terminating:Proceed"
    TERMINATED = "Terminated"
    DETACHING = "Detaching"
    DETACHED = "Detached"
    ENTERING_STANDBY = "EnteringStandby"
    STANDBY = "Standby"


#: Launching: counts toward desired capacity, not yet in service (lifecycle hooks hold it in Pending:Wait).
PENDING_STATES = frozenset({Lifecycle.PENDING, Lifecycle.PENDING_WAIT, Lifecycle.PENDING_PROCEED})
#: On its way out: no longer counts toward desired capacity (hooks hold it in Terminating:Wait).
TERMINATING_STATES = frozenset(
    {Lifecycle.TERMINATING, Lifecycle.TERMINATING_WAIT, Lifecycle.TERMINATING_PROCEED}
)
#: Gone, or leaving the group: ignored entirely.
GONE_STATES = frozenset({Lifecycle.TERMINATED, Lifecycle.DETACHED})
#: Transitions the planner waits out before acting again (besides pending and terminating).
OTHER_TRANSITIONS = frozenset({Lifecycle.DETACHING, Lifecycle.ENTERING_STANDBY, Lifecycle.QUARANTINED})

#: A warmed instance that has finished warming (DescribeWarmPool); other ``Warmed:*`` states are transitions
#: (``Warmed:Pending*`` warming up, ``Warmed:Terminating*`` on its way out).
WARMED_SETTLED = frozenset({"Warmed:Stopped", "Warmed:Running", "Warmed:Hibernated"})

AsgHealth = Literal["Healthy", "Unhealthy"]
#: ELBv2 TargetHealth.State values; an instance missing from a target group's map is not registered.
TargetState = Literal["initial", "healthy", "unhealthy", "unhealthy.draining", "draining", "unused", "unavailable"]
#: Worst of the EC2 system and instance status checks (DescribeInstanceStatus); None = unknown.
StatusCheck = Literal["ok", "initializing", "impaired", "insufficient-data", "not-applicable"]


@dataclass(frozen=True)
class Instance:
    """One member of the ASG.

    ``target_health`` maps target group ARN -> ELBv2 target state; a target group missing from the map
    means the instance is not registered there. ``status`` is the worse of the EC2 system and instance
    status checks (``ok`` only when both are ok), None when unknown. ``unknown`` names the health signals
    (``elb``, ``ec2_status``) the observation could not see for this instance (an API error, e.g. the
    target group not found): its health is then *unknown*, not bad (see health.health_state).
    """

    instance_id: str
    image_id: str
    az: str
    lifecycle: str
    launch_time: datetime
    asg_health: str = "Healthy"
    target_health: Mapping[str, str] = field(default_factory=dict)
    status: str | None = "ok"
    protected: bool = False
    unknown: frozenset[str] = frozenset()

    @property
    def pending(self) -> bool:
        return self.lifecycle in PENDING_STATES

    @property
    def in_service(self) -> bool:
        return self.lifecycle == Lifecycle.IN_SERVICE

    @property
    def standby(self) -> bool:
        return self.lifecycle == Lifecycle.STANDBY

    @property
    def terminating(self) -> bool:
        return self.lifecycle in TERMINATING_STATES

    @property
    def gone(self) -> bool:
        return self.lifecycle in GONE_STATES

    @property
    def counts_toward_desired(self) -> bool:
        """Pending and InService instances make up the ASG's desired capacity (Standby ones do not)."""
        return self.pending or self.in_service

    @property
    def in_transition(self) -> bool:
        """Anything but a settled InService/Standby member (or a gone one)."""
        return self.pending or self.terminating or self.lifecycle in OTHER_TRANSITIONS


@dataclass(frozen=True)
class WarmInstance:
    """One instance of the group's warm pool (DescribeWarmPool): not a member, not capacity, never health-gated.
    A scale-out moves it into the group with the image it was warmed with (``image_id``, from EC2)."""

    instance_id: str
    image_id: str
    lifecycle: str
    launch_time: datetime

    @property
    def settled(self) -> bool:
        return self.lifecycle in WARMED_SETTLED

    @property
    def terminating(self) -> bool:
        return self.lifecycle.startswith("Warmed:Terminating")


def warm_pool_size_for(config: Mapping[str, Any] | None, max_size: int, desired: int) -> int | None:
    """The size AWS keeps a warm pool at (None: no warm pool): ``MaxGroupPreparedCapacity`` (absent or -1: the
    group's MaxSize) minus desired, at least the pool's ``MinSize`` (AWS "Warm pools for Amazon EC2 Auto Scaling")."""
    if not config:
        return None
    raw = config.get("MaxGroupPreparedCapacity")
    prepared = -1 if raw is None else int(raw)
    cap = max_size if prepared < 0 else prepared
    return max(int(config.get("MinSize") or 0), cap - desired, 0)


@dataclass(frozen=True)
class FleetState:
    """One observation of the ASG at ``now``.

    ``alarms_in_alarm`` holds the names of the CloudWatch alarms currently in ALARM (the operator may
    describe only the policy's alarms). ``suspended_processes`` are the ASG's suspended scaling processes.
    ``launch_image_id`` is the AMI the ASG's launch template version resolves to right now (None when the
    operator did not resolve it; the planner then trusts that the template points at the target).
    ``observe_errors`` are the API errors the observation tolerated (each made some health unknown), e.g.
    ``DescribeTargetHealth web-tg: TargetGroupNotFound``: a halt on unknown health names them.
    ``launch_unresolved`` says what the group reported when it was asked for its launch image and it resolves
    to none (no launch template in the group, a version not found, a version without ``ImageId``); None when
    it resolved, or when it was not asked (``launch_image_id`` None then means "trusted", e.g. a
    ``resolve:ssm:`` parameter). The planner refuses such a group (it never skips the target check).
    """

    asg_name: str
    desired: int
    min_size: int
    max_size: int
    instances: tuple[Instance, ...]
    now: datetime
    target_group_arns: tuple[str, ...] = ()
    health_check_type: str = "EC2"
    alarms_in_alarm: frozenset[str] = frozenset()
    suspended_processes: frozenset[str] = frozenset()
    launch_image_id: str | None = None
    observe_errors: tuple[str, ...] = ()
    launch_unresolved: str | None = None
    #: the group's InstanceMaintenancePolicy as (MinHealthyPercentage, MaxHealthyPercentage), None when unset
    maintenance_policy: tuple[int, int] | None = None
    #: the group's AvailabilityZones (DescribeAutoScalingGroups); empty when not observed: the AZs of its
    #: instances stand in (``zones``)
    availability_zones: tuple[str, ...] = ()
    #: the size the group's warm pool is kept at (``warm_pool_size_for``); None: the group has no warm pool
    warm_pool_size: int | None = None
    #: the warm pool's instances (DescribeWarmPool), observed only for a group that has a pool
    warm: tuple[WarmInstance, ...] = ()

    def __post_init__(self) -> None:
        if self.now.tzinfo is None:
            raise ValueError("FleetState.now must be timezone-aware (UTC)")
        if not 0 <= self.min_size <= self.max_size:
            raise ValueError(f"min_size {self.min_size} / max_size {self.max_size} are inconsistent")
        ids = [i.instance_id for i in self.instances]
        if len(ids) != len(set(ids)):
            raise ValueError("an instance id appears twice in FleetState.instances")

    @property
    def members(self) -> tuple[Instance, ...]:
        """Instances still in the group (Terminated/Detached ones dropped)."""
        return tuple(i for i in self.instances if not i.gone)

    @property
    def live(self) -> tuple[Instance, ...]:
        """Instances counting toward desired capacity: Pending* and InService."""
        return tuple(i for i in self.instances if i.counts_toward_desired)

    @property
    def zones(self) -> tuple[str, ...]:
        """The group's AZs (sorted): its ``availability_zones``, and any AZ one of its instances is in."""
        return tuple(sorted(set(self.availability_zones) | {i.az for i in self.instances if i.az}))

    def az_counts(self) -> dict[str, int]:
        """Live instances (Pending and InService) per AZ of the group, zeros included."""
        counts = dict.fromkeys(self.zones, 0)
        for i in self.live:
            if i.az:
                counts[i.az] += 1
        return counts

    def by_id(self) -> dict[str, Instance]:
        return {i.instance_id: i for i in self.instances}
