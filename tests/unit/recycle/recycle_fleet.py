"""A small AutoScaling fleet on the sandbox for the recycle tests (import as ``recycle_fleet``).

``build_fleet(sandbox, desired=4)`` makes, in ``us-east-1``, with plain boto3:

* a VPC with a subnet per AZ of ``azs`` (default two: ``us-east-1a``, ``us-east-1b``), an internet-facing ALB, a target group ``web-tg``
  (instance targets) and an HTTP listener forwarding to it;
* two AMIs of ours (``phoenix-web-2026.11.23-1`` = old, ``phoenix-web-2026.11.30-1`` = new);
* launch template ``web-lt``: version 1 launches the old AMI, version 2 the new one (``bad_new=True`` puts
  ``phoenix-sandbox:target-health=unhealthy`` into version 2's instance TagSpecifications: every instance
  launched from it is unhealthy in its target groups);
* ASG ``web`` on ``web-lt`` version ``1`` (explicit), desired ``desired``, min 1, max ``desired + 1``,
  health check type ELB, attached to ``web-tg``; settled (all InService, healthy).

Test code, not product code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

REGION = "us-east-1"
ASG = "web"
OLD_VERSION = "2026.11.23-1"
NEW_VERSION = "2026.11.30-1"
UNHEALTHY_TAG = "phoenix-sandbox:target-health"


@dataclass
class Fleet:
    asg: str
    lt_id: str
    old_ami: str
    new_ami: str
    tg_arn: str
    subnets: list[str]
    vpc_id: str


def _tags(mapping: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in mapping.items()]


def _image(ec2: Any, builder: str, version: str) -> str:
    name = f"phoenix-web-{version}"
    image_id = ec2.create_image(InstanceId=builder, Name=name)["ImageId"]
    ec2.create_tags(
        Resources=[image_id],
        Tags=_tags({"Name": name, "phoenix:role": "web", "phoenix:version": version, "phoenix:verified": "true"}),
    )
    return image_id


def lt_data(ami: str, *, unhealthy: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "ImageId": ami,
        "InstanceType": "t3.small",
        "MetadataOptions": {"HttpTokens": "required"},
    }
    if unhealthy:
        data["TagSpecifications"] = [
            {"ResourceType": "instance", "Tags": _tags({UNHEALTHY_TAG: "unhealthy"})}
        ]
    return data


def build_fleet(sandbox: Any, *, desired: int = 4, bad_new: bool = False, max_size: int | None = None,
                asg: str = ASG, azs: str = "ab") -> Fleet:
    ec2 = sandbox.client("ec2", region_name=REGION)
    elbv2 = sandbox.client("elbv2", region_name=REGION)
    autoscaling = sandbox.client("autoscaling", region_name=REGION)

    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.42.{16 * k}.0/20", AvailabilityZone=f"{REGION}{az}")["Subnet"]["SubnetId"]
        for k, az in enumerate(azs)
    ]
    base = "ami-0b5a5e0000000b45e"  # any id: the sandbox's RunInstances does not check it (listing moto's
    # default images instead costs ~1.5 s after every reset)
    builder = ec2.run_instances(ImageId=base, MinCount=1, MaxCount=1, SubnetId=subnets[0])["Instances"][0]["InstanceId"]
    old_ami = _image(ec2, builder, OLD_VERSION)
    new_ami = _image(ec2, builder, NEW_VERSION)
    ec2.terminate_instances(InstanceIds=[builder])

    lb = elbv2.create_load_balancer(Name=f"{asg}-alb", Subnets=subnets, Scheme="internet-facing", Type="application")
    lb_arn = lb["LoadBalancers"][0]["LoadBalancerArn"]
    tg_arn = elbv2.create_target_group(
        Name=f"{asg}-tg", Protocol="HTTP", Port=80, VpcId=vpc, TargetType="instance", HealthCheckPath="/health"
    )["TargetGroups"][0]["TargetGroupArn"]
    elbv2.create_listener(
        LoadBalancerArn=lb_arn, Protocol="HTTP", Port=80, DefaultActions=[{"Type": "forward", "TargetGroupArn": tg_arn}]
    )

    lt_id = ec2.create_launch_template(LaunchTemplateName=f"{asg}-lt", LaunchTemplateData=lt_data(old_ami))[
        "LaunchTemplate"
    ]["LaunchTemplateId"]
    ec2.create_launch_template_version(LaunchTemplateId=lt_id, LaunchTemplateData=lt_data(new_ami, unhealthy=bad_new))

    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=asg,
        LaunchTemplate={"LaunchTemplateId": lt_id, "Version": "1"},
        MinSize=1,
        MaxSize=max_size if max_size is not None else desired + 1,
        DesiredCapacity=desired,
        VPCZoneIdentifier=",".join(subnets),
        TargetGroupARNs=[tg_arn],
        HealthCheckType="ELB",
        HealthCheckGracePeriod=60,
        Tags=[{"Key": "phoenix:role", "Value": "web", "PropagateAtLaunch": True, "ResourceId": asg,
               "ResourceType": "auto-scaling-group"}],
    )
    sandbox.settle()
    return Fleet(asg=asg, lt_id=lt_id, old_ami=old_ami, new_ami=new_ami, tg_arn=tg_arn, subnets=subnets, vpc_id=vpc)


def fleet_images(sandbox: Any, asg: str = ASG) -> dict[str, str]:
    """instance id -> EC2 ImageId of the ASG's members (the truth, not the ASG's LaunchTemplate.Version)."""
    autoscaling = sandbox.client("autoscaling", region_name=REGION)
    ec2 = sandbox.client("ec2", region_name=REGION)
    group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[asg])["AutoScalingGroups"][0]
    ids = [i["InstanceId"] for i in group["Instances"]]
    if not ids:
        return {}
    res = ec2.describe_instances(InstanceIds=ids)["Reservations"]
    return {i["InstanceId"]: i["ImageId"] for r in res for i in r["Instances"]}


def az_counts(sandbox: Any, asg: str = ASG) -> dict[str, int]:
    """Live (Pending and InService) members of the group per AZ, as DescribeAutoScalingGroups reports them."""
    counts: dict[str, int] = {}
    for i in group(sandbox, asg)["Instances"]:
        if i["LifecycleState"].startswith(("Pending", "InService")):
            counts[i["AvailabilityZone"]] = counts.get(i["AvailabilityZone"], 0) + 1
    return counts


def group(sandbox: Any, asg: str = ASG) -> dict[str, Any]:
    autoscaling = sandbox.client("autoscaling", region_name=REGION)
    return autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[asg])["AutoScalingGroups"][0]


# ------------------------------------------------------------------------------------------------------
# driving the operator: a hook that records (and can script) every AWS write


MUTATING = (
    "set_capacity",
    "set_desired_capacity",
    "terminate_instance",
    "suspend_processes",
    "resume_processes",
    "put_tags",
    "delete_tags",
    "set_launch_template",
    "exit_standby",
    "set_instance_protection",
    "start_instance_refresh",
)


class WorkerKilled(BaseException):  # noqa: N818 - a BaseException, like SIGKILL nothing catches it
    """The worker died: no ``except Exception`` runs (as with SIGKILL)."""


def scripted_hook(
    *,
    on_action: dict[Any, Any] | None = None,
    kill_before: Any = None,
    monitor: Any = None,
    **kwargs: Any,
) -> Any:
    """An ``AsgHook`` that records each write in ``.actions`` as ``(method, args, kwargs)``.

    ``on_action[n]()`` runs right after the n-th write (something happening between two steps); a key
    ``"set_capacity"`` (a write's name) runs after the first write of that name, ``("set_capacity", 2)``
    after the second;
    ``kill_before(name, actions)`` returning True raises :class:`WorkerKilled` instead of that write (an
    exception instance: raises that);
    ``monitor()`` runs after every write (e.g. to sample healthy capacity)."""
    from phoenix_fleet.hooks.asg_hook import AsgHook

    class ScriptedHook(AsgHook):
        pass

    def wrap(name: str) -> Any:
        base = getattr(AsgHook, name)

        def method(self: Any, *args: Any, **kw: Any) -> Any:
            verdict = self.kill_before(name, self.actions) if self.kill_before is not None else None
            if isinstance(verdict, BaseException):
                raise verdict
            if verdict:
                raise WorkerKilled(f"killed before {name}{args}")
            self.actions.append((name, args, kw))
            result = base(self, *args, **kw)
            nth = count_of(self.actions, name)
            for key in (len(self.actions), (name, nth), name if nth == 1 else None):
                hook = self.on_action.get(key)
                if hook is not None:
                    hook()
            if self.monitor is not None:
                self.monitor()
            return result

        return method

    for name in MUTATING:
        setattr(ScriptedHook, name, wrap(name))
    hook = ScriptedHook(aws_conn_id="aws_default", region_name=REGION, **kwargs)
    hook.actions = []
    hook.on_action = dict(on_action or {})
    hook.kill_before = kill_before
    hook.monitor = monitor
    return hook


def count_of(actions: list[Any], name: str) -> int:
    return sum(1 for n, _, _ in actions if n == name)


def healthy_in_service(sandbox: Any, f: Fleet) -> int:
    """Instances of the group that are InService and healthy in its target group right now."""
    elbv2 = sandbox.client("elbv2", region_name=REGION)
    g = group(sandbox, f.asg)
    in_service = {i["InstanceId"] for i in g["Instances"] if i["LifecycleState"] == "InService"}
    th = elbv2.describe_target_health(TargetGroupArn=f.tg_arn)["TargetHealthDescriptions"]
    return sum(1 for d in th if d["Target"]["Id"] in in_service and d["TargetHealth"]["State"] == "healthy")


def terminations(hook: Any) -> list[str]:
    return [args[0] for name, args, _ in hook.actions if name == "terminate_instance"]


def record_calls(hook: Any) -> list[str]:
    """Every AWS operation the hook's sync clients send from now on (botocore ``before-call``)."""
    from phoenix_fleet.hooks.asg_hook import SERVICES

    seen: list[str] = []

    def note(model: Any = None, **_: Any) -> None:
        seen.append(model.name)

    for service in SERVICES:
        hook.client(service).meta.events.register("before-call", note)
    return seen


def operator(f: Fleet, **kwargs: Any) -> Any:
    """An AsgRecycleOperator for the fleet with test timings: warmup 0, tiny poll intervals."""
    from phoenix_fleet.operators.recycle_operators import AsgRecycleOperator

    policy = {"warmup_seconds": 0, "batch_size": 2, "max_surge": 2, **kwargs.pop("policy", {})}
    kwargs.setdefault("target_launch_template_version", 2)
    kwargs.setdefault("min_poll_interval", 0.01)
    kwargs.setdefault("poll_interval", 0.05)
    kwargs.setdefault("inline_wait_seconds", 0)
    kwargs.setdefault("lock_settle_seconds", 0.01)
    kwargs.setdefault("task_id", "recycle")
    return AsgRecycleOperator(asg_name=f.asg, region_name=REGION, policy=policy, **kwargs)


def assert_converged(sandbox: Any, f: Fleet, image: str, desired: int, *, max_size: int | None = None,
                     min_size: int = 1) -> dict[str, Any]:
    """The fleet is entirely on ``image`` at ``desired``, processes resumed, rollout tags gone, sizes restored."""
    g = group(sandbox, f.asg)
    images = fleet_images(sandbox, f.asg)
    assert set(images.values()) == {image}, images
    assert len(images) == desired == g["DesiredCapacity"], (len(images), g["DesiredCapacity"])
    assert all(i["LifecycleState"] == "InService" for i in g["Instances"]), g["Instances"]
    assert g["SuspendedProcesses"] == [], g["SuspendedProcesses"]
    assert not [t for t in g["Tags"] if t["Key"].startswith("phoenix:rollout:")], g["Tags"]
    assert g["MinSize"] == min_size
    assert g["MaxSize"] == (max_size if max_size is not None else desired + 1)
    return g


# ------------------------------------------------------------------------------------------------------
# throttling: answer the first calls of some operations with the service's throttling error


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Any:
        yield self.body


_THROTTLE = {
    "ec2": (503, b'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>RequestLimitExceeded</Code>'
                 b"<Message>Request limit exceeded.</Message></Error></Errors><RequestID>t</RequestID></Response>"),
    "query": (400, b'<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message>'
                   b"</Error><RequestId>t</RequestId></ErrorResponse>"),
}


def inject_throttling(hook: Any, plan: dict[tuple[str, str], int]) -> list[str]:
    """Make the hook's boto3 clients answer the first ``n`` calls of ``(service, Operation)`` with a throttling
    error (EC2 ``RequestLimitExceeded``, AutoScaling/ELBv2 ``Throttling``), inside botocore's retry loop
    (a ``before-send`` handler stands in for the HTTP reply). Returns the list of throttled calls."""
    from botocore.awsrequest import AWSResponse

    throttled: list[str] = []
    left = dict(plan)

    for (service, operation), _n in plan.items():
        status, body = _THROTTLE["ec2" if service == "ec2" else "query"]

        def reply(request: Any = None, _key: tuple[str, str] = (service, operation), _status: int = status,
                  _body: bytes = body, **_: Any) -> Any:
            if left[_key] <= 0:
                return None
            left[_key] -= 1
            throttled.append(f"{_key[0]}.{_key[1]}")
            return AWSResponse(request.url, _status, {}, _Raw(_body))

        hook.client(service).meta.events.register(f"before-send.{service}.{operation}", reply)
    return throttled


class SleepRecorder:
    """Stands in for the ``time`` module inside ``botocore.endpoint``: records retry sleeps, sleeps none."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def lose_replies(hook: Any, *, retried: bool = True) -> list[str]:
    """Make every write of the hook's AutoScaling client reach AWS (the sandbox) and be applied, then lose its
    reply: the first attempt of each write is sent for real and answered with a ``Throttling`` error instead,
    so botocore retries it (a lost reply: the retry meets what the first attempt did). With
    ``retried=False`` the reply is an ``InternalFailure`` instead and the caller sets ``max_attempts=1``: the
    hook itself sees the error. Describes are untouched. Returns the writes whose reply was lost."""
    from botocore.awsrequest import AWSResponse
    from botocore.httpsession import URLLib3Session

    lost: list[str] = []
    http = URLLib3Session()
    failure = (400, _THROTTLE["query"][1]) if retried else (
        500, b"<ErrorResponse><Error><Type>Receiver</Type><Code>InternalFailure</Code><Message>reply lost</Message>"
             b"</Error><RequestId>t</RequestId></ErrorResponse>")

    def reply(request: Any = None, event_name: str = "", **_: Any) -> Any:
        operation = event_name.rsplit(".", 1)[-1]
        if operation.startswith("Describe"):
            return None
        attempt = request.headers.get("amz-sdk-request", b"")
        attempt = attempt.decode() if isinstance(attempt, bytes) else str(attempt)
        if "attempt=1" not in attempt:
            return None  # a retry: answered for real
        http.send(request)  # applied...
        lost.append(operation)
        return AWSResponse(request.url, failure[0], {}, _Raw(failure[1]))  # ...and its reply lost

    hook.client("autoscaling").meta.events.register("before-send.autoscaling", reply)
    return lost
