"""Realism extensions for the sandbox cloud: configuration, runtime state and the request scope.

moto answers instantly and never fails (see ``shared/notes/moto.md``). The sandbox adds, each opt-in:

* **latencies** (:class:`Latency`), each either time-based (``{"seconds": 20}``, the interactive sandbox) or
  describe-count-based (``{"describes": 2}``, tests: no sleeping, fully deterministic):

  - ``instance_boot``: EC2 ``pending`` -> ``running``; AutoScaling ``Pending`` -> ``InService``;
    ELBv2 target ``initial`` (``Elb.RegistrationInProgress``) while the instance is pending;
  - ``instance_status_checks``: DescribeInstanceStatus ``initializing`` -> ``ok`` once running;
  - ``target_health_checks``: target ``initial`` (``Elb.InitialHealthChecking``) -> ``healthy`` once running;
  - ``image_build``: AMI ``pending`` -> ``available`` (or ``failed``, see below) for create/copy/register_image;
  - ``ssm_command``: Run Command invocation ``InProgress`` -> ``Success``/``Failed``/...;
  - ``lifecycle_hook_heartbeat``: how long a lifecycle hook holds an instance in ``Pending:Wait`` before its
    heartbeat times out (off: the hook's own ``HeartbeatTimeout`` seconds, as AWS);

* **fault injection** from outside the server with plain AWS calls (``fault_tags``): EC2 tags on instances
  and images, see the ``TAG_*`` constants; plus ``fail_image_name_patterns``, ``ssm_rules`` and ``api_faults``
  (any JSON- or query-protocol API call answered with an AWS error, e.g. SSM PutParameter in one region) in the
  config;
* **fixes** of moto bugs: ``fix_ssm_targeting`` (send_command to one instance targets every instance) and
  ``fix_target_registration`` (terminated instances stay registered in target groups; ASG replacements after
  ``ec2.terminate_instances`` are not registered).

Warm pools (always, inside a sandbox request): moto stores a warm pool's configuration but keeps no warmed
instances; the sandbox keeps the pool at its size with warmed instances launched from the group's current
launch template (``Warmed:Pending`` while booting, then ``Warmed:Stopped`` / ``Warmed:Running`` /
``Warmed:Hibernated``), draws scale-outs from it, returns scaled-in instances with ``ReuseOnScaleIn``, and
refills it when a warmed instance is terminated (``moto_patches._patch_warm_pools``).

Counting rule for ``describes``: a resource advances one step per API call that observes it, at most once per
call. The observing calls are, per latency:

=========================  ========================================================================
``instance_boot``          DescribeInstances, DescribeInstanceStatus, DescribeAutoScalingGroups,
                           DescribeAutoScalingInstances, DescribeTargetHealth, DescribeWarmPool
``instance_status_checks`` DescribeInstanceStatus
``target_health_checks``   DescribeTargetHealth
``image_build``            DescribeImages
``ssm_command``            GetCommandInvocation, ListCommandInvocations, ListCommands
``lifecycle_hook_heartbeat`` DescribeAutoScalingGroups, DescribeAutoScalingInstances
=========================  ========================================================================

A describe observes a resource if it would return it were the resource already in its final state (state
filters such as ``instance-state-name=running`` do not hide a pending instance from its clock). With
``{"describes": N}`` a resource is seen in its transitional state by its first N observing calls and in its
final state from call N+1 on. ``{"describes": 0}`` still shows the transitional state in the creating call's
own response (RunInstances says ``pending``), as AWS does.

Thresholds are read from the *current* config at each observation, so changing the config at runtime (HTTP
``POST /phoenix-sandbox/config``) also speeds up or slows down resources already in flight.

Everything is keyed to the **request scope**: the patches only act inside a request served by a sandbox server
(:func:`request_scope`, set by the server's WSGI middleware). In-process ``moto.mock_aws`` code in the same
Python process sees plain moto, whatever the sandbox config is.
"""

from __future__ import annotations

import contextvars
import fnmatch
import json
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from typing import Any

#: moto version the patches are written against; :func:`install` refuses any other.
MOTO_VERSION = "5.2.5"

TAG_PREFIX = "phoenix-sandbox:"
#: EC2 instance tag: the instance's target health in every target group: ``healthy``, ``unhealthy``,
#: ``draining``, ``unused``, ``unavailable``, ``initial``; optionally ``state:Reason`` (``unhealthy:Target.Timeout``).
TAG_TARGET_HEALTH = "phoenix-sandbox:target-health"
#: EC2 instance tag: DescribeInstanceStatus result: ``impaired`` (instance status), ``system-impaired``
#: (system status), ``initializing``, ``insufficient-data``, ``ok``.
TAG_STATUS_CHECK = "phoenix-sandbox:status-check"
#: EC2 image tag: ``true`` makes a *pending* image end ``failed`` instead of ``available``.
TAG_IMAGE_FAIL = "phoenix-sandbox:fail"
#: EC2 instance tag (or tag on the instance's AMI): exit code of every Run Command on the instance.
TAG_SSM_EXIT_CODE = "phoenix-sandbox:ssm-exit-code"
#: EC2 instance/AMI tag: standard output of Run Command invocations (``ssm-stdout`` is accepted too).
TAG_SSM_OUTPUT = "phoenix-sandbox:ssm-output"
TAG_SSM_STDOUT = "phoenix-sandbox:ssm-stdout"
#: EC2 instance/AMI tag: standard error of Run Command invocations.
TAG_SSM_STDERR = "phoenix-sandbox:ssm-stderr"
#: EC2 instance/AMI tag: final invocation status: ``Success``, ``Failed``, ``TimedOut``, ``Cancelled``.
TAG_SSM_STATUS = "phoenix-sandbox:ssm-status"

SSM_FINAL_STATUSES = ("Success", "Failed", "TimedOut", "Cancelled")
TRUTHY = ("1", "true", "yes", "on")

# API actions that count as an observation, per clock (see the module docstring).
BOOT_ACTIONS = frozenset(
    {
        "DescribeInstances",
        "DescribeInstanceStatus",
        "DescribeAutoScalingGroups",
        "DescribeAutoScalingInstances",
        "DescribeTargetHealth",
        "DescribeWarmPool",
    }
)
STATUS_ACTIONS = frozenset({"DescribeInstanceStatus"})
TARGET_ACTIONS = frozenset({"DescribeTargetHealth"})
IMAGE_ACTIONS = frozenset({"DescribeImages"})
SSM_ACTIONS = frozenset({"GetCommandInvocation", "ListCommandInvocations", "ListCommands"})
HOOK_ACTIONS = frozenset({"DescribeAutoScalingGroups", "DescribeAutoScalingInstances"})


# --------------------------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class Latency:
    """How long a transitional state lasts: ``seconds`` (wall clock) or ``describes`` (observing calls).

    Neither set: off (moto's instant behaviour). JSON form: ``{"seconds": 20}``, ``{"describes": 2}`` or ``null``.
    """

    seconds: float | None = None
    describes: int | None = None

    def __post_init__(self) -> None:
        if self.seconds is not None and self.describes is not None:
            raise ValueError("a latency takes either 'seconds' or 'describes', not both")
        if self.seconds is not None:
            if (
                isinstance(self.seconds, bool)
                or not isinstance(self.seconds, int | float)
                or self.seconds < 0
            ):
                raise ValueError(f"latency seconds must be a number >= 0, got {self.seconds!r}")
        if self.describes is not None:
            if isinstance(self.describes, bool) or not isinstance(self.describes, int) or self.describes < 0:
                raise ValueError(f"latency describes must be an integer >= 0, got {self.describes!r}")

    @property
    def enabled(self) -> bool:
        return self.seconds is not None or self.describes is not None

    def due(self, clock: Clock, now: float) -> bool:
        if self.seconds is not None:
            return now - clock.started >= self.seconds
        if self.describes is not None:
            return clock.count >= self.describes
        return True

    def to_json(self) -> dict[str, float | int] | None:
        if self.seconds is not None:
            return {"seconds": self.seconds}
        if self.describes is not None:
            return {"describes": self.describes}
        return None

    @classmethod
    def from_json(cls, value: Any) -> Latency:
        if isinstance(value, Latency):
            return value
        if value is None or value == {}:
            return cls()
        if not isinstance(value, Mapping):
            raise ValueError(f'a latency is {{"seconds": S}}, {{"describes": N}} or null, got {value!r}')
        unknown = set(value) - {"seconds", "describes"}
        if unknown:
            raise ValueError(f"unknown latency key(s) {sorted(unknown)}: use 'seconds' or 'describes'")
        return cls(seconds=value.get("seconds"), describes=value.get("describes"))


@dataclass(frozen=True)
class SsmRule:
    """A Run Command outcome for invocations matching all given (fnmatch) patterns; ``None`` matches anything.

    ``status`` defaults from ``exit_code``: 0 -> ``Success``, else ``Failed``. ``exit_code`` defaults from
    ``status``: ``Success`` 0, ``Failed`` 1, ``TimedOut``/``Cancelled`` -1.
    """

    instance_id: str | None = None
    image_id: str | None = None
    image_name: str | None = None
    document_name: str | None = None
    exit_code: int | None = None
    stdout: str = ""
    stderr: str | None = None
    status: str | None = None

    def __post_init__(self) -> None:
        if self.status is not None and self.status not in SSM_FINAL_STATUSES:
            raise ValueError(f"ssm rule status must be one of {SSM_FINAL_STATUSES}, got {self.status!r}")
        if self.exit_code is not None and (
            isinstance(self.exit_code, bool) or not isinstance(self.exit_code, int)
        ):
            raise ValueError(f"ssm rule exit_code must be an integer, got {self.exit_code!r}")

    def matches(
        self, instance_id: str, image_id: str | None, image_name: str | None, document: str | None
    ) -> bool:
        pairs = (
            (self.instance_id, instance_id),
            (self.image_id, image_id),
            (self.image_name, image_name),
            (self.document_name, document),
        )
        return all(pattern is None or fnmatch.fnmatchcase(value or "", pattern) for pattern, value in pairs)

    def outcome(self) -> SsmOutcome:
        return SsmOutcome.build(self.status, self.exit_code, self.stdout, self.stderr)

    @classmethod
    def from_json(cls, value: Any) -> SsmRule:
        if isinstance(value, SsmRule):
            return value
        if not isinstance(value, Mapping):
            raise ValueError(f"an ssm rule is a JSON object, got {value!r}")
        names = {f.name for f in fields(cls)}
        unknown = set(value) - names
        if unknown:
            raise ValueError(f"unknown ssm rule key(s) {sorted(unknown)}; known: {sorted(names)}")
        return cls(**dict(value))

    def to_json(self) -> dict[str, Any]:
        return {
            f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) not in (None, "")
        }


@dataclass(frozen=True)
class SsmOutcome:
    status: str
    exit_code: int
    stdout: str
    stderr: str

    @classmethod
    def build(
        cls, status: str | None, exit_code: int | None, stdout: str | None, stderr: str | None
    ) -> SsmOutcome:
        if status is None:
            status = "Success" if not exit_code else "Failed"
        if exit_code is None:
            exit_code = {"Success": 0, "Failed": 1}.get(status, -1)
        if stderr is None:
            stderr = f"failed to run commands: exit status {exit_code}" if status == "Failed" else ""
        return cls(status, exit_code, stdout or "", stderr)


@dataclass(frozen=True)
class ApiFault:
    """Answer matching API calls with an AWS error instead of serving them (JSON and query protocols: SSM, EC2,
    AutoScaling, ELBv2, STS, IAM, ...; not S3).

    ``action`` (required), ``service`` (the signing name: ``ssm``, ``ec2``, ``autoscaling``), ``region`` and the
    values of ``params`` (top-level request parameters, e.g. ``{"Name": "/phoenix/images/*/latest"}``) are fnmatch
    patterns; ``None`` matches anything. ``times``: answer that many matching calls, then serve them again
    (``None``: every one); the count restarts whenever the config changes. A 4xx ``status`` is not retried by
    the SDKs unless the code is a throttling one; 5xx is.
    """

    action: str
    service: str | None = None
    region: str | None = None
    params: tuple[tuple[str, str], ...] = ()
    code: str = "InternalFailure"
    message: str = "phoenix-sandbox: injected API fault"
    status: int = 400
    times: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.action, str) or not self.action:
            raise ValueError("an api fault needs an 'action' (e.g. PutParameter)")
        for name in ("service", "region"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise ValueError(f"api fault {name} must be a string pattern, got {getattr(self, name)!r}")
        params = self.params
        if isinstance(params, Mapping):
            params = tuple(sorted(params.items()))
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in params):
            raise ValueError(f"api fault params must map parameter names to string patterns, got {self.params!r}")
        object.__setattr__(self, "params", tuple(params))
        if isinstance(self.status, bool) or not isinstance(self.status, int) or not 400 <= self.status <= 599:
            raise ValueError(f"api fault status must be an HTTP error status (400-599), got {self.status!r}")
        if self.times is not None and (isinstance(self.times, bool) or not isinstance(self.times, int) or self.times < 1):
            raise ValueError(f"api fault times must be a whole number >= 1 or null, got {self.times!r}")

    def matches(self, service: str | None, action: str | None, region: str | None, params: Mapping[str, Any]) -> bool:
        pairs = ((self.action, action), (self.service, service), (self.region, region))
        if not all(p is None or fnmatch.fnmatchcase(v or "", p) for p, v in pairs):
            return False
        return all(
            isinstance(params.get(k), str | int | float) and fnmatch.fnmatchcase(str(params[k]), p)
            for k, p in self.params
        )

    @classmethod
    def from_json(cls, value: Any) -> ApiFault:
        if isinstance(value, ApiFault):
            return value
        if not isinstance(value, Mapping):
            raise ValueError(f"an api fault is a JSON object, got {value!r}")
        names = {f.name for f in fields(cls)}
        unknown = set(value) - names
        if unknown:
            raise ValueError(f"unknown api fault key(s) {sorted(unknown)}; known: {sorted(names)}")
        if "action" not in value:
            raise ValueError("an api fault needs an 'action' (e.g. PutParameter)")
        return cls(**dict(value))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}
        out["params"] = dict(self.params)
        return out


_LATENCY_FIELDS = (
    "instance_boot",
    "instance_status_checks",
    "target_health_checks",
    "image_build",
    "ssm_command",
    "lifecycle_hook_heartbeat",
)
_BOOL_FIELDS = ("fault_tags", "fix_ssm_targeting", "fix_target_registration", "iam_access_control", "balance_azs")


@dataclass(frozen=True)
class RealismConfig:
    """The sandbox's realism settings. ``RealismConfig()`` is plain moto; see :data:`PROFILES`."""

    #: EC2 pending -> running (and ASG Pending -> InService, target initial while pending).
    instance_boot: Latency = Latency()
    #: DescribeInstanceStatus initializing -> ok, counted from the moment the instance runs.
    instance_status_checks: Latency = Latency()
    #: ELBv2 target initial -> healthy, counted from the moment the instance runs.
    target_health_checks: Latency = Latency()
    #: AMI pending -> available/failed (create_image, copy_image, register_image).
    image_build: Latency = Latency()
    #: Run Command invocation InProgress -> final status.
    ssm_command: Latency = Latency()
    #: How long a lifecycle hook holds an instance (Pending:Wait) before its heartbeat times out and its
    #: DefaultResult applies. Off: the hook's own HeartbeatTimeout, in wall-clock seconds (as AWS).
    lifecycle_hook_heartbeat: Latency = Latency()
    #: Images whose name matches one of these fnmatch patterns end ``failed``.
    fail_image_name_patterns: tuple[str, ...] = ()
    #: Run Command outcomes by instance/image/document; first match wins (after the ``ssm-*`` tags).
    ssm_rules: tuple[SsmRule, ...] = ()
    #: API calls answered with an AWS error instead of being served; first match wins.
    api_faults: tuple[ApiFault, ...] = ()
    #: Honour the ``phoenix-sandbox:*`` fault-injection tags.
    fault_tags: bool = False
    #: send_command targets only the instances asked for; unknown/not running ones raise InvalidInstanceId.
    fix_ssm_targeting: bool = False
    #: Terminated instances leave their target groups; ASG replacements are registered; pending targets allowed.
    fix_target_registration: bool = False
    #: Authorize every request against the caller's IAM policies (moto's IAM access control; root key
    #: ``testing`` allowed everything). Off in every profile. See ``sandbox/iam_access.py``.
    iam_access_control: bool = False
    #: AutoScaling launches each instance into the group's AZ with the fewest instances (AWS); moto uses the
    #: first subnet for all. On in every profile but ``plain``.
    balance_azs: bool = False

    #: STS AssumeRole credentials expire this many seconds after they are issued, whatever DurationSeconds asked
    #: (AWS: 15 minutes to 12 hours): compressed time, so a test can outlive its first credentials. None: as asked.
    sts_credential_seconds: float | None = None

    def __post_init__(self) -> None:
        for name in _LATENCY_FIELDS:
            if not isinstance(getattr(self, name), Latency):
                raise ValueError(f"{name} must be a Latency")
        for name in _BOOL_FIELDS:
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if isinstance(self.fail_image_name_patterns, str) or not all(
            isinstance(p, str) for p in self.fail_image_name_patterns
        ):
            raise ValueError("fail_image_name_patterns must be a list of strings")
        object.__setattr__(self, "fail_image_name_patterns", tuple(self.fail_image_name_patterns))
        seconds = self.sts_credential_seconds
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0):
            raise ValueError(f"sts_credential_seconds must be a number > 0 or null, got {seconds!r}")
        object.__setattr__(self, "ssm_rules", tuple(SsmRule.from_json(r) for r in self.ssm_rules))
        object.__setattr__(self, "api_faults", tuple(ApiFault.from_json(r) for r in self.api_faults))

    # -- construction ---------------------------------------------------------------------------------------

    @classmethod
    def profile(cls, name: str) -> RealismConfig:
        try:
            return PROFILES[name]
        except KeyError:
            raise ValueError(f"unknown realism profile {name!r}; known: {sorted(PROFILES)}") from None

    def updated(self, changes: Mapping[str, Any]) -> RealismConfig:
        """A copy with ``changes`` applied (JSON shapes, as :meth:`to_dict`). A ``"profile"`` key starts over
        from that profile before the other keys apply. Unknown keys and bad values raise ``ValueError``."""
        if not isinstance(changes, Mapping):
            raise ValueError(f"config changes must be a JSON object, got {changes!r}")
        changes = dict(changes)
        base = self
        if "profile" in changes:
            base = RealismConfig.profile(str(changes.pop("profile")))
        known = {f.name for f in fields(RealismConfig)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown config field(s) {sorted(unknown)}; known: {sorted(known)}")
        kwargs: dict[str, Any] = {}
        for key, value in changes.items():
            if key in _LATENCY_FIELDS:
                kwargs[key] = Latency.from_json(value)
            elif key == "fail_image_name_patterns":
                if isinstance(value, str) or not isinstance(value, list | tuple):
                    raise ValueError("fail_image_name_patterns must be a list of strings")
                kwargs[key] = tuple(value)
            elif key == "ssm_rules":
                if not isinstance(value, list | tuple):
                    raise ValueError("ssm_rules must be a list of rule objects")
                kwargs[key] = tuple(SsmRule.from_json(r) for r in value)
            elif key == "api_faults":
                if not isinstance(value, list | tuple):
                    raise ValueError("api_faults must be a list of fault objects")
                kwargs[key] = tuple(ApiFault.from_json(r) for r in value)
            else:
                kwargs[key] = value
        return replace(base, **kwargs)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RealismConfig:
        """From JSON shapes, starting at plain moto (or at ``data["profile"]``)."""
        return cls().updated(data)

    @classmethod
    def from_json(cls, text: str) -> RealismConfig:
        return cls.from_dict(json.loads(text))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Latency):
                out[f.name] = value.to_json()
            elif f.name in ("ssm_rules", "api_faults"):
                out[f.name] = [r.to_json() for r in value]
            elif isinstance(value, tuple):
                out[f.name] = list(value)
            else:
                out[f.name] = value
        return out

    @property
    def tracks_ssm(self) -> bool:
        return self.ssm_command.enabled or bool(self.ssm_rules) or self.fault_tags


_FIXES = {"fault_tags": True, "fix_ssm_targeting": True, "fix_target_registration": True, "balance_azs": True}

#: Named starting points. ``plain``: moto as is. ``tests``: describe-count latencies (no sleeping), tags and
#: fixes on. ``interactive``: wall-clock latencies for a person watching the sandbox, tags and fixes on.
#: ``demo``: wall-clock latencies a few seconds long (``make demo``).
PROFILES: dict[str, RealismConfig] = {
    "plain": RealismConfig(),
    "tests": RealismConfig(
        instance_boot=Latency(describes=2),
        instance_status_checks=Latency(describes=1),
        target_health_checks=Latency(describes=1),
        image_build=Latency(describes=2),
        ssm_command=Latency(describes=1),
        lifecycle_hook_heartbeat=Latency(describes=4),
        **_FIXES,
    ),
    "interactive": RealismConfig(
        instance_boot=Latency(seconds=20),
        instance_status_checks=Latency(seconds=10),
        target_health_checks=Latency(seconds=10),
        image_build=Latency(seconds=30),
        ssm_command=Latency(seconds=5),
        **_FIXES,
    ),
    # ``make demo``: the same transitions, short enough for a whole release and rollout in a few minutes
    "demo": RealismConfig(
        instance_boot=Latency(seconds=3),
        instance_status_checks=Latency(seconds=2),
        target_health_checks=Latency(seconds=2),
        image_build=Latency(seconds=5),
        ssm_command=Latency(seconds=2),
        **_FIXES,
    ),
}


def parse_assignment(text: str) -> dict[str, Any]:
    """``key=value`` or ``latency.seconds=20`` (CLI ``--set``) as a changes dict; values are JSON if they parse."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ValueError(f"expected key=value, got {text!r}")
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    parts = key.strip().split(".")
    out: dict[str, Any] = {}
    cursor = out
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[parts[-1]] = value
    return out


# --------------------------------------------------------------------------------------------- runtime


@dataclass
class Clock:
    """When a transitional state began and how many observing calls have seen it."""

    started: float = field(default_factory=time.time)
    count: int = 0
    done: bool = False


class Realism:
    """The live realism state of one sandbox server: its config (replaceable at runtime) and operations on it.

    Per-resource clocks live on the moto objects themselves, so a moto reset forgets them too.
    """

    def __init__(self, config: RealismConfig | None = None) -> None:
        self._lock = threading.Lock()
        self._initial = config or RealismConfig()
        self._config = self._initial
        from .iam_access import IamAudit

        #: who called what, allowed or denied, while ``iam_access_control`` was on (forgotten by a state reset)
        self.iam_audit = IamAudit()
        self._fault_hits: dict[int, int] = {}  # api_faults index -> calls answered (restarts with the config)

    @property
    def config(self) -> RealismConfig:
        return self._config

    @property
    def initial_config(self) -> RealismConfig:
        return self._initial

    def set_config(self, config: RealismConfig) -> RealismConfig:
        with self._lock:
            self._config = config
            self._fault_hits = {}
        return config

    def update_config(self, changes: Mapping[str, Any]) -> RealismConfig:
        with self._lock:
            self._config = self._config.updated(changes)
            self._fault_hits = {}
            return self._config

    def take_fault(
        self, service: str | None, action: str | None, region: str | None, params: Mapping[str, Any]
    ) -> ApiFault | None:
        """The api fault that answers this call (counted), or None: serve it."""
        with self._lock:
            for index, fault in enumerate(self._config.api_faults):
                if not fault.matches(service, action, region, params):
                    continue
                hits = self._fault_hits.get(index, 0)
                if fault.times is not None and hits >= fault.times:
                    continue
                self._fault_hits[index] = hits + 1
                return fault
        return None

    def reset(self, *, state: bool = True, config: bool = False) -> None:
        """Forget all AWS state (``moto-api/reset``, which also drops every realism clock) and optionally
        restore the config the server started with."""
        if state:
            from moto.moto_api._internal.models import moto_api_backend

            from . import moto_patches

            moto_api_backend.reset()
            self.iam_audit.clear()

            moto_patches.forget_sts()
        if config:
            self.set_config(self._initial)

    def settle(self) -> dict[str, int]:
        """Finish every transition in flight now (instances run, images end, commands complete)."""
        from . import moto_patches

        with request_scope(self, force=True):
            return moto_patches.settle_all()


@dataclass
class RequestState:
    """Per-request state: which realism applies, the API action, and the clocks already evaluated."""

    realism: Realism
    action: str | None = None
    force: bool = False
    seen: dict[tuple[str, ...], bool] = field(default_factory=dict)

    @property
    def config(self) -> RealismConfig:
        return self.realism.config


_CURRENT: contextvars.ContextVar[RequestState | None] = contextvars.ContextVar(
    "phoenix_sandbox", default=None
)
_TICK_LOCK = threading.Lock()


@contextmanager
def request_scope(realism: Realism, *, force: bool = False) -> Iterator[RequestState]:
    """Run a block as one sandbox request: the patches act, with this realism."""
    state = RequestState(realism, force=force)
    token = _CURRENT.set(state)
    try:
        yield state
    finally:
        _CURRENT.reset(token)


def current() -> RequestState | None:
    return _CURRENT.get()


def tick(
    req: RequestState, clock: Clock, latency: Latency, key: tuple[str, ...], actions: frozenset[str]
) -> bool:
    """Evaluate ``clock`` once per request: True when its transition is due (and from then on, for good).

    Due-ness is decided before this call is counted, so with ``describes=N`` the first N observing calls see
    the transitional state. Only calls whose action is in ``actions`` count.
    """
    if clock.done:
        return True
    with _TICK_LOCK:
        if key in req.seen:
            return req.seen[key]
        if clock.done or req.force or latency.due(clock, time.time()):
            clock.done = True
        elif req.action in actions:
            clock.count += 1
        req.seen[key] = clock.done
        return clock.done


def matches_any(name: str | None, patterns: tuple[str, ...]) -> bool:
    return bool(name) and any(fnmatch.fnmatchcase(name or "", p) for p in patterns)


_installed = False


def install() -> None:
    """Apply the patches to moto's classes (idempotent). Fails loudly on any moto but :data:`MOTO_VERSION`."""
    global _installed
    if _installed:
        return
    import moto

    if moto.__version__ != MOTO_VERSION:
        raise RuntimeError(
            f"sandbox realism patches are written against moto=={MOTO_VERSION} internals, "
            f"but moto=={moto.__version__} is installed: re-check sandbox/moto_patches.py before bumping the pin"
        )
    from . import iam_access, moto_patches

    moto_patches.apply()
    iam_access.apply()
    _installed = True
