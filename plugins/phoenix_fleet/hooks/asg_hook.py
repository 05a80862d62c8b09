"""AsgHook: a thin client for one AutoScaling group and what the rollout must see and do around it.

Observation (``observe``, ``async_observe``) is one *batched* sweep that builds the planner's
:class:`~phoenix_fleet.rollout.FleetState`:

1. ``DescribeAutoScalingGroups`` for the group (members, lifecycle, ASG health, capacity, target groups,
   suspended processes, protection, and the rollout record in its tags);
2. then, concurrently in the async path:

   * ``DescribeInstances`` (filter ``instance-id``, 200 ids a call) **only for members not seen before**:
     ``ImageId`` and ``LaunchTime`` never change for an instance, so the hook keeps them (``known``);
   * ``DescribeInstanceStatus`` (``IncludeAllInstances``, 100 ids a call, the API's limit) when the policy
     counts EC2 status checks;
   * ``DescribeTargetHealth`` once per attached target group when it counts ELB health;
   * ``DescribeAlarms`` once for the policy's alarms when it counts alarms;
   * ``DescribeLaunchTemplateVersions`` for the version the group launches (operator only; a numbered
     version is immutable and cached, ``$Latest``/``$Default`` are resolved each time);
   * ``DescribeWarmPool`` **only for a group with a warm pool** (DescribeAutoScalingGroups answers its
     ``WarmPoolConfiguration``), then ``DescribeInstances`` for warmed instances never seen before (their image);

So a steady health poll costs ``1 + ceil(N/100) + target groups`` calls (+1 with alarms, +1 with a warm pool),
whatever the fleet size. The calls are written once, as a generator of call batches (:func:`observation_calls`), that a sync
driver (boto3) and an async driver (aiobotocore, used by the triggers) both run: the same requests and the
same pure :func:`fleet_state_from` on both paths.

Actions: capacity (desired / min / max), terminate in the group (with or without decrementing desired),
suspend / resume processes, tags (the rollout record), the group's launch template version, exit standby,
scale-in protection, and instance refreshes.

Retries: unless the connection or ``config`` sets ``retries``, every client uses botocore's ``standard``
mode with 10 attempts (exponential backoff with jitter, for ``Throttling`` / ``RequestLimitExceeded`` and
transient errors). Set ``{"retries": {"mode": "adaptive"}}`` in the connection's ``config_kwargs`` (or
``botocore_config``) to add client-side rate limiting (see docs/recycle.md).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from phoenix_fleet.api_limiter import LimitedAsyncConnMixin, LimitedClientContext
from phoenix_fleet.aws_conn import StrictAwsConnMixin
from phoenix_fleet.rollout import (
    FleetState,
    Instance,
    Policy,
    RecordError,
    RolloutRecord,
    WarmInstance,
    warm_pool_size_for,
)
from phoenix_fleet.waiters import waiter_path

log = logging.getLogger(__name__)

SERVICES = ("autoscaling", "ec2", "elbv2", "cloudwatch")
DEFAULT_RETRIES = {"mode": "standard", "max_attempts": 10}
INSTANCES_PER_DESCRIBE = 200  # values in one DescribeInstances instance-id filter
IDS_PER_STATUS = 100  # DescribeInstanceStatus: at most 100 explicit instance ids
ALARMS_PER_DESCRIBE = 100
#: concurrent calls of one observation batch, or terminations of one batch (boto3 clients are thread-safe)
MAX_PARALLEL = 5
#: Auto Scaling's answers to a write that meets another change of the same group under way (ScalingActivityInProgress,
#: 400: botocore does not retry it; ResourceContention, 500: botocore's retries may run out): tried again after
#: these pauses (seconds), then the write fails as any other
CONTENTION_CODES = frozenset({"ScalingActivityInProgress", "ResourceContention"})
CONTENTION_PAUSES = (0.2, 0.5, 1.0, 2.0, 4.0)
#: instance refresh statuses during which another rollout must not start
REFRESH_ACTIVE = ("Pending", "InProgress", "Cancelling", "RollbackInProgress", "Baking")
_NOT_FOUND_ID = re.compile(r"i-[0-9a-f]+")
_AMI_ID = re.compile(r"^ami-[0-9a-f]{8,17}$")
_STATUS_ORDER = ("impaired", "insufficient-data", "initializing", "not-applicable")
#: custom endpoints known to lack the instance-refresh API (asked once per process)
_NO_REFRESH_API: set[str] = set()


class AsgNotFoundError(LookupError):
    """The AutoScaling group does not exist (in that account and region)."""


class InstanceRefreshUnsupported(RuntimeError):
    """The endpoint does not implement the instance-refresh API (the sandbox: moto lacks it)."""


def error_code(exc: BaseException) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def chunks(items: Sequence[str], size: int) -> list[list[str]]:
    return [list(items[k : k + size]) for k in range(0, len(items), size)]


# ------------------------------------------------------------------------------------------------------
# the observation, sans I/O


@dataclass(frozen=True)
class Call:
    """One AWS call of an observation: ``clients[service].<method>(**params)``. An error whose code is in
    ``tolerate`` answers a :class:`Tolerated` instead of raising."""

    service: str
    method: str
    params: Mapping[str, Any]
    tolerate: tuple[str, ...] = ()


@dataclass(frozen=True)
class Tolerated:
    """The answer of a call whose error was tolerated: what it hid becomes *unknown* in the observation (never
    "bad"). ``partial`` is what a narrower retry still answered (DescribeInstanceStatus without the ids that
    vanished), else None."""

    code: str
    message: str
    partial: Mapping[str, Any] | None = None

    def describe(self, what: str) -> str:
        text = " ".join(self.message.split())
        return f"{what}: {self.code}" + (f" ({text[:160]})" if text else "")


def _answer(resp: Any) -> Mapping[str, Any]:
    """A call's answer as a dict (a Tolerated error: what its retry answered, else nothing)."""
    if isinstance(resp, Tolerated):
        return resp.partial or {}
    return resp or {}


@dataclass(frozen=True)
class LaunchTemplateRef:
    """The launch template an ASG launches from. ``version`` is what the ASG names (``$Latest``,
    ``$Default`` or a number); ``number``/``image_id`` what it resolved to (None when not resolved)."""

    template_id: str | None
    template_name: str | None
    version: str
    mixed: bool = False
    number: int | None = None
    image_id: str | None = None

    @property
    def key(self) -> str:
        return str(self.template_id or self.template_name)

    def explicit(self, number: int | None = None) -> str | None:
        """``lt-0abc:7``: the explicit form the rollout record keeps (never $Latest/$Default)."""
        n = number if number is not None else self.number
        return f"{self.key}:{n}" if n is not None else None

    def spec(self) -> dict[str, str]:
        out = {"LaunchTemplateId": self.template_id} if self.template_id else {"LaunchTemplateName": str(self.template_name)}
        return out


@dataclass
class Observation:
    """One batched look at the group: the planner's state plus what the operator needs around it."""

    state: FleetState
    group: Mapping[str, Any]
    tags: dict[str, str]
    record: RolloutRecord | None
    record_error: str | None
    launch_template: LaunchTemplateRef | None
    calls: int
    known: dict[str, tuple[str, datetime]] = field(default_factory=dict)
    #: (member ids, target group ARNs) observed: the next observation asks their health in its first round
    shape: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())


def launch_template_of(group: Mapping[str, Any]) -> LaunchTemplateRef | None:
    """The group's launch template (plain, or a MixedInstancesPolicy's), or None (a launch configuration)."""
    spec = group.get("LaunchTemplate")
    mixed = False
    if not spec:
        spec = ((group.get("MixedInstancesPolicy") or {}).get("LaunchTemplate") or {}).get(
            "LaunchTemplateSpecification"
        )
        mixed = bool(spec)
    if not spec:
        return None
    return LaunchTemplateRef(
        template_id=spec.get("LaunchTemplateId"),
        template_name=spec.get("LaunchTemplateName"),
        version=str(spec.get("Version") or "$Default"),
        mixed=mixed,
    )


def launch_source(group: Mapping[str, Any]) -> str:
    """What a group without a launch template reports instead, for an error message."""
    if group.get("LaunchConfigurationName"):
        return f"launch configuration {group['LaunchConfigurationName']!r}, no launch template"
    mixed = group.get("MixedInstancesPolicy")
    if mixed:
        return f"a MixedInstancesPolicy without a launch template specification ({sorted(mixed)})"
    return "no LaunchTemplate, no MixedInstancesPolicy and no launch configuration"


def worst_status(entry: Mapping[str, Any] | None) -> str | None:
    """The worse of the system and instance status checks of a DescribeInstanceStatus entry."""
    if not entry:
        return None
    values = {
        (entry.get("InstanceStatus") or {}).get("Status"),
        (entry.get("SystemStatus") or {}).get("Status"),
    }
    for status in _STATUS_ORDER:
        if status in values:
            return status
    return "ok" if values == {"ok"} else None


def fleet_state_from(
    group: Mapping[str, Any],
    ec2_info: Mapping[str, tuple[str, datetime]],
    statuses: Mapping[str, str | None] | None,
    target_health: Mapping[str, Mapping[str, str]],
    alarms_in_alarm: Iterable[str],
    launch_image_id: str | None,
    now: datetime,
    *,
    unknown_target_groups: Iterable[str] = (),
    errors: Sequence[str] = (),
    launch_unresolved: str | None = None,
    warmed: Sequence[Mapping[str, Any]] | None = None,
) -> FleetState:
    """The planner's FleetState from raw describe results (pure).

    ``ec2_info``: instance id -> (EC2 ImageId, LaunchTime). A member EC2 does not describe (yet) is left
    out: the planner then sees the group below desired and waits rather than act on a guess.
    ``statuses``: instance id -> worst status check; an instance missing from it has status None (unknown:
    its chunk's DescribeInstanceStatus failed, or EC2 did not answer for it). None for the whole map: status
    checks not observed, reported "ok" (the policy does not count them: the planner ignores the field then).
    ``target_health``: target group ARN -> {instance id: state}; a member missing there is not registered.
    ``unknown_target_groups``: target groups whose DescribeTargetHealth failed (TargetGroupNotFound): every
    member's ELB health is then unknown (never "not registered"). ``errors``: the tolerated API errors.
    ``warmed``: DescribeWarmPool's instances (None: not asked, the group has no warm pool); like a member, a
    warmed instance EC2 does not describe (yet) is left out (the pool then looks short: the planner waits).
    """
    blind = frozenset({"elb"}) if set(unknown_target_groups) else frozenset()
    instances = []
    for member in group.get("Instances") or []:
        iid = member["InstanceId"]
        if iid not in ec2_info:
            continue
        image_id, launch_time = ec2_info[iid]
        instances.append(
            Instance(
                instance_id=iid,
                image_id=image_id,
                az=member.get("AvailabilityZone", ""),
                lifecycle=member.get("LifecycleState", "Pending"),
                launch_time=launch_time,
                asg_health=member.get("HealthStatus", "Healthy"),
                target_health={tg: th[iid] for tg, th in target_health.items() if iid in th},
                status=statuses.get(iid) if statuses is not None else "ok",
                protected=bool(member.get("ProtectedFromScaleIn")),
                unknown=blind,
            )
        )
    return FleetState(
        asg_name=group["AutoScalingGroupName"],
        desired=int(group["DesiredCapacity"]),
        min_size=int(group["MinSize"]),
        max_size=int(group["MaxSize"]),
        instances=tuple(instances),
        now=now,
        target_group_arns=tuple(group.get("TargetGroupARNs") or ()),
        health_check_type=group.get("HealthCheckType", "EC2"),
        alarms_in_alarm=frozenset(alarms_in_alarm),
        suspended_processes=frozenset(p["ProcessName"] for p in group.get("SuspendedProcesses") or []),
        launch_image_id=launch_image_id,
        observe_errors=tuple(errors),
        launch_unresolved=launch_unresolved,
        maintenance_policy=maintenance_policy_of(group),
        availability_zones=tuple(sorted(group.get("AvailabilityZones") or ())),
        warm_pool_size=warm_pool_size_for(group.get("WarmPoolConfiguration"), int(group["MaxSize"]),
                                          int(group["DesiredCapacity"])),
        warm=tuple(
            WarmInstance(w["InstanceId"], ec2_info[w["InstanceId"]][0], str(w.get("LifecycleState") or ""),
                         ec2_info[w["InstanceId"]][1])
            for w in warmed or () if w["InstanceId"] in ec2_info
        ),
    )


def maintenance_policy_of(group: Mapping[str, Any]) -> tuple[int, int] | None:
    """(MinHealthyPercentage, MaxHealthyPercentage) of the group's InstanceMaintenancePolicy; None when unset
    (AWS: absent, or both -1)."""
    imp = group.get("InstanceMaintenancePolicy") or {}
    lo, hi = imp.get("MinHealthyPercentage"), imp.get("MaxHealthyPercentage")
    if lo is None or hi is None or (int(lo), int(hi)) == (-1, -1):
        return None
    return int(lo), int(hi)


_LOADER: Any = None


def _share_loader(session: Any) -> None:
    """Every aiobotocore session of this process shares one botocore loader: the service models (ec2's is
    megabytes of JSON) are parsed once per process, not once per trigger. Read-only API models only."""
    global _LOADER
    try:
        if _LOADER is None:
            _LOADER = session.get_component("data_loader")
        else:
            session.register_component("data_loader", _LOADER)
    except Exception:  # noqa: BLE001 - a session without components: no sharing, nothing else changes
        pass


def utcnow() -> datetime:
    return datetime.now(UTC)


def observation_calls(
    asg_name: str,
    policy: Policy,
    *,
    known: Mapping[str, tuple[str, datetime]] | None = None,
    lt_cache: dict[tuple[str, int], str] | None = None,
    resolve_launch_template: bool = True,
    now: Callable[[], datetime] = utcnow,
    expect: tuple[Sequence[str], Sequence[str]] | None = None,
) -> Generator[list[Call], list[Any], Observation]:
    """The observation as batches of calls: yields a list of calls, receives their responses (same order),
    returns the Observation. Run by ``AsgHook.observe`` (boto3) and ``AsgHook.async_observe`` (aiobotocore).

    ``expect`` = (member ids, target group ARNs) of the previous observation: their status checks and target
    health are asked *with* DescribeAutoScalingGroups, in one round (a poll waits for one answer, not two); only
    members or target groups that are new are asked in a second round (with DescribeInstances for members never
    seen). Alarms never depend on the group: always in the first round. The calls are the same in number."""
    known = dict(known or {})
    lt_cache = lt_cache if lt_cache is not None else {}
    status_on, elb_on = policy.uses("ec2_status"), policy.uses("elb")
    exp_ids, exp_tgs = (list(expect[0]), list(expect[1])) if expect is not None else ([], [])

    def status_calls(ids: Sequence[str]) -> list[Call]:
        return [
            Call("ec2", "describe_instance_status", {"InstanceIds": part, "IncludeAllInstances": True},
                 tolerate=("InvalidInstanceID.NotFound",))
            for part in chunks(list(ids), IDS_PER_STATUS)
        ] if status_on else []

    def tg_calls(tgs: Sequence[str]) -> list[Call]:
        return [Call("elbv2", "describe_target_health", {"TargetGroupArn": tg}, tolerate=("TargetGroupNotFound",))
                for tg in tgs] if elb_on else []

    alarm_names = list(policy.alarms) if policy.uses("alarms") else []
    first = [Call("autoscaling", "describe_auto_scaling_groups", {"AutoScalingGroupNames": [asg_name]})]
    first += status_calls(exp_ids) + tg_calls(exp_tgs)
    first += [
        Call("cloudwatch", "describe_alarms",
             {"AlarmNames": part, "AlarmTypes": ["MetricAlarm", "CompositeAlarm"], "MaxRecords": ALARMS_PER_DESCRIBE})
        for part in chunks(alarm_names, ALARMS_PER_DESCRIBE)
    ]
    calls_made = len(first)
    answers: list[tuple[Call, Any]] = list(zip(first, (yield first), strict=True))
    resp = answers.pop(0)[1]
    groups = (resp or {}).get("AutoScalingGroups") or []
    if not groups:
        raise AsgNotFoundError(
            f"asg_name: AutoScaling group {asg_name!r} does not exist. Fix: check the name and the region/connection"
        )
    group = groups[0]
    ids = [m["InstanceId"] for m in group.get("Instances") or []]
    tgs = list(group.get("TargetGroupARNs") or []) if elb_on else []
    prior = known
    known = {i: v for i, v in known.items() if i in ids}

    second: list[Call] = []
    unknown = [i for i in ids if i not in known]
    for part in chunks(unknown, INSTANCES_PER_DESCRIBE):
        second.append(Call("ec2", "describe_instances", {"Filters": [{"Name": "instance-id", "Values": part}]}))
    asked_ids = set(exp_ids)
    second += status_calls([i for i in ids if i not in asked_ids])
    second += tg_calls([tg for tg in tgs if tg not in exp_tgs])
    lt = launch_template_of(group)
    if resolve_launch_template and lt is not None:
        if lt.version.isdigit() and (lt.key, int(lt.version)) in lt_cache:
            lt = _replace_lt(lt, int(lt.version), lt_cache[(lt.key, int(lt.version))])
        else:
            second.append(Call("ec2", "describe_launch_template_versions", {**lt.spec(), "Versions": [lt.version]}))
    # a group with a warm pool (DescribeAutoScalingGroups answers its WarmPoolConfiguration) is asked for its warmed
    # instances too; a group without one pays no extra call
    has_pool = bool(group.get("WarmPoolConfiguration"))
    if has_pool:
        second.append(Call("autoscaling", "describe_warm_pool", {"AutoScalingGroupName": asg_name}))
    if second:
        calls_made += len(second)
        answers += list(zip(second, (yield second), strict=True))

    errors: list[str] = []
    statuses: dict[str, str | None] | None = {} if status_on else None
    target_health: dict[str, dict[str, str]] = {}
    unknown_tgs: list[str] = []
    firing: set[str] = set()
    unresolved: str | None = None
    members = set(ids)
    warmed: list[Mapping[str, Any]] | None = [] if has_pool else None
    while answers:
        call, answer = answers.pop(0)
        if call.method == "describe_instances":  # page on if AWS paginated (rare without MaxResults)
            for reservation in (answer or {}).get("Reservations") or []:
                for inst in reservation.get("Instances") or []:
                    known[inst["InstanceId"]] = (inst["ImageId"], inst["LaunchTime"])
        elif call.method == "describe_instance_status":
            assert statuses is not None
            if isinstance(answer, Tolerated):  # those instances' status checks are unknown, not bad
                errors.append(answer.describe(f"DescribeInstanceStatus ({len(call.params['InstanceIds'])} instances)"))
            for entry in _answer(answer).get("InstanceStatuses") or []:
                if entry["InstanceId"] in members:
                    statuses[entry["InstanceId"]] = worst_status(entry)
        elif call.method == "describe_target_health":
            tg = call.params["TargetGroupArn"]
            if tg not in tgs:
                continue  # detached since the previous observation
            if isinstance(answer, Tolerated):  # every member's ELB health is unknown, not "not registered"
                unknown_tgs.append(tg)
                errors.append(answer.describe(f"DescribeTargetHealth {tg.rsplit(':', 1)[-1]}"))
                continue
            target_health[tg] = {
                d["Target"]["Id"]: d["TargetHealth"]["State"] for d in _answer(answer).get("TargetHealthDescriptions") or []
            }
        elif call.method == "describe_alarms":  # DescribeAlarms pages by MaxRecords + NextToken
            for kind in ("MetricAlarms", "CompositeAlarms"):
                firing |= {a["AlarmName"] for a in _answer(answer).get(kind) or [] if a.get("StateValue") == "ALARM"}
        elif call.method == "describe_launch_template_versions" and lt is not None:
            versions = (answer or {}).get("LaunchTemplateVersions") or []
            if not versions:
                unresolved = f"version {lt.version} of launch template {lt.key} not found"
            if versions:
                v = versions[0]
                image = (v.get("LaunchTemplateData") or {}).get("ImageId")
                number = int(v["VersionNumber"])
                lt = _replace_lt(lt, number, image)
                if image:
                    lt_cache[(lt.key, number)] = image
        elif call.method == "describe_warm_pool" and warmed is not None:  # pages by MaxRecords + NextToken
            warmed += list((answer or {}).get("Instances") or [])
        token = (_answer(answer).get("NextToken")
                 if call.method in ("describe_instances", "describe_alarms", "describe_warm_pool") else None)
        if token:
            follow = Call(call.service, call.method, {**call.params, "NextToken": token})
            (more,) = yield [follow]
            calls_made += 1
            answers.append((follow, more))

    if warmed:  # the image of each warmed instance, from EC2 (never from its launch template version)
        warm_ids = [w["InstanceId"] for w in warmed]
        known.update({i: prior[i] for i in warm_ids if i in prior})
        third = [Call("ec2", "describe_instances", {"Filters": [{"Name": "instance-id", "Values": part}]})
                 for part in chunks([i for i in warm_ids if i not in known], INSTANCES_PER_DESCRIBE)]
        while third:
            calls_made += len(third)
            replies = yield third
            follow = []
            for call, answer in zip(third, replies, strict=True):
                for reservation in (answer or {}).get("Reservations") or []:
                    for inst in reservation.get("Instances") or []:
                        known[inst["InstanceId"]] = (inst["ImageId"], inst["LaunchTime"])
                token = (answer or {}).get("NextToken")
                if token:
                    follow.append(Call(call.service, call.method, {**call.params, "NextToken": token}))
            third = follow

    if resolve_launch_template and lt is None:
        unresolved = f"the group reports {launch_source(group)}"

    tags = {t["Key"]: t.get("Value", "") for t in group.get("Tags") or []}
    record: RolloutRecord | None = None
    record_error: str | None = None
    try:
        record = RolloutRecord.from_tags(tags)
    except RecordError as exc:
        record_error = str(exc)
    launch_image = lt.image_id if (lt is not None and resolve_launch_template) else None
    if lt is not None and resolve_launch_template and lt.number is not None and not launch_image:
        unresolved = f"version {lt.number} of launch template {lt.key} names no ImageId"
    if launch_image is not None and launch_image.startswith("resolve:ssm:"):
        launch_image = None  # an SSM-parameter AMI: trusted, not resolved here
    state = fleet_state_from(
        group, known, statuses, target_health, firing, launch_image, now(),
        unknown_target_groups=unknown_tgs, errors=errors, launch_unresolved=unresolved, warmed=warmed,
    )
    return Observation(
        state=state,
        group=group,
        tags=tags,
        record=record,
        record_error=record_error,
        launch_template=lt,
        calls=calls_made,
        known=known,
        shape=(tuple(ids), tuple(tgs)),
    )


def _replace_lt(lt: LaunchTemplateRef, number: int, image: str | None) -> LaunchTemplateRef:
    return LaunchTemplateRef(lt.template_id, lt.template_name, lt.version, lt.mixed, number, image)


# ------------------------------------------------------------------------------------------------------
# the hook


class AsgHook(LimitedAsyncConnMixin, StrictAwsConnMixin, AwsBaseHook):  # an unknown aws_conn_id fails (aws_conn.py)
    """AutoScaling (the hook's own client) plus EC2, ELBv2 and CloudWatch clients from the same connection.

    ``known`` caches each member's (ImageId, LaunchTime) across observations; ``lt_cache`` the image of
    numbered launch-template versions. ``calls`` counts the observation calls this hook made.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["client_type"] = "autoscaling"
        super().__init__(*args, **kwargs)
        self._clients: dict[str, Any] = {}
        self.known: dict[str, tuple[str, datetime]] = {}
        #: (member ids, target group ARNs) of the last observation (see observation_calls' ``expect``)
        self.expect: tuple[Sequence[str], Sequence[str]] | None = None
        self.lt_cache: dict[tuple[str, int], str] = {}
        self.calls = 0
        self._refresh_unsupported_logged = False
        self._config_built: Config | None = None

    # ------------------------------------------------------------------ clients

    @cached_property
    def waiter_path(self) -> Any:  # type: ignore[override]
        return waiter_path("autoscaling")

    def _get_config(self, config: Config | None = None) -> Config:
        """The hook's botocore config (standard retries unless the connection says otherwise). Built once and
        shared by the clients of every service: the provider's user agent walks ``inspect.stack()`` (source
        lines of every frame), ~0.1-0.2 s of CPU each time in a task process."""
        if config is None and self._config_built is not None:
            return self._config_built
        cfg = super()._get_config(config)
        if not getattr(cfg, "retries", None):
            cfg = cfg.merge(Config(retries=dict(DEFAULT_RETRIES)))
        if config is None:
            self._config_built = cfg
        return cfg

    @cached_property
    def session(self) -> Any:
        from phoenix_fleet.hooks.image_hook import _share_model_loader

        # one botocore loader per process: service models are big JSON (~0.3 s each to load)
        return _share_model_loader(self.get_session(region_name=self.region_name))

    def client(self, service: str) -> Any:
        """A boto3 client of ``service`` (same connection, region, endpoint, retries), cached."""
        if service not in self._clients:
            self._clients[service] = self.session.client(
                service_name=service,
                endpoint_url=self.conn_config.get_service_endpoint_url(service_name=service),
                config=self._get_config(),
                verify=self.verify,
            )
        return self._clients[service]

    @property
    def autoscaling(self) -> Any:
        return self.client("autoscaling")

    @property
    def ec2(self) -> Any:
        return self.client("ec2")

    def _async_setup(self, services: Sequence[str]) -> tuple[Any, Config, dict[str, str | None], Any]:
        """Everything sync the async clients need (the connection lookup included), for a worker thread."""
        session = self.get_session(region_name=self.region_name, deferrable=True)
        _share_loader(session)  # a trigger per wait: never parse the (big) service models again
        endpoints = {s: self.conn_config.get_service_endpoint_url(service_name=s) for s in services}
        return session, self._get_config(), endpoints, self.verify

    @asynccontextmanager
    async def async_clients(self, services: Iterable[str] = SERVICES) -> Any:
        """aiobotocore clients for ``services`` (a dict), closed on exit. For triggers: the connection lookup
        and the session are built in a thread (``sync_to_async``), never on the triggerer's event loop."""
        from asgiref.sync import sync_to_async

        wanted = list(services)
        session, config, endpoints, verify = await sync_to_async(self._async_setup)(wanted)
        limiter = self.api_limiter()  # the triggerer's budget of this connection and region (api_limiter)
        async with AsyncExitStack() as stack:
            clients = {}
            for service in wanted:
                clients[service] = await stack.enter_async_context(
                    LimitedClientContext(
                        session.create_client(
                            service_name=service, endpoint_url=endpoints[service], config=config, verify=verify
                        ),
                        limiter,
                    )
                )
            yield clients

    # ------------------------------------------------------------------ observation

    def _invoke(self, call: Call, clients: Mapping[str, Any] | None = None) -> Any:
        client = clients[call.service] if clients is not None else self.client(call.service)
        try:
            return getattr(client, call.method)(**call.params)
        except ClientError as exc:
            if error_code(exc) in call.tolerate:
                return self._tolerated(call, exc, clients)
            raise

    def _tolerated(self, call: Call, exc: ClientError, clients: Mapping[str, Any] | None) -> Tolerated:
        """A tolerated error: what it hides is unknown. An instance id that vanished between the two describes:
        describe the rest (once); the vanished ones stay unknown until the group drops them."""
        tolerated = Tolerated(error_code(exc), str(exc.response.get("Error", {}).get("Message", "")))
        if call.method == "describe_instance_status":
            gone = set(_NOT_FOUND_ID.findall(str(exc)))
            rest = [i for i in call.params["InstanceIds"] if i not in gone]
            if rest and gone:
                client = clients[call.service] if clients is not None else self.client(call.service)
                try:
                    partial = client.describe_instance_status(**{**call.params, "InstanceIds": rest})
                    return Tolerated(tolerated.code, tolerated.message, partial)
                except ClientError:
                    pass
        return tolerated

    def _invoke_all(self, calls: Sequence[Call]) -> list[Any]:
        """The calls of one batch, concurrently in threads when there are several (answers in order)."""
        if len(calls) <= 1:
            return [self._invoke(c) for c in calls]
        for c in calls:  # create the clients here, not racing in the threads
            self.client(c.service)
        with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(calls))) as pool:
            return list(pool.map(self._invoke, calls))

    async def _ainvoke(self, call: Call, clients: Mapping[str, Any]) -> Any:
        client = clients[call.service]
        try:
            return await getattr(client, call.method)(**call.params)
        except ClientError as exc:
            if error_code(exc) not in call.tolerate:
                raise
            tolerated = Tolerated(error_code(exc), str(exc.response.get("Error", {}).get("Message", "")))
            if call.method == "describe_instance_status":
                gone = set(_NOT_FOUND_ID.findall(str(exc)))
                rest = [i for i in call.params["InstanceIds"] if i not in gone]
                if rest and gone:
                    try:
                        partial = await client.describe_instance_status(**{**call.params, "InstanceIds": rest})
                        return Tolerated(tolerated.code, tolerated.message, partial)
                    except ClientError:
                        pass
            return tolerated

    def observe(
        self, asg_name: str, policy: Policy, *, resolve_launch_template: bool = True, now: Callable[[], datetime] = utcnow
    ) -> Observation:
        """One batched observation through boto3 (calls of a batch run one after the other)."""
        gen = observation_calls(
            asg_name, policy, known=self.known, lt_cache=self.lt_cache,
            resolve_launch_template=resolve_launch_template, now=now, expect=self.expect,
        )
        try:
            batch = next(gen)
            while True:
                batch = gen.send(self._invoke_all(batch))
        except StopIteration as stop:
            obs: Observation = stop.value
        self.known = obs.known
        self.expect = obs.shape
        self.calls += obs.calls
        return obs

    async def async_observe(
        self,
        clients: Mapping[str, Any],
        asg_name: str,
        policy: Policy,
        *,
        resolve_launch_template: bool = False,
        now: Callable[[], datetime] = utcnow,
    ) -> Observation:
        """The same observation through aiobotocore ``clients``; the calls of a batch run concurrently."""
        gen = observation_calls(
            asg_name, policy, known=self.known, lt_cache=self.lt_cache,
            resolve_launch_template=resolve_launch_template, now=now, expect=self.expect,
        )
        try:
            batch = next(gen)
            while True:
                results = await asyncio.gather(*(self._ainvoke(c, clients) for c in batch))
                batch = gen.send(list(results))
        except StopIteration as stop:
            obs: Observation = stop.value
        self.known = obs.known
        self.expect = obs.shape
        self.calls += obs.calls
        return obs

    def describe_group(self, asg_name: str) -> dict[str, Any]:
        """The group as DescribeAutoScalingGroups answers now (one call); AsgNotFoundError when it is gone."""
        groups = self.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[asg_name])["AutoScalingGroups"]
        if not groups:
            raise AsgNotFoundError(f"asg_name: AutoScaling group {asg_name!r} does not exist")
        return dict(groups[0])

    def lifecycle_hooks(self, asg_name: str) -> list[dict[str, Any]]:
        """The group's lifecycle hooks (DescribeLifecycleHooks, one call)."""
        return list(self.autoscaling.describe_lifecycle_hooks(AutoScalingGroupName=asg_name).get("LifecycleHooks") or [])

    def desired_capacity(self, asg_name: str) -> int:
        """The group's desired capacity now (read right before a capacity write)."""
        return int(self.describe_group(asg_name)["DesiredCapacity"])

    def record_of(self, asg_name: str) -> RolloutRecord | None:
        """The rollout record in the group's tags (one DescribeAutoScalingGroups); RecordError when malformed."""
        return RolloutRecord.from_tags(self.describe_group(asg_name).get("Tags") or [])

    # ------------------------------------------------------------------ launch templates and images

    def launch_template_versions(self, lt: LaunchTemplateRef, versions: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Versions of the template (all of them when ``versions`` is None), newest first."""
        params: dict[str, Any] = dict(lt.spec())
        if versions is not None:
            params["Versions"] = list(versions)
        out: list[dict[str, Any]] = []
        while True:
            resp = self.ec2.describe_launch_template_versions(**params)
            out += resp.get("LaunchTemplateVersions") or []
            token = resp.get("NextToken")
            if not token:  # AWS pages named versions too (MaxResults 1..200)
                break
            params["NextToken"] = token
        for v in out:
            image = (v.get("LaunchTemplateData") or {}).get("ImageId")
            if image:
                self.lt_cache[(lt.key, int(v["VersionNumber"]))] = image
        return sorted(out, key=lambda v: -int(v["VersionNumber"]))

    def resolve_ssm_image(self, image: str) -> str:
        """``resolve:ssm:<name>[:version|label]`` (a launch template's ImageId) -> the AMI id the parameter holds
        now (SSM GetParameter). ValueError when its value is not an AMI id; ClientError when it cannot be read."""
        name = image[len("resolve:ssm:"):] if image.startswith("resolve:ssm:") else image
        value = str(self.client("ssm").get_parameter(Name=name)["Parameter"]["Value"]).strip()
        if not _AMI_ID.match(value):
            raise ValueError(f"parameter {name} holds {value[:60]!r}, not an AMI id")
        return value

    def image_labels(self, image_ids: Iterable[str]) -> dict[str, str]:
        """AMI id -> its ``phoenix:version`` tag (best effort: missing or unreadable images are left out)."""
        ids = sorted({i for i in image_ids if i})
        if not ids:
            return {}
        try:
            images = self.ec2.describe_images(ImageIds=ids)["Images"]
        except ClientError as exc:
            log.info("Could not read image labels of %s: %s", ", ".join(ids), error_code(exc) or exc)
            return {}
        out = {}
        for image in images:
            tags = {t["Key"]: t["Value"] for t in image.get("Tags") or []}
            if tags.get("phoenix:version"):
                out[image["ImageId"]] = tags["phoenix:version"]
        return out

    # ------------------------------------------------------------------ actions
    #
    # Every write is checked when it fails: a reply can be lost after AWS applied the write (a throttle or a
    # timeout on the way back, then botocore's retry, or our retry, meets what the first one did). Before a
    # failed write is called failed, the group is looked at again (one describe): when it shows the write
    # done, it is done.

    def _checked(self, what: str, write: Callable[[], Any], done: Callable[[], bool]) -> Any:
        try:
            return self._through_contention(what, write)
        except (ClientError, BotoCoreError, ResponseParserError) as exc:
            try:
                landed = done()
            except (ClientError, BotoCoreError, ResponseParserError):
                landed = False
            if not landed:
                raise
            log.warning("%s failed (%s) but the group shows it done (a lost reply): going on", what,
                        error_code(exc) or type(exc).__name__)
            return None

    @staticmethod
    def _through_contention(what: str, write: Callable[[], Any]) -> Any:
        """``write()``, tried again after each of CONTENTION_PAUSES while Auto Scaling answers that another change
        of the group is under way (e.g. the terminations of one batch, sent concurrently)."""
        for pause in (*CONTENTION_PAUSES, None):
            try:
                return write()
            except ClientError as exc:
                if pause is None or error_code(exc) not in CONTENTION_CODES:
                    raise
                log.info("%s: %s; trying again in %.1fs", what, error_code(exc), pause)
                time.sleep(pause)
        raise AssertionError("unreachable")  # pragma: no cover

    def _group_now(self, asg_name: str) -> dict[str, Any]:
        return self.describe_group(asg_name)

    def set_capacity(
        self, asg_name: str, *, desired: int | None = None, min_size: int | None = None, max_size: int | None = None
    ) -> None:
        """UpdateAutoScalingGroup with only the given sizes (one call)."""
        params: dict[str, Any] = {"AutoScalingGroupName": asg_name}
        if min_size is not None:
            params["MinSize"] = int(min_size)
        if max_size is not None:
            params["MaxSize"] = int(max_size)
        if desired is not None:
            params["DesiredCapacity"] = int(desired)
        if len(params) > 1:

            def done() -> bool:
                g = self._group_now(asg_name)
                return all(g.get(k) == v for k, v in params.items() if k != "AutoScalingGroupName")

            self._checked(f"UpdateAutoScalingGroup {params}", lambda: self.autoscaling.update_auto_scaling_group(**params),
                          done)

    def set_desired_capacity(self, asg_name: str, desired: int) -> None:
        self._checked(
            f"SetDesiredCapacity {asg_name} {desired}",
            lambda: self.autoscaling.set_desired_capacity(
                AutoScalingGroupName=asg_name, DesiredCapacity=int(desired), HonorCooldown=False
            ),
            lambda: int(self._group_now(asg_name)["DesiredCapacity"]) == int(desired),
        )

    def terminate_instance(self, instance_id: str, *, decrement_desired: bool) -> bool:
        """TerminateInstanceInAutoScalingGroup; False when the instance is already gone or terminating (AWS: a
        ValidationError, e.g. a retry after a lost reply)."""

        def write() -> bool:
            self.autoscaling.terminate_instance_in_auto_scaling_group(
                InstanceId=instance_id, ShouldDecrementDesiredCapacity=bool(decrement_desired)
            )
            return True

        def done() -> bool:
            found = self.autoscaling.describe_auto_scaling_instances(InstanceIds=[instance_id])
            states = [i.get("LifecycleState", "") for i in found.get("AutoScalingInstances") or []]
            return not states or all(s.startswith(("Terminat", "Warmed:Terminat")) for s in states)

        try:
            return bool(self._checked(f"TerminateInstanceInAutoScalingGroup {instance_id}", write, done) is not False)
        except ClientError as exc:
            text = str(exc).lower()
            if error_code(exc) == "ValidationError" and ("not found" in text or "terminat" in text):
                log.info("%s is already gone or terminating: %s", instance_id, exc)
                return False
            raise

    def terminate_instances(self, instance_ids: Sequence[str], *, decrement_desired: bool) -> list[str]:
        """``terminate_instance`` for each id (one instance a call), up to MAX_PARALLEL at once; the ids
        terminated, in the order given. After a failure no further termination starts (those under way finish),
        then the first failure is raised: what landed is for the next observation to see."""
        ids = list(instance_ids)
        if len(ids) <= 1:
            return [i for i in ids if self.terminate_instance(i, decrement_desired=decrement_desired)]
        self.client("autoscaling")  # created here, not racing in the threads
        results: dict[str, bool] = {}
        failure: BaseException | None = None
        queue = iter(ids)
        running: dict[Any, str] = {}
        with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(ids))) as pool:

            def start_next() -> None:
                instance_id = next(queue, None)
                if instance_id is not None:
                    running[pool.submit(self.terminate_instance, instance_id, decrement_desired=decrement_desired)] = (
                        instance_id
                    )

            for _ in range(min(MAX_PARALLEL, len(ids))):
                start_next()
            while running:
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in finished:
                    instance_id = running.pop(future)
                    try:
                        results[instance_id] = future.result()
                    except BaseException as exc:  # noqa: BLE001 - a worker's kill too: stop, then raise it
                        failure = failure or exc
                    if failure is None:
                        start_next()
        if failure is not None:
            raise failure
        return [i for i in ids if results.get(i)]

    def _suspended(self, asg_name: str) -> set[str]:
        return {p["ProcessName"] for p in self._group_now(asg_name).get("SuspendedProcesses") or []}

    def suspend_processes(self, asg_name: str, processes: Sequence[str]) -> None:
        if processes:
            self._checked(
                f"SuspendProcesses {' '.join(processes)}",
                lambda: self.autoscaling.suspend_processes(AutoScalingGroupName=asg_name, ScalingProcesses=list(processes)),
                lambda: set(processes) <= self._suspended(asg_name),
            )

    def resume_processes(self, asg_name: str, processes: Sequence[str]) -> None:
        if processes:
            self._checked(
                f"ResumeProcesses {' '.join(processes)}",
                lambda: self.autoscaling.resume_processes(AutoScalingGroupName=asg_name, ScalingProcesses=list(processes)),
                lambda: not set(processes) & self._suspended(asg_name),
            )

    def _tags_now(self, asg_name: str) -> dict[str, str]:
        return {t["Key"]: t.get("Value", "") for t in self._group_now(asg_name).get("Tags") or []}

    def put_tags(self, asg_name: str, tags: Mapping[str, str]) -> None:
        """CreateOrUpdateTags on the group, PropagateAtLaunch=False (the record is not for instances)."""
        if tags:
            self._checked(
                f"CreateOrUpdateTags {', '.join(tags)}",
                lambda: self.autoscaling.create_or_update_tags(
                    Tags=[
                        {"ResourceId": asg_name, "ResourceType": "auto-scaling-group", "Key": k, "Value": v,
                         "PropagateAtLaunch": False}
                        for k, v in tags.items()
                    ]
                ),
                lambda: all(self._tags_now(asg_name).get(k) == v for k, v in tags.items()),
            )

    def delete_tags(self, asg_name: str, keys: Iterable[str]) -> None:
        keys = list(keys)
        if keys:
            self._checked(
                f"DeleteTags {', '.join(keys)}",
                lambda: self.autoscaling.delete_tags(
                    Tags=[{"ResourceId": asg_name, "ResourceType": "auto-scaling-group", "Key": k} for k in keys]
                ),
                lambda: not set(keys) & set(self._tags_now(asg_name)),
            )

    def set_launch_template(self, asg_name: str, lt: LaunchTemplateRef, version: int) -> None:
        """Point the group at an explicit version of its template (plain or in its MixedInstancesPolicy)."""
        spec = {**lt.spec(), "Version": str(int(version))}

        def write() -> None:
            if lt.mixed:
                self.autoscaling.update_auto_scaling_group(
                    AutoScalingGroupName=asg_name,
                    MixedInstancesPolicy={"LaunchTemplate": {"LaunchTemplateSpecification": spec}},
                )
            else:
                self.autoscaling.update_auto_scaling_group(AutoScalingGroupName=asg_name, LaunchTemplate=spec)

        def done() -> bool:
            now = launch_template_of(self._group_now(asg_name))
            return now is not None and now.key == lt.key and now.version == str(int(version))

        self._checked(f"UpdateAutoScalingGroup LaunchTemplate {lt.key}:{version}", write, done)

    def _members(self, asg_name: str) -> dict[str, dict[str, Any]]:
        return {i["InstanceId"]: i for i in self._group_now(asg_name).get("Instances") or []}

    def exit_standby(self, asg_name: str, instance_ids: Sequence[str]) -> None:
        if instance_ids:

            def done() -> bool:
                members = self._members(asg_name)
                return all(i in members and members[i].get("LifecycleState") != "Standby" for i in instance_ids)

            self._checked(
                f"ExitStandby {' '.join(instance_ids)}",
                lambda: self.autoscaling.exit_standby(AutoScalingGroupName=asg_name, InstanceIds=list(instance_ids)),
                done,
            )

    def set_instance_protection(self, asg_name: str, instance_ids: Sequence[str], protected: bool) -> None:
        if instance_ids:

            def done() -> bool:
                members = self._members(asg_name)
                return all(bool(members.get(i, {}).get("ProtectedFromScaleIn")) == protected for i in instance_ids)

            self._checked(
                f"SetInstanceProtection {' '.join(instance_ids)}",
                lambda: self.autoscaling.set_instance_protection(
                    AutoScalingGroupName=asg_name, InstanceIds=list(instance_ids), ProtectedFromScaleIn=bool(protected)
                ),
                done,
            )

    # ------------------------------------------------------------------ instance refresh

    def instance_refreshes(self, asg_name: str) -> list[dict[str, Any]]:
        """DescribeInstanceRefreshes (newest first). Raises InstanceRefreshUnsupported where the endpoint
        lacks the API: the sandbox (moto answers an HTML 500, botocore a parse error). Only a custom endpoint
        can answer that way; against AWS the error is raised as is."""
        endpoint = self.conn_config.get_service_endpoint_url(service_name="autoscaling")
        if endpoint and endpoint in _NO_REFRESH_API:
            raise InstanceRefreshUnsupported(f"{endpoint} does not implement DescribeInstanceRefreshes")
        try:
            resp = self.autoscaling.describe_instance_refreshes(AutoScalingGroupName=asg_name)
        except ResponseParserError as exc:
            if endpoint and "<html" in str(exc).lower():
                _NO_REFRESH_API.add(endpoint)
                raise InstanceRefreshUnsupported(f"{endpoint} does not implement DescribeInstanceRefreshes") from None
            raise
        return list(resp.get("InstanceRefreshes") or [])

    def active_instance_refresh(self, asg_name: str) -> dict[str, Any] | None:
        """The instance refresh in progress on the group, or None (also where the API is missing: logged once)."""
        try:
            refreshes = self.instance_refreshes(asg_name)
        except InstanceRefreshUnsupported as exc:
            if not self._refresh_unsupported_logged:
                self.log.info("%s: treating it as no instance refresh in progress (the sandbox lacks the API)", exc)
                self._refresh_unsupported_logged = True
            return None
        for refresh in refreshes:
            if refresh.get("Status") in REFRESH_ACTIVE:
                return refresh
        return None

    def cancel_instance_refresh(self, asg_name: str) -> str | None:
        """CancelInstanceRefresh: the id of the refresh being cancelled, or None when none is active."""
        try:
            resp = self.autoscaling.cancel_instance_refresh(AutoScalingGroupName=asg_name)
        except ClientError as exc:
            if error_code(exc) == "ActiveInstanceRefreshNotFound":
                return None
            raise
        return str(resp.get("InstanceRefreshId") or "") or None

    def instance_refresh_status(self, asg_name: str, refresh_id: str) -> str | None:
        """The status of one instance refresh (None when AWS does not list it)."""
        resp = self.autoscaling.describe_instance_refreshes(AutoScalingGroupName=asg_name, InstanceRefreshIds=[refresh_id])
        refreshes = resp.get("InstanceRefreshes") or []
        return str(refreshes[0].get("Status")) if refreshes else None

    def start_instance_refresh(
        self, asg_name: str, preferences: Mapping[str, Any], desired_configuration: Mapping[str, Any] | None = None
    ) -> str:
        params: dict[str, Any] = {
            "AutoScalingGroupName": asg_name,
            "Strategy": "Rolling",
            "Preferences": dict(preferences),
        }
        if desired_configuration:
            params["DesiredConfiguration"] = dict(desired_configuration)
        return str(self.autoscaling.start_instance_refresh(**params)["InstanceRefreshId"])
