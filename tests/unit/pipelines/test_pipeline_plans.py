"""The plan tasks' pure parts: trigger-form validation names the field; asset events carry the version."""

from types import SimpleNamespace

import pytest
from phoenix_fleet.config import load_fleet_config
from phoenix_fleet.config_file import default_config_path
from phoenix_fleet.pipelines.release_plan import ReleaseParamError, validate_release_params
from phoenix_fleet.pipelines.rollout_plan import RolloutParamError, policy_overrides, version_from_events

from tests.helpers.image_fixtures import seeded  # noqa: F401

FLEET = load_fleet_config()
FLEET_PATH = default_config_path()
WEB = FLEET.role("web")


def test_release_defaults():
    p = validate_release_params({}, WEB, "web")
    assert p["version"] is None and p["regions"] == WEB.regions and not p["dry_run"] and not p["skip_bake"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"version": "2026-11-30"}, "params.version"),
        ({"skip_bake": True}, "params.ami_id"),
        ({"skip_bake": True, "ami_id": "i-123"}, "params.ami_id"),
        ({"ami_id": "ami-0123456789abcdef0"}, "params.ami_id"),
        ({"base_ami_name": "debian-12-*"}, "params.base_ami_owners"),
        ({"base_ami_owners": ["self"]}, "params.base_ami_name"),
        ({"base_ami_name": "x", "base_ami_owners": ["evil"]}, "params.base_ami_owners"),
        ({"regions": ["ap-south-1"]}, "params.regions"),
        ({"regions": ["eu-west-1"]}, "params.regions"),  # the home region is required
    ],
)
def test_release_bad_params_name_the_field(params, field):
    with pytest.raises(ReleaseParamError) as e:
        validate_release_params(params, WEB, "web")
    assert field in str(e.value) and "Fix:" in str(e.value)


def test_release_subset_and_override():
    p = validate_release_params(
        {"regions": "us-east-1", "base_ami_name": "debian-12-*", "base_ami_owners": "136693071363"}, WEB, "web"
    )
    assert p["regions"] == ["us-east-1"] and p["base_ami_owners"] == ["136693071363"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"batch_size": -1}, "params.batch_size"),
        ({"batch_size": 0}, "params.batch_size"),
        ({"batch_size": "two"}, "params.batch_size"),
        ({"batch_size": True}, "params.batch_size"),
        ({"min_healthy_percent": 150}, "params.min_healthy_percent"),
        ({"strategy": "yolo"}, "params.strategy"),
    ],
)
def test_rollout_policy_overrides_are_validated(params, field):
    with pytest.raises(RolloutParamError) as e:
        policy_overrides(params, WEB.rollout)
    assert field in str(e.value)


def test_rollout_overrides_replace_batch_percent():
    assert policy_overrides({"batch_size": "2", "strategy": "replace"}, WEB.rollout) == {
        "batch_size": 2, "batch_percent": None, "strategy": "replace",
    }
    assert policy_overrides({}, WEB.rollout) == {}


def test_version_from_asset_events_newest_wins():
    from airflow.sdk import Asset

    asset = Asset(name="phoenix_image_web", uri="x-phoenix://images/web")
    other = Asset(name="phoenix_image_worker", uri="x-phoenix://images/worker")
    events = {
        asset: [SimpleNamespace(extra={"version": "2026.11.23-1"}), SimpleNamespace(extra={"version": "2026.11.30-1"})],
        other: [SimpleNamespace(extra={"version": "2026.12.01-1"})],
    }
    assert version_from_events(events, "x-phoenix://images/web") == "2026.11.30-1"
    assert version_from_events({}, "x-phoenix://images/web") is None


def test_a_scheduled_release_created_late_skips_and_a_manual_one_never_does():
    import datetime as dt

    from airflow.utils.types import DagRunType
    from phoenix_fleet.pipelines.release_plan import late_scheduled_run

    slot = dt.datetime(2026, 11, 23, 3, 0, tzinfo=dt.UTC)  # Monday 03:00
    on_time = slot + dt.timedelta(minutes=2)
    unpaused = dt.datetime(2026, 11, 25, 16, 0, tzinfo=dt.UTC)  # Wednesday afternoon
    assert late_scheduled_run(DagRunType.SCHEDULED, slot, on_time, 6) is None
    assert late_scheduled_run("scheduled", slot, slot + dt.timedelta(hours=5, minutes=59), 6) is None
    why = late_scheduled_run(DagRunType.SCHEDULED, slot, unpaused, 6)
    assert why and "slot at 2026-11-23 03:00 UTC, 61.0 h ago" in why and "schedule_grace_hours=6" in why
    assert "Fix: trigger the DAG by hand" in why
    assert late_scheduled_run(DagRunType.MANUAL, slot, unpaused, 6) is None
    assert late_scheduled_run(DagRunType.ASSET_TRIGGERED, slot, unpaused, 6) is None
    assert late_scheduled_run("scheduled", None, unpaused, 6) is None


def test_the_release_plan_task_skips_a_late_scheduled_run_before_any_aws_call(monkeypatch):
    """The plan task of ami_release_web, called as Airflow calls it: a late scheduled run skips (so every
    downstream task skips), before it builds a hook or reads AWS."""
    import datetime as dt

    import phoenix_fleet.hooks.image_hook as image_hook
    from airflow.sdk.exceptions import AirflowSkipException
    from phoenix_fleet.dag_facts import facts_from_config
    from phoenix_fleet.pipelines.release_dag import build_release_dag

    def no_aws(*a, **k):
        raise AssertionError("the plan task touched AWS")

    monkeypatch.setattr(image_hook, "ImageHook", no_aws)
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", '{"conn_type": "aws"}')  # the run's connection exists
    dag = build_release_dag(facts_from_config(FLEET)["web"])
    callable_ = dag.task_dict["plan"].python_callable
    late = SimpleNamespace(run_type="scheduled", run_after=dt.datetime(2026, 11, 2, 3, 0, tzinfo=dt.UTC))
    with pytest.raises(AirflowSkipException, match="this scheduled run is for the slot at 2026-11-02 03:00 UTC"):
        callable_(params={}, dag_run=late)
    manual = SimpleNamespace(run_type="manual", run_after=late.run_after)
    with pytest.raises(AssertionError, match="touched AWS"):  # a manual run goes on to plan (and reads AWS)
        callable_(params={}, dag_run=manual)


def _web_in_one_region(sandbox, tmp_path, monkeypatch, asgs=("web-a",), **rollout):
    """The repo's fleet config with role web in us-east-1 only (``rollout`` keys changed), published by the seed,
    with ``asgs`` (empty groups on one launch template) tagged as the role's. Returns (config path, AMI)."""
    import yaml

    from sandbox.seed import seed

    raw = yaml.safe_load(open(FLEET_PATH).read())
    raw["roles"]["web"]["terraform"]["vars"] = {"endpoint": "${AWS_ENDPOINT_URL}", "token": "${PHX_TEST_TF_TOKEN}"}
    raw["roles"]["web"]["regions"] = ["us-east-1"]
    raw["roles"]["web"]["rollout"].update(rollout)
    (tmp_path / "terraform" / "envs" / "sandbox").mkdir(parents=True)
    cfg_path = tmp_path / "fleet.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("PHOENIX_FLEET_CONFIG", str(cfg_path))
    seed(sandbox.endpoint_url, roles={"web": ["us-east-1"]})
    ec2, autoscaling = sandbox.client("ec2"), sandbox.client("autoscaling")
    ami = sandbox.client("ssm").get_parameter(Name="/phoenix/images/web/latest")["Parameter"]["Value"]
    lt = ec2.create_launch_template(LaunchTemplateName="web-lt", LaunchTemplateData={"ImageId": ami})["LaunchTemplate"]
    for name in asgs:
        autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=name, MinSize=0, MaxSize=1, DesiredCapacity=0, AvailabilityZones=["us-east-1a"],
            LaunchTemplate={"LaunchTemplateId": lt["LaunchTemplateId"], "Version": "$Default"},
            Tags=[{"Key": k, "Value": v} for k, v in {"phoenix:role": "web", "phoenix:env": "sandbox"}.items()],
        )
    return cfg_path, ami


def test_terraform_vars_are_expanded_on_the_apply_worker_never_in_the_plan(sandbox_clean, tmp_path, monkeypatch):
    """fleet.yaml's terraform.vars may reference the worker's environment (``${AWS_ENDPOINT_URL}``, a token): the
    rollout's ``plan`` task must not expand them, since its return value is XCom (stored in the metadata DB, shown
    in the UI) and the ``apply`` task's ``variables`` would be a rendered template field. ``apply`` reads the role's
    vars itself and expands them where Terraform runs."""
    import json

    from phoenix_fleet.config import load_fleet_config as load
    from phoenix_fleet.dag_facts import facts_from_config
    from phoenix_fleet.pipelines.rollout_dag import build_rollout_dag

    cfg_path, ami = _web_in_one_region(sandbox_clean, tmp_path, monkeypatch)
    monkeypatch.setenv("PHX_TEST_TF_TOKEN", "tf-token-0123456789")
    dag = build_rollout_dag(facts_from_config(load(cfg_path))["web"])
    result = dag.task_dict["plan"].python_callable(params={}, triggering_asset_events=None)
    assert result["targets"] == [{"asg_name": "web-a", "region_name": "us-east-1", "target_image_id": ami}]
    text = json.dumps(result)
    assert "tf-token-0123456789" not in text and sandbox_clean.endpoint_url not in text, text
    apply = dag.task_dict["apply"]
    assert apply.variables is None  # nothing wired from XCom: the operator takes the role's vars at run time
    assert apply.resolved_variables() == {"endpoint": sandbox_clean.endpoint_url, "token": "tf-token-0123456789"}
    assert apply.variables is None


# ------------------------------------------------------------------------------- conf checked whole (issue 14)
def test_unknown_conf_keys_fail_the_release_plan_naming_each_and_the_known_fields():
    with pytest.raises(ReleaseParamError) as e:
        validate_release_params({"evil": "x", "__class__": {"a": 1}, "dryrun": True}, WEB, "web")
    lines = str(e.value).splitlines()[1:]
    assert [ln.strip().split(":")[0] for ln in lines] == ["params.__class__", "params.dryrun", "params.evil"]
    assert lines[2].strip() == (
        "params.evil: unknown field. Fix: remove it; known fields: version, skip_bake, ami_id, base_ami_name, "
        "base_ami_owners, regions, release_notes, dry_run"
    )


def test_the_release_form_fields_are_the_ones_plan_knows():
    from phoenix_fleet.pipelines.release_dag import release_params
    from phoenix_fleet.pipelines.release_plan import FIELDS as RELEASE_FIELDS
    from phoenix_fleet.pipelines.rollout_dag import rollout_params
    from phoenix_fleet.pipelines.rollout_plan import FIELDS as ROLLOUT_FIELDS

    assert list(release_params()) == list(RELEASE_FIELDS)
    assert list(rollout_params()) == list(ROLLOUT_FIELDS)


def test_the_untouched_release_form_is_a_valid_plan():
    """What the form sends as it opens (every default, the empty fields as null) plans the next release."""
    from phoenix_fleet.pipelines.release_dag import release_params

    p = validate_release_params({k: v.value for k, v in release_params().items()}, WEB, "web")
    assert p == {"version": None, "skip_bake": False, "ami_id": None, "base_ami_name": None, "base_ami_owners": [],
                 "regions": WEB.regions, "dry_run": False, "release_notes": ""}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"release_notes": "x" * 4001}, "params.release_notes: 4001 characters, more than the 4000 allowed"),
        ({"release_notes": "hello {{ conf }}"}, "params.release_notes: contains a Jinja delimiter"),
        ({"base_ami_name": "$(reboot)", "base_ami_owners": ["self"]}, "params.base_ami_name: '$(reboot)' is not an"),
        ({"version": "9" * 100_000}, "params.version: '99999"),
        ({"ami_id": "a" * 100_000, "skip_bake": True}, "params.ami_id: 'aaaa"),
    ],
)
def test_hostile_release_values_are_refused_and_not_echoed_whole(params, expected):
    with pytest.raises(ReleaseParamError) as e:
        validate_release_params(params, WEB, "web")
    assert expected in str(e.value) and "Fix:" in str(e.value)
    assert len(str(e.value)) < 1000


def test_the_form_s_blank_lines_are_no_values():
    p = validate_release_params({"regions": ["us-east-1", "", "  "], "base_ami_owners": None}, WEB, "web")
    assert p["regions"] == ["us-east-1"] and p["base_ami_owners"] == []


@pytest.mark.parametrize(
    ("conf", "field"),
    [
        ({"evil": 1}, "params.evil: unknown field. Fix: remove it; known fields: target_version, asgs, strategy"),
        ({"target_version": "../../etc"}, "params.target_version: '../../etc' is not 'latest' or a release version"),
        ({"target_version": 7}, "params.target_version: 7 is not 'latest' or a release version"),
    ],
)
def test_bad_rollout_conf_fails_before_any_aws_call(conf, field):
    from phoenix_fleet.pipelines.rollout_plan import plan_rollout

    class NoAws:
        def __getattr__(self, name):
            raise AssertionError(f"plan read AWS ({name}) before refusing the conf")

    with pytest.raises(RolloutParamError) as e:
        plan_rollout(FLEET, "web", conf, NoAws())
    assert field in str(e.value)


def test_the_form_can_ask_for_approval_but_not_waive_the_environment_s():
    from phoenix_fleet.pipelines.rollout_plan import approval_required

    assert [approval_required(False, asked) for asked in (None, False, True, "true")] == [False, False, True, False]
    assert [approval_required(True, asked) for asked in (None, False, True)] == [True, True, True]


def test_the_release_plan_finds_the_base_ami_or_fails_naming_the_field(seeded, sandbox_clean):  # noqa: F811
    """plan looks the base image up as Packer's source_ami_filter will (name, owners, x86_64 hvm, available):
    a name that matches nothing fails the plan, not the bake after its retries."""
    from phoenix_fleet.hooks.image_hook import ImageHook
    from phoenix_fleet.pipelines.release_plan import plan_release

    hook = ImageHook(aws_conn_id="aws_default", region_name="us-east-1")
    plan = plan_release(FLEET, "web", {}, hook)
    assert plan["base_ami"]["image_id"] == seeded["base_ami"]["id"]
    assert plan_release(FLEET, "web", {"skip_bake": True, "ami_id": seeded["roles"]["web"]["ami_id"]}, hook)
    for override, shown in (
        ({"base_ami_name": "../../etc", "base_ami_owners": ["self"]}, "'../../etc' owned by self"),
        ({"base_ami_name": "phoenix-base-debian-12-*", "base_ami_owners": ["111122223333"]},
         "'phoenix-base-debian-12-*' owned by 111122223333"),  # the right name from another owner is no base
    ):
        with pytest.raises(ReleaseParamError) as e:  # as the plan task calls it: a refused run claims nothing
            plan_release(FLEET, "web", override, hook, run_id="manual__1", dag_id="ami_release_web")
        assert str(e.value).startswith(f"params.base_ami_name: no AMI named {shown} in us-east-1"), str(e.value)
        assert "Fix: check the name pattern and params.base_ami_owners" in str(e.value)
    ssm = sandbox_clean.client("ssm")
    names = [p["Name"] for page in ssm.get_paginator("describe_parameters").paginate() for p in page["Parameters"]]
    assert not [n for n in names if "-claims/" in n], names
    sandbox_clean.client("ec2").deregister_image(ImageId=seeded["base_ami"]["id"])
    with pytest.raises(ReleaseParamError, match=r"roles.web.image.base_ami: no AMI named 'phoenix-base-debian-12-\*' "
                       r"owned by self in us-east-1 .*Fix: correct the role's base_ami in the fleet config"):
        plan_release(FLEET, "web", {}, hook)


def test_the_rollout_plan_reads_the_operator_s_notes_from_the_published_release_notes():
    """What the rollout's summary and notification carry: the notes publish wrote for that version (clipped as in
    the asset event); none for a version without release notes; an unreadable object is said, never fatal."""
    import json

    from phoenix_fleet.pipelines.rollout_plan import published_notes

    class S3:
        def __init__(self, answer):
            self.answer, self.read = answer, []

        def read_s3_text(self, bucket, key, region=None):
            self.read.append((bucket, key, region))
            if isinstance(self.answer, Exception):
                raise self.answer
            return self.answer

    key = "images/web/2026.12.01-1/release-notes"
    hook = S3(json.dumps({"version": "2026.12.01-1", "operator_notes": "openssl\n" + "x" * 2000}))
    got = published_notes(FLEET, "web", "2026.12.01-1", hook)
    assert hook.read == [(FLEET.artifacts_bucket, f"{key}.json", WEB.home_region)]
    assert got["release_notes_uri"] == f"s3://{FLEET.artifacts_bucket}/{key}.md"
    assert got["operator_notes"].startswith("openssl\nxxx") and len(got["operator_notes"]) == 1000
    assert got["operator_notes"].endswith("more characters in the release notes in S3]")
    assert published_notes(FLEET, "web", "2026.12.01-1", S3(None)) == {"operator_notes": "", "release_notes_uri": None}
    denied = published_notes(FLEET, "web", "2026.12.01-1", S3(PermissionError("AccessDenied")))
    assert denied["operator_notes"] == "" and f"{key}.json: AccessDenied" in denied["release_notes_error"]


def test_the_release_publishes_the_regions_it_planned_and_copied_to():
    """The trigger form's `regions` subset: the copies are mapped over the plan's regions, and publish is given
    the same list (it used to require every region of the role, so a subset release failed after copying)."""
    from airflow.sdk.definitions.xcom_arg import PlainXComArg
    from phoenix_fleet.dag_facts import facts_from_config
    from phoenix_fleet.pipelines.release_dag import build_release_dag

    dag = build_release_dag(facts_from_config(FLEET)["web"])
    publish, copies = dag.task_dict["publish"], dag.task_dict["copy_to_region"]
    assert isinstance(publish.regions, PlainXComArg) and publish.regions.operator.task_id == "publish_regions"
    assert copies.expand_input.value["dest_region"].operator is publish.regions.operator
    assert dag.task_dict["publish_regions"] in publish.get_flat_relatives(upstream=True)


def test_rollout_budget_counts_approval_canary_and_every_wave():
    from datetime import timedelta

    from phoenix_fleet.pipelines.rollout_plan import rollout_budget

    one = timedelta(minutes=150)
    b = rollout_budget(targets=5, concurrency=2, per_asg=one, approval=timedelta(hours=8), backend="native")
    assert b.waves == 3
    assert b.parts["canary"] == one and b.parts["approval"] == timedelta(hours=8)
    assert b.parts["recycle (5 ASG(s), 3 wave(s) of 2)"] == 3 * one
    assert b.total == timedelta(minutes=20) + one + timedelta(hours=8) + 3 * one + timedelta(minutes=30 + 2 * 13)
    assert rollout_budget(targets=5, concurrency=5, per_asg=one).total < b.total
    assert "approval" not in rollout_budget(targets=1, concurrency=1, per_asg=one).parts


def test_a_plan_whose_worst_case_exceeds_the_run_timeout_fails_naming_the_setting(sandbox_clean, tmp_path, monkeypatch):
    """Six ASGs, one at a time, approval asked for: the worst case is far past a 12 h run timeout. plan refuses
    before anything changes, naming roles.web.rollout.run_timeout_hours and the value it needs; within the timeout
    (or without the approval's 8 h, or at more ASGs at once) it plans."""
    from datetime import timedelta

    from phoenix_fleet.config import load_fleet_config as load
    from phoenix_fleet.dag_facts import facts_from_config
    from phoenix_fleet.pipelines.rollout_dag import build_rollout_dag

    names = [f"web-{k}" for k in "abcdef"]
    cfg_path, _ = _web_in_one_region(sandbox_clean, tmp_path, monkeypatch, asgs=names, max_concurrent_asgs=1,
                                     run_timeout_hours=12)
    facts = facts_from_config(load(cfg_path))["web"]
    dag = build_rollout_dag(facts)
    assert dag.dagrun_timeout == timedelta(hours=12)
    plan = dag.task_dict["plan"].python_callable
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException) as err:
        plan(params={"require_approval": True}, triggering_asset_events=None)
    message = str(err.value)
    assert message.startswith("roles.web.rollout.run_timeout_hours: a rollout of 6 ASG(s) of web at 1 at a time may take up to ")
    assert "approval 8h00" in message and "6 wave(s)" in message and "Nothing was changed" in message
    # per ASG: the recycle tasks' own limit (forward + rollback deadlines, past a deadline, unknown health, halt)
    from phoenix_fleet.pipelines.rollout_plan import rollout_budget
    from phoenix_fleet.rollout import Policy

    web = load(cfg_path).role("web")
    one = Policy.from_config(web.rollout).execution_budget()
    assert one >= timedelta(minutes=2 * web.rollout.deadline_minutes)
    worst = rollout_budget(targets=6, concurrency=1, per_asg=one, approval=timedelta(hours=8)).total
    assert worst == timedelta(minutes=40) + 7 * one + timedelta(hours=8) + timedelta(minutes=30 + 2 * 16)
    assert f"Fix: raise roles.web.rollout.run_timeout_hours to at least {-(-int(worst.total_seconds()) // 3600)}" in message
    result = plan(params={"require_approval": False, "asgs": names[:3]}, triggering_asset_events=None)
    assert len(result["targets"]) == 3 and result["worst_case_minutes"] <= 12 * 60


def test_a_plan_of_more_asgs_than_airflow_maps_fails_before_anything_changes(sandbox_clean, tmp_path, monkeypatch):
    """Issue 16: the recycle and the health gate are mapped over the plan's ASGs, and Airflow maps at most [core]
    max_map_length (1024) per task: past it the expansion failed after the canary had changed its group. plan refuses
    such a rollout first, naming the setting and the fix; a subset within the limit plans."""
    from airflow.sdk.exceptions import AirflowFailException
    from phoenix_fleet.config import load_fleet_config as load
    from phoenix_fleet.dag_facts import facts_from_config
    from phoenix_fleet.pipelines.rollout_dag import build_rollout_dag

    names = [f"web-{k}" for k in "abcdef"]
    cfg_path, _ = _web_in_one_region(sandbox_clean, tmp_path, monkeypatch, asgs=names, max_concurrent_asgs=6)
    plan = build_rollout_dag(facts_from_config(load(cfg_path))["web"]).task_dict["plan"].python_callable
    monkeypatch.setenv("AIRFLOW__CORE__MAX_MAP_LENGTH", "4")
    with pytest.raises(AirflowFailException) as err:
        plan(params={}, triggering_asset_events=None)
    message = str(err.value)
    assert message.startswith("params.asgs: a rollout of 6 ASGs of web is more than Airflow maps in one task "
                              "([core] max_map_length = 4)")
    assert "Nothing was changed" in message and "raise [core] max_map_length (AIRFLOW__CORE__MAX_MAP_LENGTH) to at " \
        "least 6" in message
    assert len(plan(params={"asgs": names[:4], "dry_run": True}, triggering_asset_events=None)["targets"]) == 4
    monkeypatch.delenv("AIRFLOW__CORE__MAX_MAP_LENGTH")
    assert len(plan(params={"dry_run": True}, triggering_asset_events=None)["targets"]) == 6  # the default: 1024


def test_the_rollout_dag_cleans_up_after_a_refused_canary():
    """Wiring: a rejected or unanswered approval (it fails: fail_on_reject, a timeout) is never asked again, and
    triggers canary_rollback through canary_needs_rollback (one_failed: skipped when the approval succeeded or was
    not needed; a short circuit that skips the rollback when no canary ran, e.g. the plan failed)."""
    from datetime import timedelta

    from phoenix_fleet.dag_facts import facts_from_config
    from phoenix_fleet.operators.canary_operators import CanaryRollbackOperator
    from phoenix_fleet.pipelines.rollout_dag import build_rollout_dag

    facts = facts_from_config(FLEET)["web"]
    dag = build_rollout_dag(facts)
    approval, cleanup = dag.task_dict["approval"], dag.task_dict["canary_rollback"]
    assert approval.retries == 0 and approval.fail_on_reject is True
    assert approval.response_timeout == timedelta(hours=FLEET.environment("web").approval_timeout_hours)
    gate = dag.task_dict["canary_needs_rollback"]
    assert gate.trigger_rule == "one_failed" and gate.upstream_task_ids == {"approval"}
    assert isinstance(cleanup, CanaryRollbackOperator) and cleanup.trigger_rule == "all_success"
    assert "canary_needs_rollback" in cleanup.upstream_task_ids
    assert cleanup.downstream_task_ids == {"restore_launch_templates"}
    assert {"canary", "recycle", "health_gate"}.isdisjoint(cleanup.upstream_task_ids | cleanup.downstream_task_ids)
    # then, whatever the outcome, the groups the run never rolled go back to their version before apply: a
    # teardown of apply (it runs after a failure, and never decides the run's state), after everything that moves
    restore = dag.task_dict["restore_launch_templates"]
    assert restore.is_teardown and not restore.on_failure_fail_dagrun
    assert {"apply", "canary_rollback", "recycle"} <= restore.upstream_task_ids and not restore.downstream_task_ids
    assert dag.task_dict["apply"].is_setup
    assert dag.dagrun_timeout == timedelta(hours=WEB.rollout.run_timeout_hours)


def test_a_native_role_applies_and_checks_every_region_of_the_plan():
    """Wiring: on the native backend, apply and its check take the plan's amis ({region: AMI}, every region of the
    release), not the home region's AMI alone; restore_launch_templates stays apply's teardown (it restores the
    groups of every region pins_before recorded: tests/unit/apply/test_native_backend.py)."""
    from airflow.sdk.definitions.xcom_arg import PlainXComArg
    from phoenix_fleet.dag_facts import facts_from_config
    from phoenix_fleet.operators.apply_operators import (
        NativeLaunchTemplateUpdateOperator,
        VerifyAsgLaunchTemplatesOperator,
    )
    from phoenix_fleet.pipelines.rollout_dag import build_rollout_dag

    facts = {**facts_from_config(FLEET)["web"], "terraform_backend": "native"}
    dag = build_rollout_dag(facts)
    apply, check = dag.task_dict["apply"], dag.task_dict["check_launch_templates"]
    assert isinstance(apply, NativeLaunchTemplateUpdateOperator) and isinstance(check, VerifyAsgLaunchTemplatesOperator)
    for op in (apply, check):
        arg = op.release_images
        assert isinstance(arg, PlainXComArg) and (arg.operator.task_id, arg.key) == ("plan", "amis"), op.task_id
        assert op.image_id is None and op.region_name == WEB.home_region
    assert dag.task_dict["restore_launch_templates"].is_teardown and apply.is_setup
