"""``fleet_rollout_<role>``: apply → canary → (approval) → mapped recycle → health gate → summary."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pendulum
from airflow.sdk import DAG, Param, task

from phoenix_fleet.form_params import ASG_NAME_PATTERN, NAME_MAX, VERSION_PATTERN, form_param, string_list

if TYPE_CHECKING:
    from phoenix_fleet.dag_facts import RoleFacts

TARGET_VERSION_PATTERN = "^(latest|" + VERSION_PATTERN[1:-1] + ")$"

DOC = """
### fleet_rollout_{role}: move every **{role}** instance to the new image

**Starts** when `ami_release_{role}` publishes the Asset `x-phoenix://images/{role}` (the event carries the
version), or by hand from the trigger form.

**What it does**

1. **plan**: resolves the target version to an AMI per region (`{prefix}/{role}/latest` or the SSM
   release log), lists the role's ASGs ({asg_tags}), validates the form. Bad input fails here, before
   anything changes, naming the field.
2. **apply**: {apply_doc}; then checks every ASG resolves to a launch-template version with the new AMI.
   A dry run plans and logs the changes (the Terraform plan, after its guard) and makes none. Before anything
   changes, no ASG it would move may be held by another rollout (tag `phoenix:rollout:id`): one that is fails the
   run naming the holder and the fix, and nothing changes.
3. **canary**: replaces the first batch of `{{first ASG}}` and holds it healthy.
4. **approval** ({approval_doc}): a human approves in the UI (or REST API) after reading what will change,
   within {approval_hours:g} h. Rejected or not answered: **canary_rollback** rolls the canary's group back to its
   previous launch-template version, restores its capacity and processes and releases its lock (the run fails
   and its notification says so); the other groups go back in step 8.
5. **recycle**: every ASG in every region, batch by batch ({strategy}; at most {concurrency} ASGs at a
   time), never below the healthy floor; on failure it **rolls back** to the previous version ({on_failure}).
6. **health_gate**: every ASG at desired capacity, all instances healthy on the new image (but those the
   recycle left by policy, `protected: skip` / `standby: skip`: exactly those may stay on the old image; the
   summary and the notification say e.g. "1 instance skipped (scale-in protected)").
7. **summary**: what changed, which version, how long it took, the operator's release notes; a failure (what
   failed, the version, the run link, what to do) and, unless the environment's `notify_on_success` is off, the
   summary go to the environment's SNS topic and Slack connection, and always to the log.
8. **restore_launch_templates** (apply's teardown, whatever the outcome): a group this run never rolled (the
   approval rejected, a canary or recycle failed) goes back to the launch-template version apply found, so no
   scale-out launches an image that was not rolled out; rolled or locked groups are left, each with its reason.

One rollout per role at a time (max_active_runs=1), and an ASG lock (tags) against concurrent rollouts. The run
may take {run_hours:g} h (`dagrun_timeout`, `roles.{role}.rollout.run_timeout_hours`): **plan** refuses a rollout
whose worst case (approval, the canary and every ASG at {concurrency} at a time, each up to its forward and
rollback deadlines) would not fit, naming the setting to raise.

**Trigger form**: `target_version` (`latest` or `YYYY.MM.DD-N`), `asgs` (a subset), `strategy`,
`batch_size`, `min_healthy_percent`, `require_approval`, `dry_run`.
"""


def rollout_params() -> dict[str, Param]:
    """The trigger form (every field optional: the untouched form rolls the role to its latest release)."""
    what, overrides, safety = "What to roll out", "Rollout overrides", "Safety"
    return {
        "target_version": form_param(
            "latest", "'latest' (what publish announced last) or a published version YYYY.MM.DD-N, e.g. to roll "
            "back. Empty: latest.",
            title="Target version", section=what, type="string", pattern=TARGET_VERSION_PATTERN, maxLength=32,
            **{"x-fix": "'latest' or a published version YYYY.MM.DD-N, e.g. 2026.11.30-1"},
        ),
        "asgs": form_param(
            None, "Only these Auto Scaling groups of the role, one name per line. Empty: every ASG of the role.",
            title="Auto Scaling groups", section=what,
            **string_list(ASG_NAME_PATTERN, NAME_MAX, 200, "one ASG name per line, e.g. sandbox-web-a"),
        ),
        "strategy": form_param(
            None, "How instances are replaced. Empty: the role's strategy in include/fleet.yaml.",
            title="Strategy", section=overrides, type="string", enum=["surge", "replace", "instance-refresh"],
            values_display={
                "null": "The role's setting (include/fleet.yaml)",
                "surge": "Surge: launch new instances first, then retire old ones",
                "replace": "Replace: retire a batch, then launch its replacements",
                "instance-refresh": "Instance refresh: let EC2 Auto Scaling replace them",
            },
            **{"x-fix": "choose surge, replace or instance-refresh, or leave it empty for the role's"},
        ),
        "batch_size": form_param(
            None, "Instances replaced per batch. Empty: the role's batch size or batch percent.",
            title="Batch size", section=overrides, type="integer", minimum=1, maximum=1000,
        ),
        "min_healthy_percent": form_param(
            None, "Share of desired capacity that must stay healthy during the rollout (0-100). Empty: the role's.",
            title="Minimum healthy percent", section=overrides, type="integer", minimum=0, maximum=100,
        ),
        "require_approval": form_param(
            False, "On: a person approves in the UI after the canary, before the rest is recycled. Environments "
            "that require approval always ask.",
            title="Ask for approval", section=safety, type="boolean",
        ),
        "dry_run": form_param(
            False, "On: print the whole plan (the Terraform plan too) and change nothing.",
            title="Dry run (plan only)", section=safety, type="boolean",
        ),
    }


def build_rollout_dag(facts: RoleFacts) -> DAG:
    """The role's rollout DAG, from its parse-time facts (:func:`phoenix_fleet.dag_facts.fleet_dag_facts`)."""
    from airflow.providers.standard.operators.hitl import ApprovalOperator

    from phoenix_fleet.api_budget import NO_BUDGET_POOL, pool_name
    from phoenix_fleet.operators.apply_operators import (
        NativeLaunchTemplateUpdateOperator,
        TerraformApplyOperator,
        VerifyAsgLaunchTemplatesOperator,
    )
    from phoenix_fleet.operators.canary_operators import CanaryRollbackOperator
    from phoenix_fleet.operators.publish_operators import image_asset, image_asset_ref
    from phoenix_fleet.operators.recycle_operators import AsgRecycleOperator
    from phoenix_fleet.pipelines.notify import dag_callbacks
    from phoenix_fleet.sensors.asg_sensors import AsgHealthySensor

    role_name = facts["role"]
    home = facts["home_region"]
    asset = image_asset(role_name)
    backend = facts["terraform_backend"]
    doc = DOC.format(
        role=role_name, prefix=facts["ssm_prefix"], asg_tags=facts["asg_tags"],
        apply_doc=(f"Terraform in `include/{facts['terraform_workdir']}` with the release's AMI as a variable (plan, "
                   "guard: only this role's launch templates, only to that AMI; apply the saved plan)")
        if backend == "terraform" else ("a new launch-template version in every region of the release, each with its "
                                        "own AMI (native backend; a failed write puts back every region)"),
        approval_doc="required in this environment" if facts["require_approval"] else "off unless the form asks",
        strategy=facts["strategy"], concurrency=facts["max_concurrent_asgs"], on_failure=facts["on_failure"],
        approval_hours=facts["approval_timeout_hours"], run_hours=facts["run_timeout_hours"],
    )
    run_timeout = timedelta(hours=facts["run_timeout_hours"])
    # the API budget (docs/scale.md): every task calling AWS runs in the pool of the environment and home region
    # (default_args; also recycle, canary, canary_rollback and health_gate, whose region is known at run time
    # only); the tasks that call no AWS API run in Airflow's default pool
    budget_pool = pool_name(facts["env"], home)
    with DAG(
        dag_id=f"fleet_rollout_{role_name}",
        schedule=image_asset_ref(role_name),  # the asset ami_release_<role> defines (by name)
        start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,
        # the plan task refuses a rollout whose worst case (approval, canary, every ASG) does not fit in it
        dagrun_timeout=run_timeout,
        tags=["phoenix-fleet", "rollout", f"role:{role_name}"],
        doc_md=doc,
        params=rollout_params(),
        **dag_callbacks("rollout", role_name),
        default_args={
            "owner": "platform", "retries": 2, "retry_delay": timedelta(seconds=30),
            "aws_conn_id": facts["aws_conn_id"],  # environments.<env>.aws_conn_id, for every AWS task
            "pool": budget_pool,
        },
    ) as dag:

        @task(multiple_outputs=True, retries=1)
        def plan(
            params: dict[str, Any] | None = None, triggering_asset_events: Any = None, ti: Any = None,
            run_id: str | None = None,
        ) -> dict[str, Any]:
            import datetime as dt

            from airflow.configuration import conf
            from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

            from phoenix_fleet.aws_conn import require_aws_connection
            from phoenix_fleet.config import cached_fleet_config
            from phoenix_fleet.hooks.image_hook import ImageHook
            from phoenix_fleet.pipelines.rollout_plan import (
                RolloutParamError,
                RolloutSkipped,
                describe_rollout,
                plan_triggered_rollout,
            )

            cfg = cached_fleet_config()
            require_aws_connection(facts["aws_conn_id"], facts["aws_conn_field"])  # the whole run uses it
            hook = ImageHook(aws_conn_id=facts["aws_conn_id"], region_name=home)
            try:
                result = plan_triggered_rollout(
                    cfg, role_name, params or {}, hook, triggering_asset_events, asset.uri,
                    run_id=str(run_id or ""), dag_id=f"fleet_rollout_{role_name}",
                    now=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                    run_timeout=run_timeout,
                    # the recycle and the health gate are mapped over the targets: more would fail to expand
                    max_map_length=conf.getint("core", "max_map_length", fallback=1024),
                )
            except RolloutParamError as e:  # bad input: fail now, no retry, nothing changed
                raise AirflowFailException(str(e)) from None
            except RolloutSkipped as e:  # one version, one rollout: every task skips, the notification says why
                print(f"nothing to roll out: {e}")
                if ti is not None:
                    ti.xcom_push(key="skipped", value=str(e))
                raise AirflowSkipException(str(e)) from None
            print(describe_rollout(result))
            return result

        @task(pool=NO_BUDGET_POOL)
        def targets(plan: dict[str, Any]) -> list[dict[str, Any]]:
            return list(plan["targets"])

        @task.branch(trigger_rule="none_failed_min_one_success", pool=NO_BUDGET_POOL)
        def approval_needed(plan: dict[str, Any]) -> str:
            # no approval: straight to the join (recycle), and approval is skipped
            return "approval" if plan["require_approval"] and not plan["dry_run"] else "recycle"

        p = plan()
        # the lock of every ASG (tags phoenix:rollout:*): apply refuses to move a group another rollout holds
        rollout_id = "{{ dag.dag_id }}:{{ run_id }}"
        if backend == "terraform":
            apply = TerraformApplyOperator(
                # the role's terraform.vars: read and ${ENV}-expanded by the operator on its worker, never here
                task_id="apply", role=role_name, region_name=home, dry_run=p["dry_run"], rollout_id=rollout_id,
                release_images=p["amis"],  # exactly the planned release, and the guard holds Terraform to it
                execution_timeout=timedelta(minutes=30),
            )
        else:
            apply = NativeLaunchTemplateUpdateOperator(
                # every region of the plan, each to its own AMI (all or nothing: docs/publish-apply.md)
                task_id="apply", role=role_name, release_images=p["amis"], region_name=home, dry_run=p["dry_run"],
                rollout_id=rollout_id,
            )
        # native: every region apply moved; Terraform: the home region (its guard holds each region to its AMI)
        check = VerifyAsgLaunchTemplatesOperator(
            task_id="check_launch_templates", role=role_name, region_name=home, dry_run=p["dry_run"],
            **({"image_id": p["home_ami"]} if backend == "terraform" else {"release_images": p["amis"]}),
        )
        canary = AsgRecycleOperator(
            task_id="canary", asg_name=p["canary_asg"], region_name=p["canary_region"],
            target_image_id=p["canary_ami"], target_label=p["version"], role=role_name,
            policy=p["policy"], rollout_id=rollout_id, dry_run=p["dry_run"], max_batches=1,
            inline_wait_seconds=facts["inline_wait_seconds"],
            trigger_rule="none_failed_min_one_success",
        )
        gate = approval_needed(p)
        approval = ApprovalOperator(
            task_id="approval",
            subject=f"Roll {role_name} to the new image?",
            body=(
                "Version **{{ ti.xcom_pull(task_ids='plan', key='version') }}** passed its canary on "
                "`{{ ti.xcom_pull(task_ids='plan', key='canary')['asg_name'] }}`.\n\nASGs to recycle: "
                "{{ ti.xcom_pull(task_ids='plan', key='targets') | map(attribute='asg_name') | join(', ') }}"
            ),
            response_timeout=timedelta(hours=facts["approval_timeout_hours"]),
            fail_on_reject=True,
            retries=0,  # a rejection or a timeout is the answer: never ask again (the canary is rolled back)
            pool=NO_BUDGET_POOL,
        )
        @task.short_circuit(trigger_rule="one_failed", pool=NO_BUDGET_POOL)
        def canary_needs_rollback(ti: Any = None) -> bool:
            # the approval failed (rejected, unanswered) or a task between the canary and it did: a canary that ran
            # is ours to roll back. A run that failed before the canary finished (plan, apply, the canary itself,
            # which rolls itself back) has none: canary_rollback is skipped, and the failure stays the run's cause
            ran = ti.xcom_pull(task_ids="canary") is not None
            print("the canary ran: rolling its group back" if ran else "no canary ran: nothing to roll back")
            return ran

        # a rejected or unanswered approval: the canary's group goes back to its previous launch-template version,
        # capacity and processes restored, the lock released (nothing else resumes it)
        canary_rollback = CanaryRollbackOperator(
            task_id="canary_rollback", asg_name=p["canary_asg"], region_name=p["canary_region"],
            target_image_id=p["canary_ami"], target_label=p["version"], role=role_name,
            policy=p["policy"], rollout_id=rollout_id, dry_run=p["dry_run"],
            reason="the approval was rejected or not answered",
            execution_timeout=timedelta(minutes=facts["recycle_timeout_minutes"]),  # a rollback: as a recycle
        )
        recycle = AsgRecycleOperator.partial(
            task_id="recycle", role=role_name, target_label=p["version"], policy=p["policy"],
            rollout_id=rollout_id, dry_run=p["dry_run"],
            max_active_tis_per_dagrun=facts["max_concurrent_asgs"],
            inline_wait_seconds=facts["inline_wait_seconds"],  # 0: every wait deferred, no slot held waiting
            trigger_rule="none_failed_min_one_success",
            execution_timeout=timedelta(minutes=facts["recycle_timeout_minutes"]),  # forward + rollback + ...
        ).expand_kwargs(targets(p))

        @task(multiple_outputs=False, retries=2)
        def restore_launch_templates(plan: dict[str, Any], ti: Any = None) -> dict[str, Any]:
            # the teardown of apply: a run that ends before rolling a group (approval rejected or unanswered, the
            # canary or a recycle failed) must not leave it launching the release's image beside its old instances
            from phoenix_fleet.pipelines.template_restore import restore_unrolled_groups

            pins = ti.xcom_pull(task_ids="apply", key="pins_before") if ti is not None else None
            if plan["dry_run"] or not pins:
                print("nothing to put back: " + ("a dry run moved nothing" if plan["dry_run"] else
                                                 "apply recorded no launch-template versions (it changed nothing)"))
                return {"restored": [], "left": [], "dry_run": bool(plan["dry_run"])}
            return restore_unrolled_groups(plan["targets"], pins, aws_conn_id=facts["aws_conn_id"])

        @task(trigger_rule="none_failed_min_one_success", pool=NO_BUDGET_POOL)
        def gate_targets(plan: dict[str, Any], ti: Any = None) -> list[dict[str, Any]]:
            if plan["dry_run"]:
                from airflow.sdk.exceptions import AirflowSkipException

                raise AirflowSkipException("dry run: nothing was recycled")
            out = []
            for index, t in enumerate(plan["targets"]):  # recycle is mapped over the same list, in this order
                result = ti.xcom_pull(task_ids="recycle", map_indexes=index) or {}
                out.append({
                    "asg_name": t["asg_name"], "region_name": t["region_name"], "image_id": t["target_image_id"],
                    # left on their image by policy (protected / standby: skip): exactly these may stay there
                    "skipped_instances": list(result.get("skipped") or []),
                })
            return out

        health_targets = gate_targets(p)
        health = AsgHealthySensor.partial(task_id="health_gate", role=role_name, timeout=1800).expand_kwargs(
            health_targets
        )

        @task(trigger_rule="none_failed_min_one_success", multiple_outputs=False, pool=NO_BUDGET_POOL)
        def summary(plan: dict[str, Any], ti: Any = None, dag_run: Any = None) -> dict[str, Any]:
            from phoenix_fleet.pipelines.rollout_summary import asg_line

            pulled = ti.xcom_pull(task_ids="recycle")  # one mapped instance comes back bare, several as a list
            results = [r for r in (pulled if isinstance(pulled, list) else [pulled]) if isinstance(r, dict)]
            out = {
                "role": role_name,
                "version": plan["version"],
                "amis": plan["amis"],
                "dry_run": plan["dry_run"],
                "asgs": results,
                "lines": [asg_line(r) for r in results],
                # the release's notes, as the plan read them from the release notes in S3
                "operator_notes": plan.get("operator_notes") or "",
                "release_notes_uri": plan.get("release_notes_uri"),
            }
            for line in out["lines"]:
                print(line)
            if out["release_notes_uri"]:
                print(f"Release notes: {out['release_notes_uri']}")
            if out["operator_notes"]:
                print(f"Operator's release notes: {out['operator_notes']}")
            return out

        apply >> check >> canary
        canary >> gate >> [approval, recycle]  # branch and join: recycle runs after approval, or without it
        approval >> recycle >> health_targets
        approval >> canary_needs_rollback() >> canary_rollback
        recycle >> health >> summary(p)
        # whatever the outcome, once nothing else can move a group: groups this run never rolled go back to the
        # launch-template version apply found (a teardown: it never decides the run's state)
        [canary_rollback, recycle] >> restore_launch_templates(p).as_teardown(setups=apply)
    return dag
