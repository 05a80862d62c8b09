"""Publish then apply with real Terraform against the sandbox fleet (include/terraform/envs/sandbox, in a copy).

One fleet per module (building it costs a Terraform apply): the sandbox is reset once, seeded, the network the
fleet root looks up is made with boto3 (the ALB of the network root would cost a fixed minute of provider waits),
and the fleet root is applied from a temporary copy of include/terraform. Then:

* publish a new web image (the real publish operators), then a newer one (``latest`` moves past the first);
  ``TerraformApplyOperator`` given the first release (``release_images``, what the rollout passes from the event)
  moves the web launch templates to exactly that AMI, not to what ``latest`` holds at plan time (the guard passes:
  only web's launch-template and ASG version updates, only to that AMI), the ASGs follow (a replacement instance
  runs it), ``VerifyAsgLaunchTemplatesOperator`` agrees; the worker role's group (native backend, made outside
  the root) is untouched;
* the next apply of that release plans nothing: a successful no-op;
* the state lives in the sandbox's S3 (the web role's ``backend_config``), with no lock left after a run;
* a plan that destroys (a group dropped) or replaces (a forced-new attribute changed in a copy of the root) is
  refused, naming the addresses, and nothing is applied.

Timings on the 2-core CI box (under load): building the fleet ~35-45 s (module setup), the release apply ~40 s,
the no-op ~20 s, each refused plan ~25 s. Terraform's own cost is the AWS provider starting (~4 s CPU per start;
plan, show and apply start it 1-3 times each).

Never skipped: without terraform these fail and say so. Each test prints its Terraform timings.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_fleet import sandbox_network
from phoenix_fleet.operators.apply_operators import TerraformApplyOperator, VerifyAsgLaunchTemplatesOperator
from phoenix_fleet.operators.publish_operators import (
    CopyImageToRegionOperator,
    PublishReleaseOperator,
    ReleaseImageOperator,
    image_asset,
)
from phoenix_fleet.release.plan_guard import PlanGuardError
from phoenix_fleet.release.versions import Version

from tests.helpers.airflow_run import make_context, run_task
from tests.helpers.iam_enforced import assert_no_denials, enforce_iam

pytestmark = [pytest.mark.terraform, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]
TERRAFORM_DIR = REPO / "include" / "terraform"
REGION = "us-east-1"
ENV = "sandbox"
WEB_GROUPS = ("sandbox-web-a", "sandbox-web-b")
STATE_KEY = "sandbox/fleet.tfstate"
# Durations are printed and recorded in the JUnit report (record_property), never asserted: a wall-clock
# bound in a test fails on a loaded machine for no fault of the code. Speed goals live in bench/.


def _env(sandbox: Any) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_ENDPOINT_URL": sandbox.endpoint_url,
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(
            {
                "conn_type": "aws",
                "login": "testing",
                "password": "testing",
                "extra": {"endpoint_url": sandbox.endpoint_url, "region_name": REGION},
            }
        ),
    }


class Fleet:
    def __init__(self, sandbox: Any, tmp: Path, seeded: dict[str, Any]) -> None:
        self.sandbox = sandbox
        self.tmp = tmp
        self.seeded = seeded
        self.copy = tmp / "terraform"
        shutil.copytree(
            TERRAFORM_DIR,
            self.copy,
            ignore=shutil.ignore_patterns(".terraform", "*.tfstate", "*.tfstate.*", "*.tfplan", "terraform.tfvars*"),
        )
        self.workdir = self.copy / "envs" / "sandbox"
        self.native: dict[str, Any] = {}
        self.release: dict[str, str] = {}  # the release the apply tests roll out ({region: AMI})
        self.principals: dict[str, Any] = {}  # the IAM users of include/iam/ (enforce_iam)
        self.state_dir = tmp / "tf-cli"  # CLI config + the plugin cache shared by every run of the module
        self.config = tmp / "include" / "fleet.yaml"
        self.config.parent.mkdir()
        role = {
            "env": "sandbox",
            "image": {
                "packer_template": "packer/phoenix.pkr.hcl",
                "base_ami": {"name": "phoenix-base-debian-12-*", "owners": ["self"]},
            },
            "asgs": {"tags": {"phoenix:role": "web", "phoenix:env": ENV}},
            "regions": [REGION],
            "share_with_accounts": ["111122223333"],
            "terraform": {
                "backend": "terraform",
                "workdir": str(self.workdir),
                "backend_config": {"bucket": seeded["state_bucket"], "key": STATE_KEY, "region": REGION},
            },
        }
        self.config.write_text(
            yaml.safe_dump({"version": 1, "artifacts_bucket": "phoenix-fleet-artifacts", "roles": {"web": role}})
        )

    def apply_op(self, task_id: str = "apply", **kwargs: Any) -> TerraformApplyOperator:
        kwargs.setdefault("variables", {"endpoint": self.sandbox.endpoint_url})
        kwargs.setdefault("role", "web")
        kwargs.setdefault("region_name", REGION)
        if self.release:
            kwargs.setdefault("release_images", self.release)
        return TerraformApplyOperator(
            task_id=task_id, config_path=str(self.config), state_dir=str(self.state_dir), lock_timeout="30s", **kwargs
        )

    def lt_image(self, asg_name: str) -> tuple[str, int, str]:
        """(ASG's template version spec, template default number, ImageId of the version the ASG resolves to)."""
        asg = self.sandbox.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[asg_name])[
            "AutoScalingGroups"
        ][0]
        spec = asg["LaunchTemplate"]
        ec2 = self.sandbox.client("ec2")
        lt = ec2.describe_launch_templates(LaunchTemplateIds=[spec["LaunchTemplateId"]])["LaunchTemplates"][0]
        data = ec2.describe_launch_template_versions(LaunchTemplateId=lt["LaunchTemplateId"], Versions=[spec["Version"]])[
            "LaunchTemplateVersions"
        ][0]["LaunchTemplateData"]
        return spec["Version"], lt["DefaultVersionNumber"], data["ImageId"]


@pytest.fixture(scope="module")
def fleet(sandbox: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    if shutil.which("terraform") is None:
        pytest.fail("terraform is not on PATH: the Terraform tests must run (never skipped).", pytrace=False)
    from sandbox.seed import seed

    with pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"):
            mp.delenv(name, raising=False)
        for k, v in _env(sandbox).items():
            mp.setenv(k, v)
        sandbox.reset(config=True)
        started = time.monotonic()
        seeded = seed(sandbox.endpoint_url)
        sandbox_network(sandbox)
        fleet = Fleet(sandbox, tmp_path_factory.mktemp("apply-terraform"), seeded)
        # building the fleet creates everything: one plain `apply -auto-approve` (the operator would refuse creates
        # unless allowed, and its plan + show + apply cost three provider start-ups instead of one apply's)
        from phoenix_fleet.hooks.terraform_hook import TerraformHook, backend_config_args, var_args

        build = TerraformHook(fleet.workdir, state_dir=fleet.state_dir, lock_timeout="30s")
        build.init(backend_config_args({"bucket": seeded["state_bucket"], "key": STATE_KEY, "region": REGION}))
        build.run(["apply", "-input=false", "-no-color", "-auto-approve", *var_args({"endpoint": sandbox.endpoint_url})])
        build.cleanup()
        from sandbox.native_groups import make_native_groups

        fleet.native = make_native_groups(sandbox.endpoint_url, roles=["worker"])  # the native backend's, not the root's
        print(f"\nfleet built in {time.monotonic() - started:.1f}s")
        # from here on IAM is enforced: Terraform runs as phoenix-terraform (include/iam/terraform.json, the role's
        # terraform.aws_conn_id), the operators' own calls and publish as phoenix-worker; the build above was the
        # account root's (creating the fleet is not the release principal's job)
        fleet.principals = enforce_iam(sandbox, mp, fleet.config)
        try:
            yield fleet
        finally:
            sandbox.update_config(iam_access_control=False)


@pytest.fixture(autouse=True)
def iam_enforced(fleet: Fleet, request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test starts with an empty audit and fails at teardown naming every principal and action the sandbox
    refused (also a denial that Terraform or our code survived)."""
    fleet.sandbox.realism.iam_audit.clear()
    yield
    assert_no_denials(fleet.sandbox, request.node.nodeid)


def calls_by(audit: dict[str, Any], user: str) -> dict[str, int]:
    """Allowed calls per action of the IAM user ``user`` in a sandbox audit."""
    return {c["action"]: c["allowed"] for c in audit["calls"] if c["principal"].endswith(f":user/{user}")}


def bake_web(fleet: Fleet, version: str) -> str:
    """What bake + verify leave: a verified web AMI made from the seeded base image."""
    ec2 = fleet.sandbox.client("ec2")
    builder = ec2.run_instances(ImageId=fleet.seeded["base_ami"]["id"], MinCount=1, MaxCount=1)["Instances"][0][
        "InstanceId"
    ]
    for _ in range(4):
        ec2.describe_instances(InstanceIds=[builder])
    ami = ec2.create_image(InstanceId=builder, Name=f"phoenix-web-{version}")["ImageId"]
    ec2.create_tags(
        Resources=[ami],
        Tags=[
            {"Key": k, "Value": v}
            for k, v in {"phoenix:role": "web", "phoenix:version": version, "phoenix:verified": "true"}.items()
        ],
    )
    for _ in range(10):
        if ec2.describe_images(ImageIds=[ami])["Images"][0]["State"] == "available":
            break
    ec2.terminate_instances(InstanceIds=[builder])
    return ami


def publish_web(fleet: Fleet, ami: str, run_id: str = "manual__test") -> dict[str, Any]:
    from airflow.sdk.execution_time.context import OutletEventAccessors

    cfg = str(fleet.config)
    ctx = make_context(outlet_events=OutletEventAccessors(), run_id=run_id)
    rel = run_task(ReleaseImageOperator(task_id="release", role="web", ami_id=ami, config_path=cfg), ctx).result
    copy = run_task(
        CopyImageToRegionOperator(task_id="copy", ami_id=ami, source_region=REGION, dest_region=REGION), ctx
    ).result
    run_task(PublishReleaseOperator(task_id="publish", role="web", release=rel, copies=[copy], config_path=cfg), ctx)
    return ctx["outlet_events"][image_asset("web")].extra


def test_apply_moves_the_launch_templates_and_the_asgs_follow(fleet: Fleet, record_property: Any) -> None:
    started = time.monotonic()
    seeded_ami = fleet.seeded["roles"]["web"]["ami_id"]
    seeded_version = Version.parse(fleet.seeded["roles"]["web"]["version"])
    version = str(Version(seeded_version.date, seeded_version.n + 1))
    new_ami = bake_web(fleet, version)
    extra = publish_web(fleet, new_ami, run_id="manual__v2")
    assert extra["version"] == version and extra["amis"] == {REGION: new_ami}
    assert extra["previous_version"] == str(seeded_version)
    # a newer release is published before this one's rollout applies it: `latest` has moved past the event (what
    # that publish leaves in SSM, written here directly: the publish path itself ran just above)
    newer = str(Version(seeded_version.date, seeded_version.n + 2))
    newer_ami = bake_web(fleet, newer)
    ssm = fleet.sandbox.client("ssm")
    moved = ssm.put_parameter(Name="/phoenix/images/web/latest", Value=newer_ami, Type="String",
                              DataType="aws:ec2:image", Overwrite=True)["Version"]
    ssm.label_parameter_version(Name="/phoenix/images/web/latest", ParameterVersion=moved, Labels=[f"v{newer}"])
    ssm.put_parameter(Name="/phoenix/images/web/latest-version", Value=newer, Type="String", Overwrite=True)
    assert newer_ami != new_ami
    fleet.release = dict(extra["amis"])
    worker_lt = fleet.lt_image("sandbox-worker-a")
    for name in WEB_GROUPS:
        assert fleet.lt_image(name)[2] == seeded_ami  # not yet: Terraform has not run

    # a dry run plans and guards as the real run will, and applies nothing
    dry = run_task(fleet.apply_op(dry_run=True), make_context()).result
    assert dry["dry_run"] is True and dry["changed"] is True and dry["allowed"] == []
    assert sorted(dry["launch_templates"]) == [
        f'module.service["{k}"].aws_launch_template.this' for k in ("web-a", "web-b")
    ]
    for name in WEB_GROUPS:
        assert fleet.lt_image(name) == ("1", 1, seeded_ami), name

    t0 = time.monotonic()
    ctx = make_context()
    result = run_task(fleet.apply_op(), ctx).result
    apply_seconds = time.monotonic() - t0
    assert result["changed"] is True and result["allowed"] == []
    assert sorted(result["launch_templates"]) == [
        f'module.service["{k}"].aws_launch_template.this' for k in ("web-a", "web-b")
    ]
    assert sorted(result["asgs"]) == [f'module.service["{k}"].aws_autoscaling_group.this' for k in ("web-a", "web-b")]
    # the outputs land in XCom
    assert sorted(result["outputs"]["roles"]["web"]["asg_names"]) == list(WEB_GROUPS)
    assert ctx["ti"].xcom["outputs"] == result["outputs"]
    assert {g["image_id"] for k, g in result["outputs"]["service_groups"].items() if g["role"] == "web"} == {new_ami}

    for name in WEB_GROUPS:
        spec, default, image = fleet.lt_image(name)
        assert (spec, default, image) == ("2", 2, new_ami), name  # the release's AMI, not `latest`'s newer one
    assert fleet.lt_image("sandbox-worker-a") == worker_lt  # the native backend's template: not the root's to touch

    # Terraform ran as the Terraform principal, holding only include/iam/terraform.json (denials fail the test at
    # teardown, naming the action): its plan, the new template versions, the groups moved, the S3 state and lock
    terraform_calls = calls_by(fleet.sandbox.iam_audit(), "phoenix-terraform")
    for action in ("ec2:DescribeLaunchTemplateVersions", "ec2:CreateLaunchTemplateVersion",
                   "autoscaling:UpdateAutoScalingGroup", "s3:GetObject", "s3:PutObject",
                   "s3:DeleteObject"):
        assert terraform_calls.get(action), f"phoenix-terraform made no {action} call: {terraform_calls}"

    # the state is in the sandbox's S3, unlocked; the working copy holds none
    s3 = fleet.sandbox.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=fleet.seeded["state_bucket"]).get("Contents", [])]
    assert keys == [STATE_KEY] and not (fleet.workdir / "terraform.tfstate").exists()

    # the post-apply check agrees (the rollout gives it the release's AMI too)
    check = run_task(
        VerifyAsgLaunchTemplatesOperator(task_id="verify", role="web", image_id=new_ami, config_path=str(fleet.config)),
        make_context(),
    ).result
    assert check["image_id"] == new_ami and sorted({a["asg_name"] for a in check["asgs"]}) == list(WEB_GROUPS)

    # the ASGs follow: a replacement (what the recycler triggers) runs the new image
    autoscaling, ec2 = fleet.sandbox.client("autoscaling"), fleet.sandbox.client("ec2")
    group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["sandbox-web-a"])["AutoScalingGroups"][0]
    victim = group["Instances"][0]["InstanceId"]
    autoscaling.terminate_instance_in_auto_scaling_group(InstanceId=victim, ShouldDecrementDesiredCapacity=False)
    group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["sandbox-web-a"])["AutoScalingGroups"][0]
    fresh = [i["InstanceId"] for i in group["Instances"] if i["InstanceId"] != victim]
    images = {i["ImageId"] for r in ec2.describe_instances(InstanceIds=fresh)["Reservations"] for i in r["Instances"]}
    assert new_ami in images

    total = time.monotonic() - started
    print(f"\nTerraformApplyOperator (init, plan, show, guard, apply, output): {apply_seconds:.1f}s; test {total:.1f}s")
    record_property("terraform_release_apply_seconds", round(apply_seconds, 1))


def test_the_next_apply_is_a_no_op(fleet: Fleet, record_property: Any) -> None:
    started = time.monotonic()
    pointer = fleet.release[REGION]  # the release applied above (`latest` holds a newer one)
    result = run_task(fleet.apply_op(), make_context()).result
    seconds = time.monotonic() - started
    assert result["changed"] is False and result["launch_templates"] == [] and result["asgs"] == []
    assert result["outputs"]["roles"]["web"]["image_parameter"] == "/phoenix/images/web/latest"
    for name in WEB_GROUPS:
        assert fleet.lt_image(name)[2] == pointer
    print(f"\nno-op apply (init, plan exit 0, output): {seconds:.1f}s")
    record_property("terraform_noop_apply_seconds", round(seconds, 1))


def _unchanged(fleet: Fleet, before: dict[str, Any]) -> None:
    assert {name: fleet.lt_image(name) for name in before} == before
    names = {
        g["AutoScalingGroupName"]
        for g in fleet.sandbox.client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
    }
    assert {"sandbox-web-a", "sandbox-web-b", "sandbox-worker-a"} <= names and not any(n.endswith("-v2") for n in names)


def test_the_guard_refuses_a_destroy_and_names_it(fleet: Fleet, record_property: Any) -> None:
    started = time.monotonic()
    before = {name: fleet.lt_image(name) for name in (*WEB_GROUPS, "sandbox-worker-a")}
    groups = {"web-a": {"role": "web"}}  # a run that would drop the web-b group
    with pytest.raises(PlanGuardError) as exc:
        run_task(fleet.apply_op(variables={"endpoint": fleet.sandbox.endpoint_url, "service_groups": groups}), make_context())
    msg = str(exc.value)
    for address in (
        'module.service["web-b"].aws_autoscaling_group.this',
        'module.service["web-b"].aws_launch_template.this',
        'module.service["web-b"].aws_lb_target_group.this',
    ):
        assert f"{address}: would destroy (delete)" in msg, msg
    assert "Fix:" in msg
    _unchanged(fleet, before)
    seconds = time.monotonic() - started
    print(f"\nrefused destroy (init, plan, show, guard): {seconds:.1f}s")
    record_property("terraform_guard_destroy_seconds", round(seconds, 1))


def test_the_guard_refuses_a_replacement_and_names_it(fleet: Fleet, record_property: Any) -> None:
    started = time.monotonic()
    before = {name: fleet.lt_image(name) for name in (*WEB_GROUPS, "sandbox-worker-a")}
    # a copy of the root (another working directory on the same S3 state) where the ASG name, which forces a new
    # group, changed
    variant = fleet.tmp / "variant"
    shutil.rmtree(variant, ignore_errors=True)
    shutil.copytree(fleet.copy, variant, ignore=shutil.ignore_patterns(".terraform"))
    module = variant / "modules" / "service" / "main.tf"
    text = module.read_text()
    line = "  name                      = var.name\n"
    assert line in text, "the service module changed: adapt this test"
    module.write_text(text.replace(line, '  name                      = "${var.name}-v2"\n', 1))
    with pytest.raises(PlanGuardError) as exc:
        run_task(fleet.apply_op(workdir=str(variant / "envs" / "sandbox")), make_context())
    msg = str(exc.value)
    for key in ("web-a", "web-b"):
        assert f'module.service["{key}"].aws_autoscaling_group.this: would replace' in msg, msg
    assert "forced by [['name']]" in msg
    _unchanged(fleet, before)
    seconds = time.monotonic() - started
    print(f"\nrefused replacement (init, plan, show, guard): {seconds:.1f}s")
    record_property("terraform_guard_replace_seconds", round(seconds, 1))
