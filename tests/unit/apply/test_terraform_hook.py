"""TerraformHook and TerraformApplyOperator with the real terraform CLI on a tiny root (built-in provider only).

The sandbox fleet (AWS provider, launch templates, ASGs) is applied in tests/e2e/test_apply_terraform.py; here the
CLI handling is checked fast: plan/show/apply/output, exit codes, the guard, the state lock, SIGINT to the
process group, streaming and argument handling. Never skipped: without terraform these fail and say so.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from phoenix_fleet.hooks.terraform_hook import (
    TerraformError,
    TerraformHook,
    TerraformStateLockedError,
    output_values,
    var_args,
)
from phoenix_fleet.operators.apply_operators import TerraformApplyOperator
from phoenix_fleet.release.plan_guard import PlanGuardError

from tests.helpers.airflow_run import make_context

pytestmark = pytest.mark.terraform

ROOT_TF = """
variable "image" {
  type = string
}
variable "generation" {
  type    = number
  default = 1
}
variable "groups" {
  type    = map(object({ role = string }))
  default = {}
}
variable "slow" {
  type    = bool
  default = false
}

resource "terraform_data" "template" {
  input = var.image
}

resource "terraform_data" "group" {
  triggers_replace = [var.generation]
}

resource "terraform_data" "slow" {
  count = var.slow ? 1 : 0
  input = var.image
  provisioner "local-exec" {
    command = "echo phoenix-slow-started; sleep 60"
  }
}

output "image" {
  value = terraform_data.template.output
}
output "roles" {
  value = { for k, g in var.groups : k => g.role }
}
output "secret" {
  value     = "s3cr3t"
  sensitive = true
}
"""


@pytest.fixture(scope="session")
def terraform_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One CLI config (and plugin cache) for every Terraform test of the session."""
    if shutil.which("terraform") is None:
        pytest.fail("terraform is not on PATH: the Terraform tests must run (never skipped).", pytrace=False)
    return tmp_path_factory.mktemp("tf-cli")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    (path / "main.tf").write_text(ROOT_TF)
    return path


def hook(root: Path, state_dir: Path, lines: list[str] | None = None, **kwargs: Any) -> TerraformHook:
    kwargs.setdefault("variables", {"image": "ami-1"})
    return TerraformHook(
        root, state_dir=state_dir, line_logger=(lines.append if lines is not None else None), **kwargs
    )


def test_plan_show_apply_output_and_no_op(root, terraform_state_dir):
    lines: list[str] = []
    h = hook(root, terraform_state_dir, lines, variables={"image": "ami-1", "groups": {"web-a": {"role": "web"}}})
    h.init()
    plan = h.scratch_dir() / "p.tfplan"
    assert h.plan(plan) is True  # exit 2
    shown = h.show_json(plan)
    assert sorted(rc["address"] for rc in shown["resource_changes"]) == ["terraform_data.group", "terraform_data.template"]
    h.apply_plan(plan)
    outputs = h.output_json()
    assert output_values(outputs) == {"image": "ami-1", "roles": {"web-a": "web"}, "secret": "<sensitive>"}
    assert any("Apply complete!" in line for line in lines)  # streamed into the log, line by line
    # the same again: no changes (exit 0)
    assert h.plan(h.scratch_dir() / "again.tfplan") is False
    assert (root / "terraform.tfstate").exists() and not (root / ".terraform").exists()  # TF_DATA_DIR is private
    h.cleanup()


def test_a_stale_saved_plan_is_not_applied(root, terraform_state_dir):
    h = hook(root, terraform_state_dir)
    h.init()
    plan = h.scratch_dir() / "p.tfplan"
    h.plan(plan)
    other = hook(root, terraform_state_dir, variables={"image": "ami-2"})
    other.init()
    other.plan(other.scratch_dir() / "o.tfplan")
    other.apply_plan(other.scratch_dir() / "o.tfplan")
    with pytest.raises(TerraformError, match="stale"):
        h.apply_plan(plan)


def test_a_held_state_lock_is_a_clear_error(root, terraform_state_dir):
    h = hook(root, terraform_state_dir, lock_timeout="1s")
    h.init()
    h.apply_plan(_plan(h))
    with open(root / "terraform.tfstate", "r+") as f:
        fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what another terraform holding the lock does
        started = time.monotonic()
        with pytest.raises(TerraformStateLockedError, match=r"state lock .* is held by someone else .*within 1s.*force-unlock"):
            h.plan(h.scratch_dir() / "locked.tfplan")
        assert time.monotonic() - started < 30
    assert h.plan(h.scratch_dir() / "free.tfplan") is False  # released: fine again


def live_in_group(pgid: int) -> list[str]:
    """Processes of a process group that are not zombies (a container's pid 1 may never reap orphans)."""
    live = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        state, group = fields[0], int(fields[2])
        if group == pgid and state != "Z":
            live.append(stat.split(" ", 2)[1])
    return live


def _plan(h: TerraformHook) -> Path:
    plan = h.scratch_dir() / "first.tfplan"
    h.plan(plan)
    return plan


def test_interrupt_sends_sigint_to_the_process_group(root, terraform_state_dir):
    lines: list[str] = []
    h = hook(root, terraform_state_dir, lines, variables={"image": "ami-1", "slow": True}, kill_grace_seconds=30)
    h.init()
    plan = _plan(h)
    errors: list[BaseException] = []

    def apply() -> None:
        try:
            h.apply_plan(plan)
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            errors.append(e)

    t = threading.Thread(target=apply)
    started = time.monotonic()
    t.start()
    deadline = time.monotonic() + 60
    while not any("phoenix-slow-started" in line for line in lines):
        assert time.monotonic() < deadline, "\n".join(lines)
        time.sleep(0.1)
    pid = h._proc.pid if h._proc else None
    assert pid is not None and os.getpgid(pid) == pid  # its own process group
    assert h.interrupt() is True
    t.join(60)
    assert not t.is_alive()
    assert time.monotonic() - started < 45  # the 60 s sleep (same group) was interrupted too
    assert live_in_group(pid) == []
    assert errors and isinstance(errors[0], TerraformError) and "interrupted" in str(errors[0])
    assert any("Interrupt received" in line or "interrupt" in line.lower() for line in lines)
    # Terraform stopped gracefully: the state is written and the lock released
    assert not (root / ".terraform.tfstate.lock.info").exists()


def test_arguments_are_lists_and_vars_are_hcl(root, terraform_state_dir):
    h = hook(root, terraform_state_dir)
    with pytest.raises(TypeError, match="list of arguments"):
        h.run("plan -out x")  # type: ignore[arg-type]
    assert var_args({"image": "ami-1", "n": 2, "m": {"a": {"role": "web"}}, "on": True}) == [
        "-var", "image=ami-1", "-var", "n=2", "-var", 'm={"a": {"role": "web"}}', "-var", "on=true",
    ]
    with pytest.raises(ValueError, match="not a Terraform variable name"):
        var_args({"bad name": 1})
    with pytest.raises(ValueError, match="lock_timeout"):
        hook(root, terraform_state_dir, lock_timeout="forever")


def test_failures_carry_the_output(root, terraform_state_dir):
    h = hook(root, terraform_state_dir, variables={"image": "ami-1", "generation": "not-a-number"})
    h.init()
    with pytest.raises(TerraformError, match=r"terraform plan failed \(exit 1\)") as exc:
        h.plan(h.scratch_dir() / "p.tfplan")
    assert "generation" in str(exc.value)


def test_operator_applies_guards_and_no_ops(root, terraform_state_dir):
    def op(**kwargs: Any) -> TerraformApplyOperator:
        kwargs.setdefault("variables", {"image": "ami-1"})
        return TerraformApplyOperator(
            task_id="apply", workdir=str(root), state_dir=str(terraform_state_dir), aws_conn_id=None,
            allow_local_state=True, **kwargs,  # a root without a backend (tests/unit/apply/test_terraform_backend.py)
        )

    # a first apply creates resources: refused unless creates are allowed (a dry run refuses alike)
    for dry in (False, "true"):
        with pytest.raises(PlanGuardError, match=r"terraform_data.group: would create a new resource"):
            op(dry_run=dry).execute(make_context())
    # a dry run the guard passes plans and applies nothing
    dry_result = op(allow_other_changes="True", dry_run="true").execute(make_context())
    assert dry_result["changed"] is True and dry_result["dry_run"] is True and dry_result["outputs"] == {}
    assert not (root / "terraform.tfstate").exists() or "ami-1" not in (root / "terraform.tfstate").read_text()
    ctx = make_context()
    first = op(allow_other_changes="True").execute(ctx)  # templated params arrive as strings
    assert first["changed"] is True and first["outputs"]["image"] == "ami-1"
    assert [a["address"] for a in first["allowed"]] == ["terraform_data.group", "terraform_data.template"]
    assert ctx["ti"].xcom["outputs"] == first["outputs"]

    # nothing to do: a successful no-op
    assert op().execute(make_context()) == {
        "changed": False,
        "workdir": str(root),
        "launch_templates": [],
        "asgs": [],
        "allowed": [],
        "outputs": {"image": "ami-1", "roles": {}, "secret": "<sensitive>"},
        "dry_run": False,
    }

    # a replacement is refused, naming the address; nothing is applied
    with pytest.raises(PlanGuardError) as exc:
        op(variables={"image": "ami-1", "generation": 2}).execute(make_context())
    assert "terraform_data.group: would replace (delete/create)" in str(exc.value)
    assert "triggers_replace" in str(exc.value)
    # an update of something else than a launch template is refused too
    with pytest.raises(PlanGuardError, match=r"terraform_data.template: would update a terraform_data"):
        op(variables={"image": "ami-2"}).execute(make_context())
    assert op().execute(make_context())["changed"] is False  # still as first applied

    # explicitly allowed for one run
    done = op(variables={"image": "ami-1", "generation": 2}, allow_destroy=True).execute(make_context())
    assert done["changed"] is True and done["allowed"][0]["address"] == "terraform_data.group"


def test_operator_template_fields_and_workdir_from_role(tmp_path):
    fields = set(TerraformApplyOperator.template_fields)
    assert fields >= {"workdir", "variables", "env", "allow_destroy", "aws_conn_id", "region_name", "backend_config"}
    op = TerraformApplyOperator(task_id="a")
    assert op.aws_conn_id == "aws_default" and op.region_name is None
    include = tmp_path / "include"
    (include / "terraform" / "envs" / "x").mkdir(parents=True)
    cfg = include / "fleet.yaml"
    import yaml

    cfg.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "artifacts_bucket": "phoenix-fleet-artifacts",
                "roles": {
                    r: {
                        "env": "sandbox",
                        "image": {"packer_template": "p", "base_ami": {"name": "n-*", "owners": ["self"]}},
                        "asgs": {"tags": {"phoenix:role": r}},
                        "regions": ["us-east-1"],
                        "terraform": t,
                    }
                    for r, t in {
                        "web": {"backend": "terraform", "workdir": "terraform/envs/x", "allow_destroy": True},
                        "worker": {"backend": "native"},
                    }.items()
                },
            }
        )
    )
    web = TerraformApplyOperator(task_id="a", role="web", config_path=str(cfg))
    assert web.resolve_workdir() == include / "terraform" / "envs" / "x"
    assert web._guard_flags() == (True, False)
    with pytest.raises(ValueError, match="backend is 'native'"):
        TerraformApplyOperator(task_id="a", role="worker", config_path=str(cfg)).resolve_workdir()

    # the release: passed to the root as one variable, and the AMI of the root's region is what the guard expects
    amis = {"us-east-1": "ami-0123456789abcdef0", "eu-west-1": "ami-0fedcba9876543210"}
    rel = TerraformApplyOperator(task_id="a", role="web", config_path=str(cfg), release_images=amis,
                                 variables={"endpoint": "http://x"}, aws_conn_id=None)
    assert rel.release_target() == ({"release": {"role": "web", "image_ids": amis}}, "ami-0123456789abcdef0")
    assert rel.make_hook(tmp_path).variables == {"endpoint": "http://x", "release": {"role": "web", "image_ids": amis}}
    assert "release_images" in TerraformApplyOperator.template_fields
    eu = TerraformApplyOperator(task_id="a", role="web", config_path=str(cfg), release_images=amis,
                                region_name="eu-west-1", release_variable="rel")
    assert eu.release_target() == ({"rel": {"role": "web", "image_ids": amis}}, "ami-0fedcba9876543210")
    assert TerraformApplyOperator(task_id="a", role="web", config_path=str(cfg)).release_target() == ({}, None)
    for kwargs, message in (
        ({"release_images": {"eu-west-1": "ami-0fedcba9876543210"}}, "no AMI for us-east-1"),
        ({"release_images": {"us-east-1": "i-0123"}}, "is not {region: AMI}"),
    ):
        with pytest.raises(ValueError, match=message):
            TerraformApplyOperator(task_id="a", role="web", config_path=str(cfg), **kwargs).release_target()
    with pytest.raises(ValueError, match="without role"):
        TerraformApplyOperator(task_id="a", workdir=str(tmp_path), release_images=amis).release_target()


def test_a_task_timeout_inside_a_command_interrupts_terraform_first(root, terraform_state_dir):
    """Airflow's execution_timeout raises inside execute (before on_kill): Terraform must be stopped, not orphaned."""
    import signal

    class TaskTimeout(Exception):
        pass

    lines: list[str] = []
    h = hook(root, terraform_state_dir, lines, variables={"image": "ami-1", "slow": True}, kill_grace_seconds=30)
    h.init()
    plan = _plan(h)
    pgid: list[int] = []
    original_emit = h._emit

    def emit(line: str) -> None:
        if not pgid and h._proc is not None:
            pgid.append(os.getpgid(h._proc.pid))
        original_emit(line)

    h._emit = emit  # type: ignore[method-assign]

    def on_alarm(signum: int, frame: Any) -> None:
        raise TaskTimeout()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    started = time.monotonic()
    try:
        signal.setitimer(signal.ITIMER_REAL, 4.0)
        with pytest.raises(TaskTimeout):
            h.apply_plan(plan)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert time.monotonic() - started < 40
    assert pgid, lines
    assert live_in_group(pgid[0]) == [], "\n".join(lines[-15:])  # terraform, the shell and the sleep are gone
    assert h._proc is None


def test_the_roles_terraform_vars_are_expanded_on_the_worker(root, terraform_state_dir, tmp_path, monkeypatch,
                                                            sandbox_clean):
    """Without ``variables``, the operator takes the role's ``terraform.vars`` and expands ``${ENV}`` in them as it
    runs Terraform: the value reaches Terraform, but never the operator's (templated) ``variables``. Explicit
    ``variables`` win key by key. A reference to an unset variable fails naming the field, before Terraform runs."""
    import yaml

    cfg = tmp_path / "fleet.yaml"
    role = {
        "env": "sandbox",
        "image": {"packer_template": "p", "base_ami": {"name": "n-*", "owners": ["self"]}},
        "asgs": {"tags": {"phoenix:role": "web"}},
        "regions": ["us-east-1"],
        "terraform": {"backend": "terraform", "workdir": str(root), "allow_local_state": True,
                      "vars": {"image": "ami-${PHX_TEST_IMAGE_SUFFIX}", "generation": "${PHX_TEST_UNSET_VAR}"}},
    }
    cfg.write_text(yaml.safe_dump({"version": 1, "artifacts_bucket": "phoenix-fleet-artifacts", "roles": {"web": role}}))
    monkeypatch.setenv("PHX_TEST_IMAGE_SUFFIX", "0a1b2c3d")
    monkeypatch.delenv("PHX_TEST_UNSET_VAR", raising=False)

    def op(**kwargs: Any) -> TerraformApplyOperator:
        return TerraformApplyOperator(task_id="apply", role="web", config_path=str(cfg), state_dir=str(terraform_state_dir),
                                      aws_conn_id=None, allow_other_changes=True, **kwargs)

    with pytest.raises(ValueError, match=r"^roles\.web\.terraform\.vars\.generation: \$\{PHX_TEST_UNSET_VAR\} is not set"):
        op().execute(make_context())
    assert not (root / "terraform.tfstate").exists()
    monkeypatch.setenv("PHX_TEST_UNSET_VAR", "3")
    task = op(variables={"generation": 2})
    result = task.execute(make_context())
    assert result["outputs"]["image"] == "ami-0a1b2c3d"
    assert task.variables == {"generation": 2}  # the template field never holds an expanded value
    assert task.resolved_variables() == {"image": "ami-0a1b2c3d", "generation": 2}


def _web_role_config(tmp_path: Path, root: Path) -> str:
    import yaml

    role = {
        "env": "sandbox",
        "image": {"packer_template": "p", "base_ami": {"name": "n-*", "owners": ["self"]}},
        "asgs": {"tags": {"phoenix:role": "web"}},
        "regions": ["us-east-1"],
        "terraform": {"backend": "terraform", "workdir": str(root), "vars": {"image": "ami-1"},
                      "allow_local_state": True},  # this root keeps a local state (one machine)
    }
    cfg = tmp_path / "fleet.yaml"
    cfg.write_text(yaml.safe_dump({"version": 1, "artifacts_bucket": "phoenix-fleet-artifacts", "roles": {"web": role}}))
    return str(cfg)


def test_a_group_locked_by_another_rollout_stops_terraform_before_it_applies(root, terraform_state_dir, tmp_path,
                                                                             sandbox_clean):
    """The role's groups are checked before Terraform starts, and again right before the saved plan is applied (a
    renewal may take a group while Terraform plans): a group another rollout holds fails the task naming the holder
    and the fix, and nothing is applied."""
    from airflow.sdk.exceptions import AirflowFailException
    from apply_helpers import lock

    sb = sandbox_clean
    lt = sb.client("ec2").create_launch_template(LaunchTemplateName="web-a", LaunchTemplateData={"ImageId": "ami-1"})
    sb.client("autoscaling").create_auto_scaling_group(
        AutoScalingGroupName="web-a", MinSize=0, MaxSize=1, DesiredCapacity=0, AvailabilityZones=["us-east-1a"],
        LaunchTemplate={"LaunchTemplateId": lt["LaunchTemplate"]["LaunchTemplateId"], "Version": "$Default"},
        Tags=[{"Key": "phoenix:role", "Value": "web"}],
    )
    cfg = _web_role_config(tmp_path, root)
    lines: list[str] = []

    def op(rollout_id: str, **kwargs: Any) -> TerraformApplyOperator:
        task = TerraformApplyOperator(task_id="apply", role="web", config_path=cfg, state_dir=str(terraform_state_dir),
                                      aws_conn_id=None, allow_other_changes=True, rollout_id=rollout_id, **kwargs)
        task.log.info = lambda msg, *a: lines.append(msg % a if a else msg)  # type: ignore[method-assign]
        return task

    tags = lock(sb, "web-a", "fleet_rollout_web:manual__1", target="ami-9", previous="ami-1")
    with pytest.raises(AirflowFailException, match=r"web-a \(us-east-1\) is locked by rollout fleet_rollout_web:manual__1 "
                       r"\(phase forward, target ami-9.*Nothing was changed.*Fix: "):
        op("fleet_rollout_web:manual__2").execute(make_context())
    assert not any(line.startswith("terraform: ") for line in lines)  # refused before Terraform started
    assert not (root / "terraform.tfstate").exists()

    # free at the start, taken while Terraform plans: refused before the apply
    sb.client("autoscaling").delete_tags(Tags=[{"ResourceId": "web-a", "ResourceType": "auto-scaling-group", "Key": k}
                                              for k in tags])
    task = op("fleet_rollout_web:manual__2")
    make_hook = task.make_hook

    def hook_that_races(workdir: Path) -> TerraformHook:
        h = make_hook(workdir)
        plan = h.plan

        def plan_then_lock(*a: Any, **k: Any) -> bool:
            changed = plan(*a, **k)
            lock(sb, "web-a", "fleet_max_age/renew-1", target="ami-1", previous="ami-1")
            return changed

        h.plan = plan_then_lock  # type: ignore[method-assign]
        return h

    task.make_hook = hook_that_races  # type: ignore[method-assign]
    refused = make_context()
    with pytest.raises(AirflowFailException, match=r"locked by rollout fleet_max_age/renew-1.*Nothing was changed"):
        task.execute(refused)
    assert not (root / "terraform.tfstate").exists() or "ami-1" not in (root / "terraform.tfstate").read_text()
    assert "pins_before" not in refused["ti"].xcom  # nothing moved: nothing to put back
    # the holder's own run applies, having recorded each group's version first (for the rollout's restore)
    ctx = make_context()
    assert op("fleet_max_age/renew-1").execute(ctx)["outputs"]["image"] == "ami-1"
    lt_id = lt["LaunchTemplate"]["LaunchTemplateId"]
    assert ctx["ti"].xcom["pins_before"] == {"us-east-1": {"web-a": {"template": lt_id, "number": 1, "image_id": "ami-1"}}}


def test_terraform_runs_as_the_roles_terraform_connection(tmp_path, monkeypatch):
    """Terraform gets the credentials of roles.<role>.terraform.aws_conn_id (the Terraform principal), never the
    worker's session token beside them; the operator's argument wins; without either, the task's connection."""
    import json

    import yaml

    include = tmp_path / "include"
    (include / "terraform" / "envs" / "x").mkdir(parents=True)
    cfg = include / "fleet.yaml"
    role = {
        "env": "sandbox", "image": {"packer_template": "p", "base_ami": {"name": "n-*", "owners": ["self"]}},
        "asgs": {"tags": {"phoenix:role": "web"}}, "regions": ["us-east-1"],
        "terraform": {"backend": "terraform", "workdir": "terraform/envs/x", "aws_conn_id": "aws_terraform"},
    }
    cfg.write_text(yaml.safe_dump({"version": 1, "artifacts_bucket": "phoenix-fleet-artifacts", "roles": {"web": role}}))

    def conn(login: str) -> str:
        return json.dumps({"conn_type": "aws", "login": login, "password": f"{login}-secret",
                           "extra": {"endpoint_url": "http://127.0.0.1:9", "region_name": "us-east-1"}})

    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", conn("worker-key"))
    monkeypatch.setenv("AIRFLOW_CONN_AWS_TERRAFORM", conn("terraform-key"))
    monkeypatch.setenv("AIRFLOW_CONN_AWS_OTHER", conn("other-key"))
    monkeypatch.setenv("AWS_SESSION_TOKEN", "the-workers-own-token")
    op = TerraformApplyOperator(task_id="a", role="web", config_path=str(cfg))
    assert op.terraform_conn_id() == "aws_terraform"
    env = op._aws_env()
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == ("terraform-key", "terraform-key-secret")
    # the worker's own session token is removed (None), never passed beside the connection's key
    assert env["AWS_SESSION_TOKEN"] is None and env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9"
    terraform_env = TerraformHook(tmp_path, env=env, state_dir=tmp_path / "tf").env  # what Terraform runs with
    assert "AWS_SESSION_TOKEN" not in terraform_env and terraform_env["AWS_ACCESS_KEY_ID"] == "terraform-key"
    explicit = TerraformApplyOperator(task_id="a", role="web", config_path=str(cfg), terraform_aws_conn_id="aws_other")
    assert explicit._aws_env()["AWS_ACCESS_KEY_ID"] == "other-key"
    assert "terraform_aws_conn_id" in TerraformApplyOperator.template_fields
    role["terraform"].pop("aws_conn_id")
    cfg.write_text(yaml.safe_dump({"version": 1, "artifacts_bucket": "phoenix-fleet-artifacts", "roles": {"web": role}}))
    plain = TerraformApplyOperator(task_id="a", role="web", config_path=str(cfg))
    assert plain.terraform_conn_id() == "aws_default" and plain._aws_env()["AWS_ACCESS_KEY_ID"] == "worker-key"
