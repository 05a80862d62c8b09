"""The realism patches over moto 5.2.5 internals. Applied by :func:`sandbox.realism.install`, never imported
for its side effects.

Every patch wraps one moto method or property and, outside a sandbox request (``realism.current() is None``),
calls straight through to moto. Each says which moto code it mirrors or corrects; re-read those places before
moving the moto pin (``realism.install`` refuses any other version).

Per-resource realism state is kept on the moto objects (attribute ``_phx``), so ``moto-api/reset`` forgets it
with the objects.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from moto.autoscaling.exceptions import ValidationError as AsgValidationError
from moto.autoscaling.models import AutoScalingBackend, FakeAutoScalingGroup, TerminateInstanceActivity
from moto.autoscaling.models import InstanceState as AsgInstanceState
from moto.autoscaling.responses import AutoScalingResponse
from moto.core.responses import ActionResult, BaseResponse, EmptyResult
from moto.ec2.models import EC2Backend, ec2_backends
from moto.ec2.models.amis import Ami
from moto.ec2.models.instances import Instance
from moto.ec2.models.instances import InstanceState as Ec2InstanceState
from moto.ec2.models.launch_templates import LaunchTemplate, LaunchTemplateBackend
from moto.ec2.responses.amis import AmisResponse
from moto.ec2.responses.launch_templates import LaunchTemplates
from moto.elbv2.exceptions import TargetGroupNotFoundError, TargetNotRunning
from moto.elbv2.models import ELBv2Backend, FakeHealthStatus, FakeTargetGroup, elbv2_backends
from moto.s3.responses import S3Response
from moto.ssm.exceptions import SSMException
from moto.ssm.models import Command, SimpleSystemManagerBackend, ssm_backends
from moto.ssm.responses import SimpleSystemManagerResponse
from moto.sts.models import STSBackend

from . import realism as R
from .realism import Clock, RequestState, SsmOutcome, current, tick

_STATE_FILTERS = ("instance-state-name", "instance-state-code")
_SSM_RUNNING = ("Pending", "InProgress", "Delayed")


class InvalidInstanceId(SSMException):
    code = "InvalidInstanceId"

    def __init__(self, instance_id: str) -> None:
        super().__init__(
            "InvalidInstanceId",
            f"Instances [[{instance_id}]] not in a valid state for account or not managed by SSM "
            "(phoenix-sandbox: the instance must exist and be running)",
        )


class InvalidTarget(SSMException):
    def __init__(self, key: str) -> None:
        super().__init__("InvalidTarget", f"Target key {key!r} is not supported by the sandbox")


@dataclass
class _InstanceRecord:
    boot: Clock | None = None  # None: never pending under realism
    status: Clock | None = None  # instance status checks, from the moment it runs
    target: Clock | None = None  # target health checks, from the moment it runs


@dataclass
class _ImageRecord:
    clock: Clock = field(default_factory=Clock)


@dataclass
class _InvocationRecord:
    outcome: SsmOutcome
    clock: Clock = field(default_factory=Clock)
    started: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    finished: dt.datetime | None = None


# --------------------------------------------------------------------------------------------- helpers


def _ec2_tags(backend: Any, resource_id: str | None) -> dict[str, str]:
    # EC2Backend.tags is a defaultdict: .get() so that reading never creates an entry.
    if not resource_id:
        return {}
    return dict(backend.tags.get(resource_id, {}))


def _wrap(owner: type, name: str, make: Callable[[Any], Any]) -> None:
    """Replace ``owner.name`` by ``make(original)``; the original is resolved through the MRO."""
    original = getattr(owner, name) if name not in owner.__dict__ else owner.__dict__[name]
    setattr(owner, name, make(original))


def _lt_version_json(response: Any, template: Any, version: Any) -> dict[str, Any]:
    """A LaunchTemplateVersion as the EC2 API answers it (moto's EC2 ``response`` gives the account)."""
    return {
        "CreateTime": version.create_time,
        "CreatedBy": f"arn:{response.partition}:iam::{response.current_account}:root",
        "DefaultVersion": template.is_default(version),
        "LaunchTemplateData": version.data,
        "LaunchTemplateId": template.id,
        "LaunchTemplateName": template.name,
        "VersionDescription": version.description,
        "VersionNumber": version.number,
    }


def _instance_record(instance: Any) -> _InstanceRecord | None:
    return getattr(instance, "_phx", None)


def advance_instance(instance: Any) -> None:
    """Boot clock: move a pending instance to running when due (inside a sandbox request)."""
    req = current()
    rec = _instance_record(instance)
    if req is None or rec is None or rec.boot is None or rec.boot.done:
        return
    if instance._state.name != "pending":  # stopped or terminated while pending: the clock is moot
        rec.boot.done = True
        return
    if tick(req, rec.boot, req.config.instance_boot, ("boot", instance.id), R.BOOT_ACTIONS):
        instance._state = Ec2InstanceState("running", 16)
        # on AWS the status checks and the target's health checks start when the instance is running, whether or
        # not anyone looks: with a boot in seconds, that is when the boot was due, not this (later) observation
        # (else a poller's lateness would count twice: once seeing the boot end, again in the checks)
        running_since = time.time()
        boot = req.config.instance_boot
        if boot.seconds is not None and not req.force:
            running_since = min(running_since, rec.boot.started + boot.seconds)
        rec.status, rec.target = Clock(started=running_since), Clock(started=running_since)


def _track_new_instance(req: RequestState, instance: Any) -> None:
    rec = _InstanceRecord()
    if req.config.instance_boot.enabled:
        # moto creates instances "running" (models/instances.py Instance.__init__): start them pending.
        instance._state = Ec2InstanceState("pending", 0)
        rec.boot = Clock()
    else:
        rec.status, rec.target = Clock(), Clock()
    instance._phx = rec


def _has_pending_boot(instances: Iterable[Any]) -> bool:
    for instance in instances:
        rec = _instance_record(instance)
        if rec is not None and rec.boot is not None and not rec.boot.done:
            return True
    return False


def _strip_state_filters(filters: Any) -> Any:
    if isinstance(filters, dict):
        return {k: v for k, v in filters.items() if k not in _STATE_FILTERS}
    if isinstance(filters, list):
        return [f for f in filters if f.get("name") not in _STATE_FILTERS]
    return filters


def _image_failure(req: RequestState, ami: Any) -> str | None:
    cfg = req.config
    if cfg.fault_tags and _ec2_tags(ami.ec2_backend, ami.id).get(R.TAG_IMAGE_FAIL, "").lower() in R.TRUTHY:
        return f"tag {R.TAG_IMAGE_FAIL}"
    if R.matches_any(ami.name, cfg.fail_image_name_patterns):
        return "config fail_image_name_patterns"
    return None


def advance_image(ami: Any) -> None:
    req = current()
    rec: _ImageRecord | None = getattr(ami, "_phx", None)
    if req is None or rec is None or rec.clock.done:
        return
    if ami.state != "pending":  # disabled/deregistered meanwhile
        rec.clock.done = True
        return
    if tick(req, rec.clock, req.config.image_build, ("image", ami.id), R.IMAGE_ACTIONS):
        why = _image_failure(req, ami)
        if why:
            ami.state = "failed"
            # Serialized as the Image's StateReason.
            ami.state_reason = {
                "Code": "Server.InternalError",
                "Message": f"phoenix-sandbox: injected image failure ({why})",
            }
        else:
            ami.state = "available"


def _track_new_image(ami: Any) -> None:
    req = current()
    if req is None:
        return
    if req.config.image_build.enabled or _image_failure(req, ami):
        ami.state = "pending"
        ami._phx = _ImageRecord()


# --------------------------------------------------------------------------------------------- dispatch


def _patch_dispatch() -> None:
    # BaseResponse.call_action (core/responses.py) dispatches every query/JSON action: remember the action
    # name so that clocks know whether this call is an observation.
    def make(original: Any) -> Any:
        def call_action(self: Any) -> Any:
            req = current()
            if req is not None:
                try:
                    req.action = self._get_action()
                except Exception:  # noqa: BLE001 - never break dispatch over bookkeeping
                    req.action = None
                if _HELD:
                    expire_lifecycle_holds(req)
                if _WARM:
                    maintain_warm_pools(req)
            return original(self)

        return call_action

    _wrap(BaseResponse, "call_action", make)


# --------------------------------------------------------------------------------------------- EC2


def _resolve_ssm_image(backend: Any, image_id: str) -> str:
    """``resolve:ssm:<name>[:version|label]`` -> the parameter's value (the literal when it does not resolve)."""
    try:
        param = ssm_backends[backend.account_id][backend.region_name].get_parameter(image_id[len("resolve:ssm:"):])
    except Exception:  # noqa: BLE001 - AWS fails the launch; moto keeps going with the literal
        return image_id
    return str(param.value) if param is not None else image_id


def _patch_ec2() -> None:
    def make_run(original: Any) -> Any:
        def run_instances(
            self: Any, image_id: Any, count: Any, user_data: Any, sgs: Any, **kwargs: Any
        ) -> Any:
            if current() is not None and isinstance(image_id, str) and image_id.startswith("resolve:ssm:"):
                # AWS resolves an SSM-parameter AMI (a launch template's ImageId "resolve:ssm:<name>[:version]")
                # when it launches; moto launches the literal string as the instance's ImageId
                image_id = _resolve_ssm_image(self, image_id)
            reservation = original(self, image_id, count, user_data, sgs, **kwargs)
            req = current()
            if req is not None:  # also ASG launches: they call EC2Backend.run_instances
                for instance in reservation.instances:
                    _track_new_instance(req, instance)
            return reservation

        return run_instances

    def make_start(original: Any) -> Any:
        def start_instances(self: Any, instance_ids: list[str]) -> Any:
            started = original(self, instance_ids)
            req = current()
            if req is not None and req.config.instance_boot.enabled:
                for instance, previous in started:
                    if previous.name != "running" and instance._state.name == "running":
                        instance._state = Ec2InstanceState("pending", 0)
                        instance._phx = _InstanceRecord(boot=Clock())
            return started

        return start_instances

    def make_terminate(original: Any) -> Any:
        # moto's ELBv2 deregistration of terminated instances lives in the TerminateInstances *response*
        # (ec2/responses/instances.py), so terminations by the ASG API (terminate_instance_in_auto_scaling_group,
        # scale-in) leave the instance registered and "healthy". Deregister at the backend level instead.
        def terminate_instances(self: Any, instance_ids: list[str]) -> Any:
            result = original(self, instance_ids)
            req = current()
            if req is not None and req.config.fix_target_registration and instance_ids:
                elbv2_backends[self.account_id][self.region_name].notify_terminate_instances(
                    list(instance_ids)
                )
            return result

        return terminate_instances

    def make_describe(original: Any) -> Any:
        def describe_instances(self: Any, filters: Any = None) -> Any:
            if current() is not None and _has_pending_boot(self.all_instances()):
                for reservation in original(self, _strip_state_filters(filters)):
                    for instance in reservation.instances:
                        advance_instance(instance)
            return original(self, filters)

        return describe_instances

    def make_by_ids(original: Any) -> Any:
        def get_reservations_by_instance_ids(self: Any, instance_ids: list[str], filters: Any = None) -> Any:
            if current() is not None and _has_pending_boot(self.all_instances()):
                for reservation in original(self, instance_ids, _strip_state_filters(filters)):
                    for instance in reservation.instances:
                        advance_instance(instance)
            return original(self, instance_ids, filters)

        return get_reservations_by_instance_ids

    def make_status(original: Any) -> Any:
        def describe_instance_status(
            self: Any, instance_ids: list[str], include_all: bool, filters: Any
        ) -> Any:
            if current() is not None and _has_pending_boot(self.all_instances()):
                for instance in original(self, instance_ids, True, _strip_state_filters(filters)):
                    advance_instance(instance)
            return original(self, instance_ids, include_all, filters)

        return describe_instance_status

    _wrap(EC2Backend, "run_instances", make_run)
    _wrap(EC2Backend, "start_instances", make_start)
    _wrap(EC2Backend, "terminate_instances", make_terminate)
    _wrap(EC2Backend, "describe_instances", make_describe)
    _wrap(EC2Backend, "get_reservations_by_instance_ids", make_by_ids)
    _wrap(EC2Backend, "describe_instance_status", make_status)

    # Instance.instance_status / system_status (models/instances.py) are "ok" for every running instance.
    def make_status_property(original: property, which: str) -> property:
        def getter(self: Any) -> Any:
            base = original.fget(self)  # type: ignore[misc]
            req = current()
            if req is None or self.state_code != 16:
                return base
            if req.config.fault_tags:
                tag = _ec2_tags(self.ec2_backend, self.id).get(R.TAG_STATUS_CHECK, "").strip().lower()
                injected = _injected_status(tag, which)
                if injected is not None:
                    return injected
            rec = _instance_record(self)
            if rec is not None and rec.status is not None and not rec.status.done:
                if not tick(
                    req, rec.status, req.config.instance_status_checks, ("status", self.id), R.STATUS_ACTIONS
                ):
                    return {
                        "Details": [{"Name": "reachability", "Status": "initializing"}],
                        "Status": "initializing",
                    }
            return base

        return property(getter)

    Instance.instance_status = make_status_property(Instance.__dict__["instance_status"], "instance")  # type: ignore[assignment]
    Instance.system_status = make_status_property(Instance.__dict__["system_status"], "system")  # type: ignore[assignment]


def _injected_status(tag: str, which: str) -> dict[str, Any] | None:
    """The status-check tag's effect on InstanceStatus (``which="instance"``) or SystemStatus (``"system"``):
    ``impaired`` hits the instance status, ``system-impaired`` the system status, ``initializing`` and
    ``insufficient-data`` both."""
    impaired = {"instance": ("impaired", "instance-impaired"), "system": ("system-impaired",)}[which]
    if tag in impaired:
        since = dt.datetime.now(dt.UTC).replace(microsecond=0)
        return {
            "Details": [{"Name": "reachability", "Status": "failed", "ImpairedSince": since}],
            "Status": "impaired",
        }
    if tag in ("initializing", "insufficient-data"):
        return {"Details": [{"Name": "reachability", "Status": tag}], "Status": tag}
    return None


def _exact_image_id(ami_ids: Any, filters: Any, exec_users: Any, owners: Any) -> str | None:
    """The one image id a describe_images call asks for by an ``image-id`` filter without wildcards, else None."""
    if ami_ids or exec_users or owners or not filters or len(filters) != 1:
        return None
    wanted = filters.get("image-id")
    if isinstance(wanted, list) and len(wanted) == 1:
        wanted = wanted[0]
    if isinstance(wanted, str) and not any(c in wanted for c in "*?["):
        return wanted
    return None


def _patch_amis() -> None:
    # AmiBackend.create_image / copy_image / register_image (ec2/models/amis.py) create "available" images.
    def make_create(original: Any) -> Any:
        def create_image(self: Any, *args: Any, **kwargs: Any) -> Any:
            ami = original(self, *args, **kwargs)
            _track_new_image(ami)
            return ami

        return create_image

    for name in ("create_image", "copy_image", "register_image"):
        _wrap(EC2Backend, name, make_create)

    def make_snapshot_tags(original: Any) -> Any:
        # AmiBackend.create_image raises NotImplementedError for a TagSpecification of ResourceType "snapshot";
        # AWS tags the new image's snapshots with it (Packer's amazon-ebs sends its run_tags for "image" and
        # "snapshot" in CreateImage). Those specs are taken out, moto makes the image, then its snapshot is tagged.
        def create_image(
            self: Any, instance_id: str, name: str, description: str, tag_specifications: list[dict[str, Any]]
        ) -> Any:
            if current() is None:
                return original(self, instance_id, name, description, tag_specifications=tag_specifications)
            snapshot_tags = [
                tag for spec in tag_specifications or [] if spec.get("ResourceType") == "snapshot"
                for tag in spec.get("Tags", [])
            ]
            rest = [spec for spec in tag_specifications or [] if spec.get("ResourceType") != "snapshot"]
            ami = original(self, instance_id, name, description, tag_specifications=rest)
            snapshot = getattr(ami, "ebs_snapshot", None)
            if snapshot_tags and snapshot is not None:
                self.create_tags([snapshot.id], {t["Key"]: t["Value"] for t in snapshot_tags})
            return ami

        return create_image

    _wrap(EC2Backend, "create_image", make_snapshot_tags)

    def make_by_id(original: Any) -> Any:
        # Instance.__init__ (ec2/models/instances.py) finds its AMI with describe_images(filters={"image-id": id}),
        # which fnmatches that id against every image of the region (moto loads ~1,300 Amazon ones): ~10 ms per
        # instance launched, most of the cost of seeding a fleet of thousands. One id without a wildcard is
        # looked up instead; the answer is the same (that image, or none). Anything else goes to moto.
        def describe_images(
            self: Any,
            ami_ids: list[str] | None = None,
            filters: dict[str, Any] | None = None,
            exec_users: list[str] | None = None,
            owners: list[str] | None = None,
        ) -> Any:
            wanted = _exact_image_id(ami_ids, filters, exec_users, owners)
            if wanted is not None:
                image = self.amis.get(wanted)
                return [image] if image is not None else []
            return original(self, ami_ids, filters, exec_users, owners)

        return describe_images

    _wrap(EC2Backend, "describe_images", make_by_id)

    def make_describe(original: Any) -> Any:
        def describe_images(
            self: Any,
            ami_ids: list[str] | None = None,
            filters: dict[str, Any] | None = None,
            exec_users: list[str] | None = None,
            owners: list[str] | None = None,
        ) -> Any:
            if current() is not None:
                wanted = _exact_image_id(ami_ids, filters, exec_users, owners)
                candidates = [self.amis[wanted]] if wanted in self.amis else [] if wanted else list(self.amis.values())
                pending = [a for a in candidates if getattr(a, "_phx", None) and not a._phx.clock.done]
                if pending:
                    stripped = (
                        {k: v for k, v in (filters or {}).items() if k != "state"} if filters else filters
                    )
                    for ami in original(self, ami_ids, stripped, exec_users, owners):
                        advance_image(ami)
            return original(self, ami_ids, filters, exec_users, owners)

        return describe_images

    _wrap(EC2Backend, "describe_images", make_describe)

    def make_copy_token(original: Any) -> Any:
        # AmisResponse.copy_image (ec2/responses/amis.py) ignores ClientToken: every call makes a new image. AWS
        # answers a repeated token with the image the first call made (whatever became of it: failed, even
        # deregistered), and a repeated token with other parameters with IdempotentParameterMismatch. Kept per
        # account and region on the EC2 backend, so a moto reset forgets the tokens with the images.
        def copy_image(self: Any) -> Any:
            token = self._get_param("ClientToken")
            if current() is None or not token:
                return original(self)
            from moto.core.responses import ActionResult
            from moto.ec2.exceptions import EC2ClientError

            request = {
                key: self._get_param(key)
                for key in ("SourceImageId", "SourceRegion", "Name", "Description", "Encrypted", "KmsKeyId")
            }
            tokens: dict[str, tuple[str, dict[str, Any]]] = self.ec2_backend.__dict__.setdefault(
                "_phx_copy_tokens", {}
            )
            if token in tokens:
                image_id, first = tokens[token]
                if first != request:
                    raise EC2ClientError(
                        "IdempotentParameterMismatch",
                        f"The client token {token} was already used with different parameters "
                        f"(by the request that made {image_id}).",
                    )
                return ActionResult({"ImageId": image_id})
            result = original(self)
            tokens[token] = (result.result["ImageId"], request)
            return result

        return copy_image

    _wrap(AmisResponse, "copy_image", make_copy_token)


# --------------------------------------------------------------------------------------------- AutoScaling


def _patch_autoscaling() -> None:
    # InstanceState.lifecycle_state (autoscaling/models.py) is "InService" from launch. Report "Pending" while
    # the EC2 instance is pending; moto's own bookkeeping keeps reading the stored value (active_instances).
    def get_lifecycle(self: Any) -> str:
        stored = self.__dict__.get("lifecycle_state", "InService")
        if stored == "InService" and current() is not None:
            advance_instance(self.instance)
            if self.instance._state.name == "pending":
                return "Pending"
            if held(self):  # a launch lifecycle hook holds it (see _patch_lifecycle_hooks)
                return "Pending:Wait"
        return stored

    def set_lifecycle(self: Any, value: str) -> None:
        self.__dict__["lifecycle_state"] = value

    AsgInstanceState.lifecycle_state = property(get_lifecycle, set_lifecycle)  # type: ignore[assignment]

    def active_instances(self: Any) -> list[Any]:
        # Mirrors FakeAutoScalingGroup.active_instances, on the stored state: pending instances count toward
        # capacity (as in AWS), so set_desired_capacity does not launch extra ones.
        return [x for x in self.instance_states if x.__dict__.get("lifecycle_state") == "InService"]

    FakeAutoScalingGroup.active_instances = active_instances  # type: ignore[method-assign]

    def make_notify(original: Any) -> Any:
        # AutoScalingBackend.notify_terminate_instances replaces instances terminated through EC2 but never
        # registers the replacements in the group's target groups.
        def notify_terminate_instances(self: Any, instance_ids: list[str]) -> None:
            original(self, instance_ids)
            req = current()
            if req is None or not req.config.fix_target_registration:
                return
            for name, group in list(self.autoscaling_groups.items()):
                if group.target_group_arns:
                    try:
                        self.update_attached_target_groups(name)
                    except TargetGroupNotFoundError:
                        pass

        return notify_terminate_instances

    _wrap(AutoScalingBackend, "notify_terminate_instances", make_notify)

    def make_terminate(original: Any) -> Any:
        # AutoScalingBackend.terminate_instance looks the instance up with a bare next(...): for an instance no
        # group has (already terminated, e.g. a retried request whose first reply was lost) it raises
        # StopIteration and moto answers HTTP 500. AWS answers a ValidationError.
        def terminate_instance(self: Any, instance_id: str, should_decrement: bool) -> Any:
            if current() is not None and not any(
                state.instance.id == instance_id
                for group in self.autoscaling_groups.values()
                for state in group.instance_states
            ):
                raise AsgValidationError(f"Instance Id not found - No managed instance found for instance ID {instance_id}")
            return original(self, instance_id, should_decrement)

        return terminate_instance

    _wrap(AutoScalingBackend, "terminate_instance", make_terminate)
    _wrap(AutoScalingBackend, "terminate_instance", _make_terminate_warmed)

    def make_exit_standby(original: Any) -> Any:
        # AutoScalingBackend.exit_standby_instances moves any named instance to InService and raises desired
        # again, even one that is not in Standby (a retried ExitStandby would add capacity twice). AWS refuses
        # the request, changing nothing.
        def exit_standby_instances(self: Any, group_name: str, instance_ids: list[str]) -> Any:
            group = self.autoscaling_groups.get(group_name)
            if current() is not None and group is not None:
                states = {st.instance.id: st.__dict__.get("lifecycle_state") for st in group.instance_states}
                for iid in instance_ids:
                    if states.get(iid) != "Standby":
                        raise AsgValidationError(f"The instance {iid} is not in Standby.")
            return original(self, group_name, instance_ids)

        return exit_standby_instances

    _wrap(AutoScalingBackend, "exit_standby_instances", make_exit_standby)
    _patch_az_balance()
    _patch_warm_pools()  # draws from the pool before the balanced launch; launch hooks hold what it draws too
    _patch_lifecycle_hooks()


def _patch_az_balance() -> None:
    # FakeAutoScalingGroup.replace_autoscaling_group_instances launches every instance into the first subnet of
    # VPCZoneIdentifier. AWS balances: each launch goes to the group's AZ with the fewest instances. Opt-in
    # (``balance_azs``) while the rollout's tests are moved onto it.
    def make(original: Any) -> Any:
        def replace_autoscaling_group_instances(self: Any, count_needed: int, propagated_tags: Any) -> None:
            req = current()
            subnets = [s for s in (self.vpc_zone_identifier or "").split(",") if s]
            if req is None or not req.config.balance_azs or len(subnets) < 2 or count_needed <= 0:
                return original(self, count_needed, propagated_tags)
            ec2 = self.autoscaling_backend.ec2_backend
            az_of = {s: ec2.get_subnet(s).availability_zone for s in subnets}
            saved = self.vpc_zone_identifier
            try:
                for _ in range(count_needed):
                    per_az: dict[str, int] = {}
                    for state in self.instance_states:
                        per_az[state.instance.placement.zone] = per_az.get(state.instance.placement.zone, 0) + 1
                    subnet = min(subnets, key=lambda s: (per_az.get(az_of[s], 0), az_of[s]))
                    self.vpc_zone_identifier = subnet
                    original(self, 1, dict(propagated_tags))
            finally:
                self.vpc_zone_identifier = saved
            return None

        return replace_autoscaling_group_instances

    _wrap(FakeAutoScalingGroup, "replace_autoscaling_group_instances", make)


# --------------------------------------------------------------------------------------------- lifecycle hooks

HOOK_LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"


@dataclass
class _Hold:
    """A launch lifecycle hook holding one instance in Pending:Wait (AWS: until CompleteLifecycleAction or the
    heartbeat timeout, then the hook's DefaultResult)."""

    hook: str
    heartbeat: int  # the hook's HeartbeatTimeout, seconds
    default_result: str
    token: str
    clock: Clock = field(default_factory=Clock)


#: (backend, group, instance state) of every instance a hook holds (checked against the live objects: a moto
#: reset or a termination leaves stale entries, which are dropped)
_HELD: list[tuple[Any, Any, Any]] = []
_HOLD_LOCK = threading.RLock()


def _holds(state: Any) -> dict[str, _Hold]:
    return state.__dict__.setdefault("_phx_holds", {})


def held(state: Any) -> bool:
    return bool(state.__dict__.get("_phx_holds"))


def _hook_latency(req: RequestState, hold: _Hold) -> R.Latency:
    configured = req.config.lifecycle_hook_heartbeat
    return configured if configured.enabled else R.Latency(seconds=hold.heartbeat)


def _release(backend: Any, group: Any, state: Any, hook: str, result: str) -> None:
    """One hook of a held instance completes with ``result``: ABANDON terminates it (the ASG launches a
    replacement, desired unchanged); CONTINUE lets it proceed once no other hook holds it."""
    holds = _holds(state)
    holds.pop(hook, None)
    if result == "ABANDON":
        holds.clear()
        if state in group.instance_states:
            backend.terminate_instance(state.instance.id, should_decrement=False)


def expire_lifecycle_holds(req: RequestState) -> None:
    """Apply the DefaultResult of every hook whose heartbeat has run out (each request, before it is served)."""
    due: list[tuple[Any, Any, Any, str, str]] = []
    with _HOLD_LOCK:
        live = []
        for backend, group, state in _HELD:
            if backend.autoscaling_groups.get(group.name) is not group or state not in group.instance_states:
                continue
            if not held(state):
                continue
            live.append((backend, group, state))
            for name, hold in list(_holds(state).items()):
                if tick(req, hold.clock, _hook_latency(req, hold), ("hook", state.instance.id, name), R.HOOK_ACTIONS):
                    due.append((backend, group, state, name, hold.default_result))
        _HELD[:] = live
        for backend, group, state, name, result in due:
            if name in _holds(state):
                _release(backend, group, state, name, result)


def _patch_lifecycle_hooks() -> None:
    import uuid

    # AWS: an instance launched into a group with an EC2_INSTANCE_LAUNCHING hook waits in Pending:Wait until
    # CompleteLifecycleAction (or its heartbeat times out: DefaultResult). moto stores hooks and ignores them.
    def make_replace(original: Any) -> Any:
        def replace_autoscaling_group_instances(self: Any, count_needed: int, propagated_tags: Any) -> None:
            before = set(map(id, self.instance_states))
            original(self, count_needed, propagated_tags)
            if current() is None:
                return
            backend = self.autoscaling_backend
            hooks = [
                h for h in backend.lifecycle_hooks.values()
                if h.auto_scaling_group_name == self.name and h.lifecycle_transition == HOOK_LAUNCHING
            ]
            if not hooks:
                return
            with _HOLD_LOCK:
                for state in self.instance_states:
                    if id(state) in before:
                        continue
                    for h in hooks:
                        _holds(state)[h.name] = _Hold(h.name, int(h.heartbeat_timeout), str(h.default_result),
                                                      str(uuid.uuid4()))
                    _HELD.append((backend, self, state))

        return replace_autoscaling_group_instances

    _wrap(FakeAutoScalingGroup, "replace_autoscaling_group_instances", make_replace)

    def find(response: Any) -> tuple[Any, Any, Any, _Hold]:
        backend = response.autoscaling_backend
        group_name = response._get_param("AutoScalingGroupName")
        hook = response._get_param("LifecycleHookName")
        iid = response._get_param("InstanceId")
        token = response._get_param("LifecycleActionToken")
        group = backend.autoscaling_groups.get(group_name)
        if group is None:
            raise AsgValidationError(f"AutoScalingGroup name not found - {group_name}")
        if f"{group_name}_{hook}" not in backend.lifecycle_hooks:
            raise AsgValidationError(f"No Lifecycle Hook found with name {hook} for group {group_name}")
        for state in group.instance_states:
            hold = _holds(state).get(hook) if held(state) else None
            if hold is not None and (state.instance.id == iid or (token and hold.token == token)):
                return backend, group, state, hold
        raise AsgValidationError(f"No active Lifecycle Action found with instance ID {iid or token}")

    def complete_lifecycle_action(self: Any) -> Any:
        result = self._get_param("LifecycleActionResult")
        if result not in ("CONTINUE", "ABANDON"):
            raise AsgValidationError("LifecycleActionResult must be CONTINUE or ABANDON")
        with _HOLD_LOCK:
            backend, group, state, hold = find(self)
            _release(backend, group, state, hold.hook, result)
        return EmptyResult()

    def record_lifecycle_action_heartbeat(self: Any) -> Any:
        with _HOLD_LOCK:
            _, _, _, hold = find(self)
            hold.clock = Clock()  # the heartbeat timeout starts over
        return EmptyResult()

    AutoScalingResponse.complete_lifecycle_action = complete_lifecycle_action  # type: ignore[attr-defined]
    AutoScalingResponse.record_lifecycle_action_heartbeat = record_lifecycle_action_heartbeat  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------- warm pools

#: PoolState -> the LifecycleState of a warmed instance that has finished warming
WARMED = {"Stopped": "Warmed:Stopped", "Running": "Warmed:Running", "Hibernated": "Warmed:Hibernated"}
WARMED_PENDING = "Warmed:Pending"
_GONE = ("shutting-down", "terminated")
#: moto's own launch (before the AZ-balance / warm-pool / lifecycle-hook wraps): warmed instances are launched
#: with it, then moved out of the group
_MOTO_REPLACE = FakeAutoScalingGroup.replace_autoscaling_group_instances
#: (backend, group) of every group with a warm pool (dropped once the group or its pool is gone)
_WARM: list[tuple[Any, Any]] = []
_WARM_LOCK = threading.RLock()


def _pool(group: Any) -> list[Any]:
    """The group's warmed instances: moto InstanceStates kept *out of* ``instance_states`` (AWS: warmed instances
    are not in DescribeAutoScalingGroups' Instances and do not count toward desired capacity)."""
    return group.__dict__.setdefault("_phx_warm", [])


def _as_int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def warm_pool_target(group: Any) -> int:
    """The pool size AWS maintains: ``MaxGroupPreparedCapacity`` (unset or -1: the group's MaxSize) minus desired,
    at least the pool's ``MinSize`` (AWS docs, "Warm pools for Amazon EC2 Auto Scaling")."""
    pool = group.warm_pool
    prepared = _as_int(pool.max_group_prepared_capacity, -1)
    cap = _as_int(group.max_size, 0) if prepared < 0 else prepared
    return max(_as_int(pool.min_size, 0), cap - _as_int(group.desired_capacity, 0), 0)


def _reuses_on_scale_in(group: Any) -> bool:
    pool = getattr(group, "warm_pool", None)  # set late in FakeAutoScalingGroup.__init__
    policy = pool.instance_reuse_policy if pool is not None else None
    return str((policy or {}).get("ReuseOnScaleIn", "")).lower() == "true"


def _warm_up(group: Any, state: Any) -> None:
    """A warmed instance still booting is ``Warmed:Pending`` (``maintain_warm_pools`` finishes it); one that runs
    takes the pool's state: stopped (Stopped, Hibernated) or running."""
    if state.instance._state.name == "pending":
        state.__dict__["lifecycle_state"] = WARMED_PENDING
        return
    pool_state = str(group.warm_pool.pool_state or "Stopped")
    if pool_state in ("Stopped", "Hibernated") and state.instance._state.name == "running":
        group.autoscaling_backend.ec2_backend.stop_instances([state.instance.id])
    state.__dict__["lifecycle_state"] = WARMED.get(pool_state, "Warmed:Stopped")


def _template_version(group: Any) -> str | None:
    template = group.ec2_launch_template
    if template is None:
        return None
    try:
        return str(template.get_version(group.launch_template_version).number)
    except Exception:  # noqa: BLE001 - a version that does not resolve: moto launches anyway
        return str(group.launch_template_version)


def _launch_warmed(req: RequestState, group: Any, count: int) -> None:
    """Launch ``count`` warmed instances from the group's *current* launch template (moto's own launch, then out
    of the group), each into the AZ with the fewest warmed instances."""
    pool = _pool(group)
    subnets = [s for s in (group.vpc_zone_identifier or "").split(",") if s]
    ec2 = group.autoscaling_backend.ec2_backend
    az_of = {s: ec2.get_subnet(s).availability_zone for s in subnets} if len(subnets) > 1 else {}
    saved_states, saved_subnets = group.instance_states, group.vpc_zone_identifier
    for _ in range(count):
        group.instance_states = []
        try:
            if az_of:
                per_az: dict[str, int] = {}
                for st in pool:
                    per_az[st.instance.placement.zone] = per_az.get(st.instance.placement.zone, 0) + 1
                group.vpc_zone_identifier = min(subnets, key=lambda s: (per_az.get(az_of[s], 0), az_of[s]))
            _MOTO_REPLACE(group, 1, group.get_propagated_tags())
            new = group.instance_states
        finally:
            group.instance_states, group.vpc_zone_identifier = saved_states, saved_subnets
        for state in new:
            state.__dict__["_phx_warm_version"] = _template_version(group)
            _warm_up(group, state)
            pool.append(state)


def maintain_warm_pools(req: RequestState) -> None:
    """Keep every warm pool at its size (each request, before it is served): drop warmed instances terminated
    through EC2, finish the ones that booted, launch the missing ones from the current launch template, and
    terminate the ones above the size (newest first)."""
    with _WARM_LOCK:
        live = []
        for backend, group in _WARM:
            if backend.autoscaling_groups.get(group.name) is not group or group.warm_pool is None:
                continue
            live.append((backend, group))
            pool = _pool(group)
            pool[:] = [st for st in pool if st.instance._state.name not in _GONE]
            for state in pool:
                if state.__dict__.get("lifecycle_state") == WARMED_PENDING:
                    advance_instance(state.instance)
                    if state.instance._state.name != "pending":
                        _warm_up(group, state)
            missing = warm_pool_target(group) - len(pool)
            if missing > 0:
                _launch_warmed(req, group, missing)
            elif missing < 0:
                extra = pool[missing:]
                del pool[missing:]
                backend.ec2_backend.terminate_instances([st.instance.id for st in extra])
        _WARM[:] = live


def _warmed(group: Any) -> list[dict[str, Any]]:
    out = []
    for state in _pool(group):
        entry: dict[str, Any] = {
            "InstanceId": state.instance.id,
            "InstanceType": state.instance.instance_type,
            "AvailabilityZone": state.instance.placement.zone,
            "LifecycleState": state.__dict__.get("lifecycle_state", WARMED_PENDING),
            "HealthStatus": "Healthy",
        }
        template = group.ec2_launch_template
        if template is not None:
            entry["LaunchTemplate"] = {"LaunchTemplateId": template.id, "LaunchTemplateName": template.name,
                                       "Version": state.__dict__.get("_phx_warm_version") or "$Default"}
        out.append(entry)
    return out


def _make_terminate_warmed(original: Any) -> Any:
    # AWS: TerminateInstanceInAutoScalingGroup also terminates a warmed instance (the pool then refills from the
    # current launch template); moto keeps no warmed instances.
    def terminate_instance(self: Any, instance_id: str, should_decrement: bool) -> Any:
        if current() is not None:
            with _WARM_LOCK:
                for group in self.autoscaling_groups.values():
                    pool = group.__dict__.get("_phx_warm") or []
                    for state in pool:
                        if state.instance.id == instance_id:
                            pool.remove(state)
                            self.ec2_backend.terminate_instances([instance_id])
                            return TerminateInstanceActivity(state.instance, group.desired_capacity)
        return original(self, instance_id, should_decrement)

    return terminate_instance


def _patch_warm_pools() -> None:
    # moto 5.2.5 stores a warm pool's configuration (PutWarmPool/DescribeWarmPool/DeleteWarmPool) but keeps no
    # warmed instances: DescribeWarmPool answers "Instances": [] and a scale-out always launches new instances.
    def make_put(original: Any) -> Any:
        def put_warm_pool(self: Any, group_name: str, **kwargs: Any) -> None:
            original(self, group_name, **kwargs)
            if current() is not None:
                group = self.autoscaling_groups[group_name]
                with _WARM_LOCK:
                    if not any(g is group for _, g in _WARM):
                        _WARM.append((self, group))

        return put_warm_pool

    def make_delete(original: Any) -> Any:
        # AWS deletes the pool's warmed instances with it
        def delete_warm_pool(self: Any, group_name: str) -> None:
            group = self.autoscaling_groups.get(group_name)
            original(self, group_name)
            if current() is not None and group is not None:
                with _WARM_LOCK:
                    ids = [st.instance.id for st in _pool(group)]
                    _pool(group).clear()
                    if ids:
                        self.ec2_backend.terminate_instances(ids)

        return delete_warm_pool

    def describe_warm_pool(self: Any) -> Any:
        group_name = self._get_param("AutoScalingGroupName")
        pool = self.autoscaling_backend.describe_warm_pool(group_name=group_name)
        group = self.autoscaling_backend.autoscaling_groups[group_name]
        instances = _warmed(group) if pool is not None and current() is not None else []
        return ActionResult({"WarmPoolConfiguration": pool, "Instances": instances})

    def warm_pool_size(self: Any) -> int | None:
        # DescribeAutoScalingGroups' WarmPoolSize (AWS: present for a group with a warm pool)
        return len(_pool(self)) if self.warm_pool is not None else None

    def make_draw(original: Any) -> Any:
        # AWS: a scale-out moves warmed instances into the group (started when stopped: Pending -> InService)
        # before it launches new ones
        def replace_autoscaling_group_instances(self: Any, count_needed: int, propagated_tags: Any) -> None:
            pool = self.__dict__.get("_phx_warm")
            if current() is None or not pool or self.warm_pool is None or count_needed <= 0:
                return original(self, count_needed, propagated_tags)
            with _WARM_LOCK:
                ready = [st for st in pool if st.instance._state.name not in _GONE]
                ready.sort(key=lambda st: st.__dict__.get("lifecycle_state") == WARMED_PENDING)
                taken = ready[:count_needed]
                ec2 = self.autoscaling_backend.ec2_backend
                for state in taken:
                    pool.remove(state)
                    state.__dict__["lifecycle_state"] = "InService"  # reported Pending while the EC2 instance boots
                    if state.instance._state.name == "stopped":
                        ec2.start_instances([state.instance.id])
                    self.instance_states.append(state)
            if count_needed > len(taken):
                original(self, count_needed - len(taken), propagated_tags)
            return None

        return replace_autoscaling_group_instances

    def make_scale_in(original: Any) -> Any:
        # AWS: with InstanceReusePolicy.ReuseOnScaleIn, a scale-in returns instances to the warm pool (stopped for a
        # Stopped pool) instead of terminating them; moto terminates them
        def set_desired_capacity(self: Any, new_capacity: int | None) -> None:
            if current() is not None and new_capacity is not None and _reuses_on_scale_in(self):
                excess = len(self.active_instances()) - int(new_capacity)
                if excess > 0:
                    with _WARM_LOCK:
                        victims = [st for st in self.instance_states if not st.protected_from_scale_in][:excess]
                        elb = elbv2_backends[self.account_id][self.region]
                        for state in victims:
                            self.instance_states.remove(state)
                            for arn in self.target_group_arns:
                                try:
                                    elb.deregister_targets(arn, [{"Id": state.instance.id}])
                                except Exception:  # noqa: BLE001 - a target group gone: nothing to leave
                                    pass
                            _warm_up(self, state)
                            _pool(self).append(state)
                        if not any(g is self for _, g in _WARM):
                            _WARM.append((self.autoscaling_backend, self))
            return original(self, new_capacity)

        return set_desired_capacity

    _wrap(AutoScalingBackend, "put_warm_pool", make_put)
    _wrap(AutoScalingBackend, "delete_warm_pool", make_delete)
    AutoScalingResponse.describe_warm_pool = describe_warm_pool  # type: ignore[method-assign]
    FakeAutoScalingGroup.warm_pool_size = property(warm_pool_size)  # type: ignore[attr-defined]
    _wrap(FakeAutoScalingGroup, "replace_autoscaling_group_instances", make_draw)
    _wrap(FakeAutoScalingGroup, "set_desired_capacity", make_scale_in)


# --------------------------------------------------------------------------------------------- ELBv2

_HEALTH_REASONS = {
    "initial": ("Elb.InitialHealthChecking", "Initial health checks in progress"),
    "healthy": (None, None),
    "unhealthy": ("Target.FailedHealthChecks", "Health checks failed"),
    "draining": ("Target.DeregistrationInProgress", "Target deregistration is in progress"),
    "unused": ("Target.NotInUse", "Target group is not configured to receive traffic from the load balancer"),
    "unavailable": ("Target.HealthCheckDisabled", "Health checks are disabled"),
}
_REASON_DESCRIPTIONS = {
    "Elb.RegistrationInProgress": "Target registration is in progress",
    "Target.ResponseCodeMismatch": "Health checks failed with these codes: [502]",
    "Target.Timeout": "Request timed out",
    "Target.NotRegistered": "Target is not registered to the target group",
    "Target.InvalidState": "Target is in the stopped state",
    "Elb.InternalError": "Health checks failed due to an internal error",
}


def _health(base: Any, state: str, reason: str | None = None) -> Any:
    default_reason, description = _HEALTH_REASONS[state]
    if reason and reason != default_reason:
        description = _REASON_DESCRIPTIONS.get(reason, description)
    return FakeHealthStatus(
        base.instance_id, base.port, base.health_check_port, state, reason or default_reason, description
    )


def _patch_elbv2() -> None:
    def make_register(original: Any) -> Any:
        # Mirrors FakeTargetGroup.register (elbv2/models.py), which refuses anything but running instances;
        # AWS (and an ASG launching with boot latency) registers pending instances too.
        def register(self: Any, targets: list[dict[str, Any]]) -> None:
            req = current()
            if req is None or not (req.config.fix_target_registration or req.config.instance_boot.enabled):
                return original(self, targets)
            for target in targets:
                if instance := self.ec2_backend.get_instance_by_id(target["Id"]):
                    advance_instance(instance)
                    if instance.state not in ("running", "pending"):
                        raise TargetNotRunning(instance_id=target["Id"])
                self.targets[target["Id"]] = {"Id": target["Id"], "Port": target.get("Port", self.port)}
                self.deregistered_targets.pop(target["Id"], None)
                self.terminated_targets.pop(target["Id"], None)
            return None

        return register

    def make_health_for(original: Any) -> Any:
        # FakeTargetGroup.health_for reports every registered running instance "healthy".
        def health_for(self: Any, target: dict[str, Any], ec2_backend: Any) -> Any:
            req = current()
            target_id = str(target.get("Id", ""))
            instance = (
                ec2_backend.get_instance_by_id(target_id) if req and target_id.startswith("i-") else None
            )
            if instance is not None:
                advance_instance(instance)
            status = original(self, target, ec2_backend)
            if req is None or instance is None or status.status != "healthy":
                return status
            if instance._state.name == "pending":
                return _health(status, "initial", "Elb.RegistrationInProgress")
            if instance._state.name != "running":
                return status
            if req.config.fault_tags:
                raw = _ec2_tags(ec2_backend, instance.id).get(R.TAG_TARGET_HEALTH, "").strip()
                state, _, reason = raw.partition(":")
                if state in _HEALTH_REASONS:
                    return _health(status, state, reason or None)
            rec = _instance_record(instance)
            if rec is not None and rec.target is not None and not rec.target.done:
                latency = req.config.target_health_checks
                if not tick(req, rec.target, latency, ("target", instance.id), R.TARGET_ACTIONS):
                    return _health(status, "initial")
            return status

        return health_for

    _wrap(FakeTargetGroup, "register", make_register)
    _wrap(FakeTargetGroup, "health_for", make_health_for)
    # ELBv2Backend is only referenced so that a moved class fails at import, not at runtime.
    assert hasattr(ELBv2Backend, "notify_terminate_instances")


# --------------------------------------------------------------------------------------------- SSM


def _ssm_outcome(req: RequestState, command: Any, instance_id: str) -> SsmOutcome:
    cfg = req.config
    ec2 = ec2_backends[command.account_id][command.backend_region]
    instance = ec2.get_instance_by_id(instance_id)
    image_id = instance.image_id if instance is not None else None
    image = ec2.amis.get(image_id) if image_id else None
    if cfg.fault_tags:
        for tags in (_ec2_tags(ec2, instance_id), _ec2_tags(ec2, image_id)):
            if not any(key.startswith(R.TAG_PREFIX + "ssm-") for key in tags):
                continue
            code: int | None = None
            if R.TAG_SSM_EXIT_CODE in tags:
                try:
                    code = int(tags[R.TAG_SSM_EXIT_CODE])
                except ValueError:
                    code = 1
            status = tags.get(R.TAG_SSM_STATUS)
            if status not in R.SSM_FINAL_STATUSES:
                status = None
            stdout = tags.get(R.TAG_SSM_OUTPUT, tags.get(R.TAG_SSM_STDOUT, ""))
            return SsmOutcome.build(status, code, stdout, tags.get(R.TAG_SSM_STDERR))
    for rule in cfg.ssm_rules:
        if rule.matches(instance_id, image_id, getattr(image, "name", None), command.document_name):
            return rule.outcome()
    return SsmOutcome.build("Success", 0, "", "")


def _elapsed(start: dt.datetime, end: dt.datetime) -> str:
    return f"PT{max((end - start).total_seconds(), 0.0):.3f}S"


def _set_in_progress(invocation: dict[str, Any]) -> None:
    invocation.update(
        {
            "Status": "InProgress",
            "StatusDetails": "InProgress",
            "ResponseCode": -1,
            "ExecutionElapsedTime": "PT0S",
            "ExecutionEndDateTime": "",
            "StandardOutputContent": "",
            "StandardErrorContent": "",
        }
    )


def _finish(invocation: dict[str, Any], rec: _InvocationRecord) -> None:
    rec.finished = dt.datetime.now(dt.UTC)
    out = rec.outcome
    details = {"TimedOut": "ExecutionTimedOut"}.get(out.status, out.status)
    invocation.update(
        {
            "Status": out.status,
            "StatusDetails": details,
            "ResponseCode": out.exit_code,
            "ExecutionElapsedTime": _elapsed(rec.started, rec.finished),
            "ExecutionEndDateTime": rec.finished.isoformat(),
            "StandardOutputContent": out.stdout[:24000],
            "StandardErrorContent": out.stderr[:8000],
        }
    )


def _invocation(command: Any, instance_id: str) -> dict[str, Any] | None:
    return next((i for i in command.invocations if i["InstanceId"] == instance_id), None)


def advance_invocation(command: Any, instance_id: str) -> None:
    req = current()
    records: dict[str, _InvocationRecord] | None = getattr(command, "_phx", None)
    if req is None or not records or instance_id not in records:
        return
    rec = records[instance_id]
    if rec.clock.done:
        return
    if tick(req, rec.clock, req.config.ssm_command, ("ssm", command.command_id, instance_id), R.SSM_ACTIONS):
        invocation = _invocation(command, instance_id)
        if invocation is not None:
            _finish(invocation, rec)


def _advance_command(command: Any) -> None:
    for invocation in list(command.invocations):
        advance_invocation(command, invocation["InstanceId"])


def _patch_ssm() -> None:
    def make_targets(original: Any) -> Any:
        # Command._get_instance_ids_from_targets (ssm/models.py) passes {} as EC2 filters when there are no
        # Targets, which matches every instance in the region: send_command(InstanceIds=[one]) runs everywhere.
        def _get_instance_ids_from_targets(self: Any) -> list[str]:
            req = current()
            if req is None or not req.config.fix_ssm_targeting:
                return original(self)
            if not self.targets:
                return []
            filters: dict[str, list[str]] = {}
            for target in self.targets:
                key, values = target["Key"], list(target.get("Values", []))
                if key == "InstanceIds":
                    filters["instance-id"] = values
                elif key.startswith("tag:") or key == "tag-key":
                    filters[key] = values
                else:
                    raise InvalidTarget(key)
            ec2 = ec2_backends[self.account_id][self.backend_region]
            ids = []
            for reservation in ec2.all_reservations(filters=filters):
                for instance in reservation.instances:
                    advance_instance(instance)
                    if instance.state == "running":
                        ids.append(instance.id)
            return ids

        return _get_instance_ids_from_targets

    def make_send(original: Any) -> Any:
        def send_command(self: Any, **kwargs: Any) -> Any:
            req = current()
            if req is None:
                return original(self, **kwargs)
            if req.config.fix_ssm_targeting:
                ec2 = ec2_backends[self.account_id][self.region_name]
                for instance_id in kwargs.get("instance_ids") or []:
                    instance = ec2.get_instance_by_id(instance_id)
                    if instance is not None:
                        advance_instance(instance)
                    if instance is None or instance.state != "running":
                        raise InvalidInstanceId(instance_id)
            command = original(self, **kwargs)
            if req.config.tracks_ssm:
                records = {}
                for invocation in command.invocations:
                    instance_id = invocation["InstanceId"]
                    records[instance_id] = _InvocationRecord(_ssm_outcome(req, command, instance_id))
                    _set_in_progress(invocation)
                command._phx = records
                _advance_command(command)  # latency off: final at once
            return command

        return send_command

    def make_get_invocation(original: Any) -> Any:
        def get_invocation(self: Any, instance_id: str, plugin_name: str | None) -> Any:
            advance_invocation(self, instance_id)
            return original(self, instance_id, plugin_name)

        return get_invocation

    def make_response_object(original: Any) -> Any:
        # Command.response_object reports the status fixed at creation ("Success"): aggregate the invocations.
        def response_object(self: Any) -> dict[str, Any]:
            if getattr(self, "_phx", None) and current() is not None:
                _advance_command(self)
            data = original(self)
            if getattr(self, "_phx", None):
                statuses = [i["Status"] for i in self.invocations]
                done = [s for s in statuses if s not in _SSM_RUNNING]
                if len(done) < len(statuses):
                    status = "InProgress"
                elif all(s == "Success" for s in statuses):
                    status = "Success"
                else:
                    status = next(s for s in ("Failed", "TimedOut", "Cancelled") if s in statuses)
                self.status = status
                data.update(
                    Status=status,
                    StatusDetails=status,
                    CompletedCount=len(done),
                    ErrorCount=sum(1 for s in done if s != "Success"),
                    TargetCount=len(statuses),
                )
            return data

        return response_object

    _wrap(Command, "_get_instance_ids_from_targets", make_targets)
    _wrap(SimpleSystemManagerBackend, "send_command", make_send)
    _wrap(Command, "get_invocation", make_get_invocation)
    _wrap(Command, "response_object", make_response_object)
    # moto 5.2.5 has no ListCommandInvocations at all (the Amazon provider's SSM operator, sensor and trigger
    # call it): add it to the SSM responses.
    SimpleSystemManagerResponse.list_command_invocations = _list_command_invocations  # type: ignore[attr-defined]


def _plugin(command: Any, invocation: dict[str, Any], rec: _InvocationRecord | None) -> dict[str, Any]:
    stdout = invocation.get("StandardOutputContent", "") or ""
    stderr = invocation.get("StandardErrorContent", "") or ""
    output = stdout + (f"\n----------ERROR-------\n{stderr}" if stderr else "")
    start = rec.started if rec else command.requested_date_time
    finish = rec.finished if rec else command.requested_date_time
    plugin: dict[str, Any] = {
        "Name": invocation.get("PluginName", "aws:runShellScript"),
        "Status": invocation["Status"],
        "StatusDetails": invocation.get("StatusDetails", invocation["Status"]),
        "ResponseCode": invocation.get("ResponseCode", 0),
        "ResponseStartDateTime": start,
        "Output": output[:2500],
        "StandardOutputUrl": "",
        "StandardErrorUrl": "",
        "OutputS3Region": command.output_s3_region or command.backend_region,
        "OutputS3BucketName": command.output_s3_bucket_name,
        "OutputS3KeyPrefix": command.output_s3_key_prefix,
    }
    if finish is not None and invocation["Status"] not in _SSM_RUNNING:
        plugin["ResponseFinishDateTime"] = finish
    return plugin


def _list_command_invocations(self: Any) -> ActionResult:
    if current() is None:
        raise NotImplementedError("The list_command_invocations action has not been implemented")
    backend = ssm_backends[self.current_account][self.region]
    command_id = self._get_param("CommandId")
    instance_id = self._get_param("InstanceId")
    details = bool(self._get_param("Details", False))
    max_results = int(self._get_param("MaxResults") or 50)
    start = int(self._get_param("NextToken") or 0)
    commands = [backend.get_command_by_id(command_id)] if command_id else list(backend._commands)
    rows = []
    for command in commands:
        records = getattr(command, "_phx", None) or {}
        for invocation in list(command.invocations):
            if instance_id and invocation["InstanceId"] != instance_id:
                continue
            advance_invocation(command, invocation["InstanceId"])
            rec = records.get(invocation["InstanceId"])
            rows.append(
                {
                    "CommandId": command.command_id,
                    "InstanceId": invocation["InstanceId"],
                    "InstanceName": "",
                    "Comment": command.comment,
                    "DocumentName": command.document_name,
                    "DocumentVersion": "$DEFAULT",
                    "RequestedDateTime": command.requested_date_time,
                    "Status": invocation["Status"],
                    "StatusDetails": invocation.get("StatusDetails", invocation["Status"]),
                    "TraceOutput": "",
                    "StandardOutputUrl": "",
                    "StandardErrorUrl": "",
                    "CommandPlugins": [_plugin(command, invocation, rec)] if details else [],
                    "ServiceRole": command.service_role_arn,
                    "NotificationConfig": command.notification_config,
                }
            )
    page = rows[start : start + max_results]
    result: dict[str, Any] = {"CommandInvocations": page}
    if start + max_results < len(rows):
        result["NextToken"] = str(start + max_results)
    return ActionResult(result)


# --------------------------------------------------------------------------------------------- Terraform fidelity


def _patch_terraform_fidelity() -> None:
    """Moto bugs that break Terraform or the native apply backend against moto (plan drift; launches from a new
    LT version; versions made from a source version). Always on inside the sandbox (they
    only make moto store what AWS stores). The wrappers carry ``phoenix_fix = True``: the Terraform e2e test
    applies the same fixes in-process and skips any method already so marked.

    1. AutoScalingResponse.create/update_auto_scaling_group ignore ``DefaultInstanceWarmup`` (never stored, so
       never described): keep it on the group.
    2. EC2 CreateLaunchTemplate (ec2/responses/launch_templates.py) copies the request's TagSpecifications for
       the template itself (resource type ``launch-template``) into version 1's LaunchTemplateData: drop them
       there (the template keeps its tags).
    """

    def keep_maintenance_policy(original: Any) -> Any:
        # 1b. create/update_auto_scaling_group ignore ``InstanceMaintenancePolicy`` (never stored, never described)
        #     and UpdateAutoScalingGroup ignores ``CapacityRebalance``: keep both on the group, as AWS does (both
        #     -1 removes the policy; an update that omits either keeps what the group has).
        def wrapper(self: Any) -> Any:
            result = original(self)
            if current() is not None:
                group = self.autoscaling_backend.autoscaling_groups.get(self._get_param("AutoScalingGroupName"))
                imp = self._get_param("InstanceMaintenancePolicy")
                if group is not None and imp:
                    lo = int(imp.get("MinHealthyPercentage", -1))
                    hi = int(imp.get("MaxHealthyPercentage", -1))
                    group.instance_maintenance_policy = (
                        None if (lo, hi) == (-1, -1) else {"MinHealthyPercentage": lo, "MaxHealthyPercentage": hi}
                    )
                rebalance = self._get_bool_param("CapacityRebalance", None)
                if group is not None and rebalance is not None:
                    group.capacity_rebalance = rebalance
            return result

        wrapper.phoenix_fix = True  # type: ignore[attr-defined]
        return wrapper

    def keep_warmup(original: Any) -> Any:
        def wrapper(self: Any) -> Any:
            result = original(self)
            if current() is not None:
                warmup = self._get_int_param("DefaultInstanceWarmup")
                group = self.autoscaling_backend.autoscaling_groups.get(
                    self._get_param("AutoScalingGroupName")
                )
                if warmup is not None and group is not None:
                    group.default_instance_warmup = warmup
            return result

        wrapper.phoenix_fix = True  # type: ignore[attr-defined]
        return wrapper

    for name in ("create_auto_scaling_group", "update_auto_scaling_group"):
        _wrap(AutoScalingResponse, name, keep_warmup)
        _wrap(AutoScalingResponse, name, keep_maintenance_policy)

    def make_create_template(original: Any) -> Any:
        def create_launch_template(
            self: Any, name: str, description: str, template_data: dict[str, Any], tag_spec: dict[str, Any]
        ) -> Any:
            if current() is not None and "TagSpecifications" in template_data:
                specs = [
                    s
                    for s in template_data["TagSpecifications"]
                    if s.get("ResourceType") != "launch-template"
                ]
                template_data = {k: v for k, v in template_data.items() if k != "TagSpecifications"}
                if specs:
                    template_data["TagSpecifications"] = specs
            return original(self, name, description, template_data, tag_spec)

        create_launch_template.phoenix_fix = True  # type: ignore[attr-defined]
        return create_launch_template

    _wrap(LaunchTemplateBackend, "create_launch_template", make_create_template)

    def make_create_version(original: Any) -> Any:
        # 3. CreateLaunchTemplateVersion stores UserData as a plain string (CreateLaunchTemplate decodes it into
        #    Base64EncodedString): any later launch from that version (an ASG replacement) fails with an HTML 500.
        def create_version(self: Any, data: dict[str, Any], description: str) -> Any:
            from moto.core.types import Base64EncodedString
            from moto.ec2.utils import parse_user_data

            user_data = data.get("UserData")
            if current() is not None and user_data is not None and not isinstance(user_data, Base64EncodedString):
                data = {**data, "UserData": parse_user_data(user_data or None)}
            return original(self, data, description)

        create_version.phoenix_fix = True  # type: ignore[attr-defined]
        return create_version

    _wrap(LaunchTemplate, "create_version", make_create_version)

    def make_source_version(original: Any) -> Any:
        # 4. CreateLaunchTemplateVersion ignores SourceVersion: the new version holds only the given data. AWS
        #    starts from the source version and overrides the top-level keys given (what the native apply
        #    backend relies on: a new version with only ImageId changed).
        # 5. ... and ignores ClientToken: an SDK retry of a request whose answer was lost (the Terraform
        #    provider's Go SDK sends a token and retries on a slow answer) made a second version. AWS answers a
        #    repeated token with the version it already made.
        def create_launch_template_version(self: Any) -> Any:
            if current() is None:
                return original(self)
            import copy

            from moto.core.responses import ActionResult

            name, template_id = self._get_param("LaunchTemplateName"), self._get_param("LaunchTemplateId")
            backend = self.ec2_backend
            template = backend.get_launch_template(template_id) if template_id else backend.get_launch_template_by_name(name)
            token = self._get_param("ClientToken")
            tokens: dict[str, int] = template.__dict__.setdefault("_phx_tokens", {})
            if token and token in tokens:
                version = template.get_version(tokens[token])
                return ActionResult({"LaunchTemplateVersion": _lt_version_json(self, template, version)})
            source = self._get_param("SourceVersion")
            plain = self._get_param
            if source:
                base = copy.deepcopy(template.get_version(source).data)

                def get_param(key: str, default: Any = None) -> Any:
                    value = plain(key, default)
                    return {**base, **(value or {})} if key == "LaunchTemplateData" else value

                self._get_param = get_param
            try:
                result = original(self)
            finally:
                if source:
                    del self._get_param
            if token:
                tokens[token] = template.versions[-1].number
            return result

        create_launch_template_version.phoenix_fix = True  # type: ignore[attr-defined]
        return create_launch_template_version

    _wrap(LaunchTemplates, "create_launch_template_version", make_source_version)


# --------------------------------------------------------------------------------------------- pagination

#: DescribeLaunchTemplateVersions MaxResults: 1..200 (EC2 API reference); the page size when none is asked for.
LTV_MAX_RESULTS = 200


def _patch_launch_template_versions() -> None:
    # DescribeLaunchTemplateVersions (ec2/responses/launch_templates.py + models/launch_templates.py) cuts its
    # answer at MaxResults (15 when absent) and never returns a NextToken, with or without a template: a listing
    # of more than a page looked complete. AWS pages it (MaxResults 1..200, NextToken) in every form: the
    # id-less $Default/$Latest listing of every template, one template's Versions, MinVersion/MaxVersion, all.
    # moto also listed a version twice when it is both $Default and $Latest (asked for both); AWS describes a
    # version once. Outside a sandbox request: moto as it is.
    from moto.ec2.exceptions import EC2ClientError, InvalidNextToken

    def make(original: Any) -> Any:
        def describe_launch_template_versions(self: Any) -> Any:
            if current() is None:
                return original(self)
            raw = self._get_param("MaxResults")
            size = LTV_MAX_RESULTS if raw in (None, "") else int(raw)
            if not 1 <= size <= LTV_MAX_RESULTS:
                raise EC2ClientError(
                    "InvalidParameterValue",
                    f"Value ( {size} ) for parameter MaxResults is invalid. Expecting a value between 1 and 200."
                )
            token = self._get_param("NextToken")
            if token and not str(token).isdigit():
                raise InvalidNextToken(token)
            start = int(token or 0)
            self.error_on_dryrun()
            found = self.ec2_backend.describe_launch_template_versions(
                template_name=self._get_param("LaunchTemplateName"),
                template_id=self._get_param("LaunchTemplateId"),
                versions=self._get_param("Versions", []),
                min_version=self._get_int_param("MinVersion"),
                max_version=self._get_int_param("MaxVersion"),
                max_results=1 << 31,  # everything: the page is cut below
            )
            rows, seen = [], set()
            for template, version in found:
                if (template.id, version.number) in seen:
                    continue
                seen.add((template.id, version.number))
                rows.append(_lt_version_json(self, template, version))
            result: dict[str, Any] = {"LaunchTemplateVersions": rows[start : start + size]}
            if start + size < len(rows):
                result["NextToken"] = str(start + size)
            return ActionResult(result)

        describe_launch_template_versions.phoenix_fix = True  # type: ignore[attr-defined]
        return describe_launch_template_versions

    _wrap(LaunchTemplates, "describe_launch_template_versions", make)


# --------------------------------------------------------------------------------------------- settle


def _all_backends(backend_dict: Any) -> list[Any]:
    out = []
    for account_backends in list(backend_dict.values()):
        out.extend(list(account_backends.values()))
    return out


def settle_all() -> dict[str, int]:
    """Finish every clock in flight; call inside a forced request scope (``Realism.settle``)."""
    req = current()
    assert req is not None and req.force
    counts = {"instances": 0, "images": 0, "invocations": 0}
    for ec2 in _all_backends(ec2_backends):
        for instance in ec2.all_instances():
            rec = _instance_record(instance)
            if rec is None:
                continue
            if rec.boot is not None and not rec.boot.done:
                advance_instance(instance)
                counts["instances"] += 1
            for clock in (rec.status, rec.target):
                if clock is not None:
                    clock.done = True
        for ami in list(ec2.amis.values()):
            rec_i = getattr(ami, "_phx", None)
            if rec_i is not None and not rec_i.clock.done:
                advance_image(ami)
                counts["images"] += 1
    for ssm in _all_backends(ssm_backends):
        for command in list(ssm._commands):
            for instance_id, rec_c in (getattr(command, "_phx", None) or {}).items():
                if not rec_c.clock.done:
                    advance_invocation(command, instance_id)
                    counts["invocations"] += 1
    return counts


def age_instances(region: str, *, instance_ids: Sequence[str] = (), asg: str | None = None,
                  days: float) -> list[str]:
    """Move the launch time of instances ``days`` into the past (AWS has no API for it; the sandbox needs one
    so that max-age enforcement can be tried). ``asg`` adds that group's members. Returns the ids aged."""
    from moto.autoscaling.models import autoscaling_backends

    if not 0 < days <= 3650:
        raise ValueError(f"days: must be more than 0 and at most 3650 (got {days})")
    ids = list(instance_ids)
    if asg is not None:
        groups = [
            b.autoscaling_groups[asg]
            for b in _all_backends(autoscaling_backends)
            if b.region_name == region and asg in b.autoscaling_groups
        ]
        if not groups:
            raise ValueError(f"asg: no AutoScaling group {asg!r} in {region}")
        ids += [state.instance.id for group in groups for state in group.instance_states]
    if not ids:
        raise ValueError("instance_ids / asg: name the instances to age")
    aged = []
    for ec2 in _all_backends(ec2_backends):
        if ec2.region_name != region:
            continue
        for iid in dict.fromkeys(ids):
            instance = ec2.get_instance_by_id(iid)
            if instance is None:
                raise ValueError(f"instance_ids: no instance {iid} in {region}")
            launched = instance.launch_time
            if isinstance(launched, str):  # moto keeps an ISO string on some versions
                launched = dt.datetime.fromisoformat(launched.replace("Z", "+00:00"))
            if launched.tzinfo is not None:
                launched = launched.astimezone(dt.UTC).replace(tzinfo=None)
            instance.launch_time = launched - dt.timedelta(days=days)
            aged.append(iid)
    return aged


#: one lock for every conditional S3 write: moto checks the condition, then writes, with no lock in between
_S3_CONDITIONAL_WRITE = threading.Lock()
_S3_CONDITIONS = ("If-None-Match", "If-Match")


def _patch_s3_conditional_writes() -> None:
    """S3 conditional writes are atomic, as on AWS. Always on inside the sandbox.

    moto's ``S3Response.put_object`` (s3/responses.py) honours ``If-None-Match: *`` and ``If-Match`` by looking the
    key up and *then* writing it, with nothing held in between: two writers racing on a threaded server can both
    pass the check and both "win". AWS decides a conditional write atomically: exactly one ``If-None-Match: *``
    write of a key succeeds, the others get 412 PreconditionFailed. Terraform's S3 lock file (``use_lockfile``) is
    such a write of ``<state key>.tflock``, so without this two applies could both hold the lock. The check and
    the write of every conditional PutObject and CompleteMultipartUpload run under one lock; unconditional
    requests are not serialised.
    """

    def serialise(original: Any) -> Any:
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            if current() is not None and any(self.headers.get(h) for h in _S3_CONDITIONS):
                with _S3_CONDITIONAL_WRITE:
                    return original(self, *args, **kwargs)
            return original(self, *args, **kwargs)

        return wrapper

    _wrap(S3Response, "put_object", serialise)
    _wrap(S3Response, "_key_response_post", serialise)  # CompleteMultipartUpload (If-None-Match: *)


def _patch_lookups() -> None:
    """Lookups by id that moto makes by scanning, several times for every instance launched: seeding 10,000
    instances took minutes, growing with the square of the fleet. Same answers, found directly."""

    def make_get_instance(original: Any) -> Any:
        # InstanceBackend.get_instance (ec2/models/instances.py) copies every reservation (all_reservations)
        # and walks them all, for each instance launched (its volume's attachment asks for it). Ids are unique:
        # the newest reservations are walked first, without copies, so a fresh instance is found at once.
        def get_instance(self: Any, instance_id: str) -> Any:
            for reservation in reversed(list(self.reservations.values())):
                for instance in reservation.instances:
                    if instance.id == instance_id:
                        return instance
            return original(self, instance_id)  # raises InvalidInstanceID.NotFound as moto does

        return get_instance

    _wrap(EC2Backend, "get_instance", make_get_instance)

    def make_describe_volumes(original: Any) -> Any:
        # EBSBackend.describe_volumes (ec2/models/elastic_block_store.py) filters every volume of the region by
        # a list membership test, for each instance launched.
        def describe_volumes(self: Any, volume_ids: list[str] | None = None, filters: Any = None) -> Any:
            if volume_ids and len(volume_ids) == 1 and not filters and volume_ids[0] in self.volumes:
                return [self.volumes[volume_ids[0]]]
            return original(self, volume_ids, filters)

        return describe_volumes

    _wrap(EC2Backend, "describe_volumes", make_describe_volumes)


# --------------------------------------------------------------------------------------------- STS


#: access key id -> expiration (naive UTC, as moto keeps it) of every credential STS issued in the sandbox
STS_EXPIRATIONS: dict[str, dt.datetime] = {}
_STS_LOCK = threading.Lock()


def _patch_sts() -> None:
    """Temporary credentials expire, as on AWS. Always on inside the sandbox.

    moto's STS (sts/models.py) issues credentials with an ``Expiration`` but accepts them forever afterwards. The
    sandbox remembers when each issued access key expires (AssumeRole, and what goes through it: web identity,
    SAML), and :func:`expired_access_key` tells the server to refuse a request signed with one past it
    (``ExpiredToken``, as AWS answers). ``sts_credential_seconds`` in the realism config shortens every issued
    credential's life to that many seconds (compressed time: a test outlives its credentials in seconds).
    """

    def make(original: Any) -> Any:
        def assume_role(self: Any, *args: Any, **kwargs: Any) -> Any:
            role = original(self, *args, **kwargs)
            req = current()
            if req is not None:
                seconds = req.config.sts_credential_seconds
                if seconds is not None:
                    role.expiration = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(seconds=seconds)
                with _STS_LOCK:
                    STS_EXPIRATIONS[role.access_key_id] = role.expiration
            return role

        return assume_role

    _wrap(STSBackend, "assume_role", make)


def expired_access_key(access_key_id: str | None) -> dt.datetime | None:
    """When ``access_key_id`` (issued by the sandbox's STS) expired, if it has; else None."""
    if not access_key_id:
        return None
    with _STS_LOCK:
        expiration = STS_EXPIRATIONS.get(access_key_id)
    if expiration is None or dt.datetime.now(dt.UTC).replace(tzinfo=None) < expiration:
        return None
    return expiration


def forget_sts() -> None:
    with _STS_LOCK:
        STS_EXPIRATIONS.clear()


def apply() -> None:
    _patch_sts()
    _patch_s3_conditional_writes()
    _patch_dispatch()
    _patch_ec2()
    _patch_amis()
    _patch_lookups()
    _patch_autoscaling()
    _patch_elbv2()
    _patch_ssm()
    _patch_terraform_fidelity()
    _patch_launch_template_versions()
    # Amis are referenced to fail fast at import if moto moves them.
    assert hasattr(Ami, "get_filter_value")
