"""The fleet, built by real Terraform against the sandbox.

Seeds the sandbox, applies ``include/terraform/envs/sandbox/network`` and then the fleet root
``include/terraform/envs/sandbox`` (from a temporary copy, with the provider from the local mirror), checks the fleet
through boto3, and checks that Terraform and the rolling recycler do not fight:

* the fleet root applies while the network root still waits for its ALB (as ``make demo`` does: as soon as
  ``sandbox.demo.network_ready`` sees what the fleet root looks up);
* right after apply, ``plan -detailed-exitcode`` is empty (exit 0) in both roots;
* ``fleet_rollout_web`` can be the first DAG run on the fresh sandbox (dag.test): the seed published web in both
  of its regions, so its plan finds an AMI in each (the fleet itself runs in us-east-1);
* what the recycler changes (desired capacity, a raised max size, suspended processes, ``phoenix:rollout:*`` tags)
  is not drift;
* moving ``/phoenix/images/web/latest`` to a new AMI plans exactly launch-template and ASG updates for the web
  groups (exit 2, read from ``terraform show -json``), the apply moves them to the new template version, and the
  next plan is empty again;
* both roots keep their state in the sandbox's S3 (the partial ``backend "s3"``, configured at init as
  include/fleet.yaml's ``backend_config`` says), locked with Terraform's S3 lock file: no local state file, no
  lock object left behind.

Never skipped: if ``terraform`` is missing the test fails and says so.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from phoenix_fleet.terraform_env import run_terraform, terraform_env

pytestmark = [pytest.mark.terraform, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]
TERRAFORM_DIR = REPO / "include" / "terraform"
ENV = "sandbox"
GROUPS = {"web-a": "web", "web-b": "web"}  # Terraform roles only: worker (native backend) is made outside the root
NETWORK_STATE_KEY = "sandbox/network.tfstate"
TF_TIMEOUT = 300


# --------------------------------------------------------------------------------------------- moto fixes


def fix_moto_for_terraform(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two moto 5.2.5 bugs that make every Terraform plan show drift (the sandbox server gets the same fixes).

    1. AutoScaling ignores ``DefaultInstanceWarmup`` on create and update (never stored, never described): the
       provider then plans ``default_instance_warmup 0 -> N`` forever.
    2. ``CreateLaunchTemplate`` copies the template's own ``TagSpecifications`` (resource type
       ``launch-template``, which AWS applies to the template itself) into version 1's launch template data:
       the provider reads back a ``tag_specifications { resource_type = "launch-template" }`` block it never set.

    3. ``CreateLaunchTemplateVersion`` stores the request's ``UserData`` as a plain string (``CreateLaunchTemplate``
       decodes it into moto's ``Base64EncodedString``). Any later launch from that version, e.g. the replacement
       the ASG starts when the recycler terminates an instance, fails an assertion: an HTML 500.

    All wrap moto in this process only, for this test (the sandbox fixture serves from a thread of it).
    """
    from moto.autoscaling.responses import AutoScalingResponse
    from moto.core.types import Base64EncodedString
    from moto.ec2.models.launch_templates import LaunchTemplate, LaunchTemplateBackend
    from moto.ec2.utils import parse_user_data

    def keep_warmup(original: Any) -> Any:
        def wrapper(self: Any) -> Any:
            result = original(self)
            warmup = self._get_int_param("DefaultInstanceWarmup")
            if warmup is not None:
                group = self.autoscaling_backend.autoscaling_groups.get(
                    self._get_param("AutoScalingGroupName")
                )
                if group is not None:
                    group.default_instance_warmup = warmup
            return result

        wrapper.phoenix_fix = True  # type: ignore[attr-defined]
        return wrapper

    for name in ("create_auto_scaling_group", "update_auto_scaling_group"):
        original = getattr(AutoScalingResponse, name)
        if not getattr(original, "phoenix_fix", False):
            monkeypatch.setattr(AutoScalingResponse, name, keep_warmup(original))

    original_create = LaunchTemplateBackend.create_launch_template
    if not getattr(original_create, "phoenix_fix", False):

        def create_launch_template(
            self: Any, name: str, description: str, template_data: dict[str, Any], tag_spec: dict[str, Any]
        ) -> Any:
            specs = [
                s
                for s in template_data.get("TagSpecifications", [])
                if s.get("ResourceType") != "launch-template"
            ]
            data = {k: v for k, v in template_data.items() if k != "TagSpecifications"}
            if specs:
                data["TagSpecifications"] = specs
            return original_create(self, name, description, data, tag_spec)

        create_launch_template.phoenix_fix = True  # type: ignore[attr-defined]
        monkeypatch.setattr(LaunchTemplateBackend, "create_launch_template", create_launch_template)

    original_version = LaunchTemplate.create_version
    if not getattr(original_version, "phoenix_fix", False):

        def create_version(self: Any, data: dict[str, Any], description: str) -> Any:
            user_data = data.get("UserData")
            if user_data is not None and not isinstance(user_data, Base64EncodedString):
                data = {**data, "UserData": parse_user_data(user_data or None)}
            return original_version(self, data, description)

        create_version.phoenix_fix = True  # type: ignore[attr-defined]
        monkeypatch.setattr(LaunchTemplate, "create_version", create_version)


# --------------------------------------------------------------------------------------------- helpers


def require_terraform() -> str:
    found = shutil.which("terraform")
    if found is None:
        pytest.fail(
            "terraform is not on PATH: the Terraform tests must run (they are never skipped). "
            "Install Terraform >= 1.5 and make sure `terraform version` works.",
            pytrace=False,
        )
    return found


class Roots:
    """A temporary copy of include/terraform with the network and fleet roots pointed at the sandbox."""

    def __init__(self, tmp: Path, endpoint_url: str, base_env: dict[str, str]) -> None:
        self.copy = tmp / "terraform"
        shutil.copytree(
            TERRAFORM_DIR,
            self.copy,
            ignore=shutil.ignore_patterns(
                ".terraform", "*.tfstate", "*.tfstate.*", "*.tfplan", "terraform.tfvars*"
            ),
        )
        self.fleet = self.copy / "envs" / "sandbox"
        self.network = self.fleet / "network"
        for root in (self.network, self.fleet):
            (root / "terraform.tfvars.json").write_text(json.dumps({"endpoint": endpoint_url, "env": ENV}))
        self.env = terraform_env(base_env, workdir_state_dir=tmp / "tf-cli")
        # the web role's backend settings from include/fleet.yaml; the network root keeps its state next to them
        from phoenix_fleet.config import load_fleet_config
        from phoenix_fleet.hooks.terraform_hook import backend_config_args

        self.backend = dict(load_fleet_config(REPO / "include" / "fleet.yaml").role("web").terraform.backend_config)
        self.state_keys = {self.fleet: str(self.backend["key"]), self.network: NETWORK_STATE_KEY}
        self.backend_args = {
            root: [f"-backend-config={a}" for a in backend_config_args({**self.backend, "key": key})]
            for root, key in self.state_keys.items()
        }

    def init(self, root: Path) -> None:
        self.run(root, "init", "-input=false", *self.backend_args[root])

    def run(self, root: Path, *args: str, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
        proc = run_terraform([*args, "-no-color"], cwd=root, env=self.env, timeout=TF_TIMEOUT)
        if proc.returncode not in ok:
            pytest.fail(
                f"terraform {' '.join(args)} in {root.relative_to(self.copy)} exited {proc.returncode} "
                f"(expected {ok}):\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}",
                pytrace=False,
            )
        return proc

    def timed_apply(self, root: Path, *args: str) -> float:
        start = time.monotonic()
        self.run(root, "apply", "-input=false", "-auto-approve", *args)
        return time.monotonic() - start

    def plan_exitcode(self, root: Path, *args: str) -> tuple[int, str]:
        proc = self.run(root, "plan", "-input=false", "-detailed-exitcode", *args, ok=(0, 2))
        return proc.returncode, proc.stdout

    def outputs(self, root: Path) -> dict[str, Any]:
        raw = json.loads(self.run(root, "output", "-json").stdout)
        return {k: v["value"] for k, v in raw.items()}


def tags_of(resource: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def wait_for(probe: Any, what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}", pytrace=False)
        time.sleep(0.1)


def bake_release(sandbox: Any, role: str, source_ami: str, version: str) -> str:
    """What bake + verify produce: a verified release image of ``role`` (made from the base image)."""
    ec2 = sandbox.client("ec2")
    builder = ec2.run_instances(ImageId=source_ami, MinCount=1, MaxCount=1, InstanceType="t3.micro")[
        "Instances"
    ][0]["InstanceId"]
    wait_for(
        lambda: (
            ec2.describe_instances(InstanceIds=[builder])["Reservations"][0]["Instances"][0]["State"]["Name"]
            == "running"
        ),
        "the builder instance",
    )
    image_id = ec2.create_image(InstanceId=builder, Name=f"phoenix-{role}-{version}")["ImageId"]
    ec2.create_tags(
        Resources=[image_id],
        Tags=[
            {"Key": k, "Value": v}
            for k, v in {
                "phoenix:role": role,
                "phoenix:version": version,
                "phoenix:source-ami": source_ami,
                "phoenix:verified": "true",
                "phoenix:managed-by": "phoenix-fleet",
            }.items()
        ],
    )
    wait_for(
        lambda: ec2.describe_images(ImageIds=[image_id])["Images"][0]["State"] == "available", "the image"
    )
    ec2.terminate_instances(InstanceIds=[builder])
    return image_id


def show_plan(roots: Roots, plan_file: str) -> dict[str, Any]:
    return json.loads(roots.run(roots.fleet, "show", "-json", plan_file).stdout)


def changed_resources(shown: dict[str, Any]) -> dict[str, list[str]]:
    """Address -> actions of every resource a plan (``terraform show -json``) changes; no-ops and reads left out."""
    return {
        rc["address"]: rc["change"]["actions"]
        for rc in shown.get("resource_changes", [])
        if rc["change"]["actions"] not in (["no-op"], ["read"])
    }


def rollout_first(roots: Roots, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> float:
    """``fleet_rollout_web`` is the first DAG run on the fresh sandbox (seeded, fleet built, nothing released):
    it succeeds. Its role lists two regions; the fleet runs in one. The seed published web in both."""
    import yaml
    from e2e_fleet import dag_from

    from sandbox.airflow_env import fleet_config_with_warmup

    config = fleet_config_with_warmup(tmp / "include", 0)
    raw = yaml.safe_load(config.read_text())
    raw["roles"]["web"]["terraform"]["workdir"] = str(roots.fleet)  # the copy this test applied
    config.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("PHOENIX_FLEET_CONFIG", str(config))
    assert len(raw["roles"]["web"]["regions"]) > 1
    start = time.monotonic()
    run = dag_from("fleet_rollout", "fleet_rollout_web").test(run_conf={})
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success", states
    assert states["plan"] == states["apply"] == states["summary"] == "success", states
    return time.monotonic() - start


# --------------------------------------------------------------------------------------------- the test


@pytest.fixture
def fleet_sandbox(sandbox_clean: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    fix_moto_for_terraform(monkeypatch)
    return sandbox_clean


def test_terraform_builds_the_fleet_and_does_not_fight_the_recycler(
    fleet_sandbox: Any, airflow_db: str, tmp_path: Path, record_property: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_terraform()
    from sandbox.seed import seed

    sandbox = fleet_sandbox
    seeded = seed(sandbox.endpoint_url)
    again = seed(sandbox.endpoint_url)
    assert again["created"] == [] and again["changed"] is False, (
        f"second seed changed things: {again['created']}"
    )
    role_ami = {role: info["ami_id"] for role, info in seeded["roles"].items()}

    roots = Roots(tmp_path, sandbox.endpoint_url, dict(os.environ))
    assert roots.backend["bucket"] == seeded["state_bucket"]
    roots.init(roots.network)
    roots.init(roots.fleet)

    # as `make demo` does: the fleet root applies as soon as what it looks up exists, while the network root still
    # sits out the provider's fixed ALB waits (sandbox/demo.py)
    from sandbox.demo import network_ready
    from sandbox.demo_phases import Background, wait_until

    assert not network_ready(sandbox.endpoint_url)
    network = Background("terraform apply (network root)", lambda: roots.timed_apply(roots.network))
    waited = wait_until("the network's resources", lambda: network_ready(sandbox.endpoint_url), 300, also=network)
    fleet_seconds = roots.timed_apply(roots.fleet)
    network_seconds = network.join(timeout=TF_TIMEOUT)
    print(f"\nterraform apply: network root {network_seconds:.1f}s, fleet root {fleet_seconds:.1f}s "
          f"(started {waited:.1f}s into the network's)")
    record_property("terraform_apply_network_seconds", round(network_seconds, 1))
    record_property("terraform_apply_fleet_seconds", round(fleet_seconds, 1))
    # (durations are recorded, not asserted: a wall-clock bound fails on a loaded machine; about 60 s of the network
    # root are the provider's fixed ALB waits)

    # ---------------------------------------------------------------- the state, in the sandbox's S3
    s3 = sandbox.client("s3")
    state_objects = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=seeded["state_bucket"]).get("Contents", []))
    assert state_objects == sorted(roots.state_keys.values()), state_objects  # no .tflock left
    for root, key in roots.state_keys.items():
        assert not (root / "terraform.tfstate").exists()
        state = json.loads(s3.get_object(Bucket=seeded["state_bucket"], Key=key)["Body"].read())
        assert state["resources"], key

    out = roots.outputs(roots.fleet)
    groups_out = out["service_groups"]
    assert set(groups_out) == set(GROUPS)
    assert sorted(out["roles"]) == ["web"]
    assert sorted(out["roles"]["web"]["asg_names"]) == ["sandbox-web-a", "sandbox-web-b"]

    # ---------------------------------------------------------------- the fleet, seen through the AWS API
    asg = sandbox.client("autoscaling")
    ec2 = sandbox.client("ec2")
    elbv2 = sandbox.client("elbv2")

    groups = {
        g["AutoScalingGroupName"]: g
        for g in asg.describe_auto_scaling_groups(Filters=[{"Name": "tag:phoenix:env", "Values": [ENV]}])[
            "AutoScalingGroups"
        ]
    }
    assert sorted(groups) == sorted(f"{ENV}-{key}" for key in GROUPS)
    net = roots.outputs(roots.network)
    subnet_azs = {
        s["SubnetId"]: s["AvailabilityZone"]
        for s in ec2.describe_subnets(SubnetIds=net["subnet_ids"])["Subnets"]
    }
    assert len(set(subnet_azs.values())) == 2

    for key, role in GROUPS.items():
        name = f"{ENV}-{key}"
        group, group_out = groups[name], groups_out[key]
        # ASG settings
        assert group["HealthCheckType"] == "ELB"
        assert group["HealthCheckGracePeriod"] == 60
        assert group.get("DefaultInstanceWarmup") == 30, (
            "DefaultInstanceWarmup not stored (moto fix missing?)"
        )
        assert (group["MinSize"], group["MaxSize"], group["DesiredCapacity"]) == (1, 4, 2)
        assert group["TargetGroupARNs"] == [group_out["target_group_arn"]]
        assert set(group["VPCZoneIdentifier"].split(",")) == set(subnet_azs)
        assert group["LaunchTemplate"]["LaunchTemplateId"] == group_out["launch_template_id"]
        assert group["LaunchTemplate"]["Version"] == "1"
        tags = {t["Key"]: (t["Value"], t["PropagateAtLaunch"]) for t in group["Tags"]}
        assert tags["phoenix:role"] == (role, True)
        assert tags["phoenix:env"] == (ENV, True)
        assert tags["phoenix:asg-name"] == (name, False)

        # launch template: IMDSv2 required, encrypted root volume, the role's AMI, instance tags
        lt = ec2.describe_launch_template_versions(
            LaunchTemplateId=group_out["launch_template_id"], Versions=["$Latest"]
        )["LaunchTemplateVersions"][0]
        data = lt["LaunchTemplateData"]
        assert lt["VersionNumber"] == 1 and lt["DefaultVersion"] is True
        assert data["ImageId"] == role_ami[role]
        assert data["MetadataOptions"]["HttpTokens"] == "required"
        assert data["MetadataOptions"]["HttpEndpoint"] == "enabled"
        (root_volume,) = data["BlockDeviceMappings"]
        assert root_volume["Ebs"]["Encrypted"] is True
        instance_spec = next(s for s in data["TagSpecifications"] if s["ResourceType"] == "instance")
        assert {"phoenix:role": role, "phoenix:env": ENV}.items() <= tags_of(instance_spec).items()

        # instances: two, on the role's AMI, tagged, registered in the target group
        ids = sorted(i["InstanceId"] for i in group["Instances"])
        assert len(ids) == 2, group["Instances"]
        instances = [
            i for r in ec2.describe_instances(InstanceIds=ids)["Reservations"] for i in r["Instances"]
        ]
        assert {i["ImageId"] for i in instances} == {role_ami[role]}
        for instance in instances:
            assert tags_of(instance).get("phoenix:role") == role
        registered = elbv2.describe_target_health(TargetGroupArn=group_out["target_group_arn"])
        assert sorted(t["Target"]["Id"] for t in registered["TargetHealthDescriptions"]) == ids

    listeners = elbv2.describe_listeners(LoadBalancerArn=net["alb_arn"])["Listeners"]
    forwards = {
        listener["Port"]: sorted(
            tg["TargetGroupArn"] for tg in listener["DefaultActions"][0]["ForwardConfig"]["TargetGroups"]
        )
        for listener in listeners
    }
    assert forwards == {80: sorted(groups_out[k]["target_group_arn"] for k in ("web-a", "web-b"))}

    # ---------------------------------------------------------------- no drift after apply
    for root in (roots.network, roots.fleet):
        code, text = roots.plan_exitcode(root)
        assert code == 0, f"plan right after apply is not empty ({root.name}):\n{text}"

    # ---------------------------------------------------------------- a fresh sandbox runs any DAG first
    rollout_seconds = rollout_first(roots, tmp_path, monkeypatch)
    print(f"fleet_rollout_web on the fresh sandbox: {rollout_seconds:.1f}s")
    record_property("rollout_web_first_seconds", round(rollout_seconds, 1))

    # ---------------------------------------------------------------- the recycler's changes are not drift
    recycled = f"{ENV}-web-a"
    asg.update_auto_scaling_group(AutoScalingGroupName=recycled, MaxSize=6)
    asg.set_desired_capacity(AutoScalingGroupName=recycled, DesiredCapacity=4)
    rollout_tags = {
        "phoenix:rollout:id": "r-test",
        "phoenix:rollout:phase": "forward",
        "phoenix:rollout:original": "desired=2 min=1 max=4",
    }
    asg.create_or_update_tags(
        Tags=[
            {
                "ResourceId": recycled,
                "ResourceType": "auto-scaling-group",
                "Key": k,
                "Value": v,
                "PropagateAtLaunch": False,
            }
            for k, v in rollout_tags.items()
        ]
    )
    suspended = ["AZRebalance", "AlarmNotification", "ScheduledActions"]
    asg.suspend_processes(AutoScalingGroupName=recycled, ScalingProcesses=suspended)
    code, text = roots.plan_exitcode(roots.fleet)
    assert code == 0, f"Terraform would fight the recycler:\n{text}"
    asg.resume_processes(AutoScalingGroupName=recycled, ScalingProcesses=suspended)
    asg.delete_tags(
        Tags=[{"ResourceId": recycled, "ResourceType": "auto-scaling-group", "Key": k} for k in rollout_tags]
    )
    asg.set_desired_capacity(AutoScalingGroupName=recycled, DesiredCapacity=2)
    asg.update_auto_scaling_group(AutoScalingGroupName=recycled, MaxSize=4)

    # ---------------------------------------------------------------- publish moves the web pointer
    ssm = sandbox.client("ssm")
    new_version = f"{dt.datetime.now(dt.UTC).date():%Y.%m.%d}-1"
    new_ami = bake_release(sandbox, "web", seeded["base_ami"]["id"], new_version)
    put = ssm.put_parameter(
        Name="/phoenix/images/web/latest",
        Value=new_ami,
        Type="String",
        DataType="aws:ec2:image",
        Overwrite=True,
    )
    ssm.label_parameter_version(
        Name="/phoenix/images/web/latest", ParameterVersion=put["Version"], Labels=[f"v{new_version}"]
    )
    ssm.put_parameter(
        Name="/phoenix/images/web/latest-version", Value=new_version, Type="String", Overwrite=True
    )

    code, text = roots.plan_exitcode(roots.fleet, "-out=release.tfplan")
    assert code == 2, f"moving the parameter planned nothing:\n{text}"
    shown = show_plan(roots, "release.tfplan")
    changes = changed_resources(shown)
    expected = {
        f'module.service["{key}"].{resource}': ["update"]
        for key in ("web-a", "web-b")
        for resource in ("aws_launch_template.this", "aws_autoscaling_group.this")
    }
    assert changes == expected, json.dumps(changes, indent=2)
    # the release pipeline's plan guard lets exactly this plan through
    from phoenix_fleet.release.plan_guard import check_plan

    summary = check_plan(shown)
    assert not summary.violations, summary.to_dict()
    assert sorted(summary.launch_templates + summary.asgs) == sorted(expected)

    update_seconds = roots.timed_apply(roots.fleet, "release.tfplan")
    print(f"terraform apply (new web AMI): {update_seconds:.1f}s")
    record_property("terraform_apply_release_seconds", round(update_seconds, 1))

    for key, role in GROUPS.items():
        name = f"{ENV}-{key}"
        group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]
        lt = ec2.describe_launch_templates(LaunchTemplateIds=[group["LaunchTemplate"]["LaunchTemplateId"]])[
            "LaunchTemplates"
        ][0]
        latest = ec2.describe_launch_template_versions(
            LaunchTemplateId=lt["LaunchTemplateId"], Versions=["$Latest"]
        )["LaunchTemplateVersions"][0]
        want_version = 2 if role == "web" else 1
        assert lt["LatestVersionNumber"] == lt["DefaultVersionNumber"] == want_version, (name, lt)
        assert group["LaunchTemplate"]["Version"] == str(want_version)
        assert latest["LaunchTemplateData"]["ImageId"] == (new_ami if role == "web" else role_ami[role])
        assert latest["LaunchTemplateData"]["MetadataOptions"]["HttpTokens"] == "required"
        # Terraform does not replace instances: they stay on the old image until the recycler acts
        ids = [i["InstanceId"] for i in group["Instances"]]
        images = {
            i["ImageId"]
            for r in ec2.describe_instances(InstanceIds=ids)["Reservations"]
            for i in r["Instances"]
        }
        assert images == {role_ami[role]}

    code, text = roots.plan_exitcode(roots.fleet)
    assert code == 0, f"plan after the release apply is not empty:\n{text}"

    # a replacement launched now (what the recycler triggers) comes from the new template version
    # (a fresh look: the recycler drill above scaled web-a out and in, which replaced its first instances)
    current = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[f"{ENV}-web-a"])["AutoScalingGroups"][0]
    victim = next(i["InstanceId"] for i in current["Instances"] if i["LifecycleState"] == "InService")
    asg.terminate_instance_in_auto_scaling_group(InstanceId=victim, ShouldDecrementDesiredCapacity=False)
    group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[f"{ENV}-web-a"])["AutoScalingGroups"][0]
    fresh = [i["InstanceId"] for i in group["Instances"] if i["InstanceId"] != victim]
    images = {
        i["InstanceId"]: i["ImageId"]
        for r in ec2.describe_instances(InstanceIds=fresh)["Reservations"]
        for i in r["Instances"]
    }
    assert new_ami in images.values(), images


def test_fleet_root_without_network_says_what_to_do(fleet_sandbox: Any, tmp_path: Path) -> None:
    """Planning the fleet root before the network root stops at a precondition naming the fix."""
    require_terraform()
    from sandbox.seed import seed

    seed(fleet_sandbox.endpoint_url)
    roots = Roots(tmp_path, fleet_sandbox.endpoint_url, dict(os.environ))
    roots.init(roots.fleet)
    proc = roots.run(roots.fleet, "plan", "-input=false", ok=(1,))
    message = " ".join((proc.stdout + proc.stderr).split())
    assert "Apply the network root first" in message, message
