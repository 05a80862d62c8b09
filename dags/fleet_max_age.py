"""
### fleet_max_age

**No server lives past its max age** (14 days by default, per role in `include/fleet.yaml`). After every
nightly `fleet_inventory` (its Asset `phoenix_fleet_inventory` schedules this DAG), the ASGs with instances past
max age are **renewed**: those instances are replaced by the same rollout engine as a release (batches, the
health floor, warmup, the health gate, the per-ASG lock), **on the image the ASG already runs** (its current
launch template version). Renewing never upgrades: when the template moved to a newer image since the report,
the ASG is skipped (the rollout of that image replaces its instances anyway).

1. `select` reads the report the inventory announced (its S3 copy, else its local path; the `report` Param
   overrides) and picks the ASGs **due** (instances that would pass max age before the next run), most overdue
   first. How many: enough to **keep up with the fleet**, every renewable ASG renewed within its role's max age
   minus `lead_days` (`ceil(ASGs / (max age - lead))` a night per role), or all that are due tonight if more,
   never more than the budget (`max_asgs`, else the config's `max_age_asgs_per_run`). The log and the summary
   say when the budget **cannot keep up** (and what to set), and which due ASGs wait. ASGs of no role, or whose
   launch template runs an AMI that is not ours, are never touched (listed in the log);
2. `renew` (mapped, 2 ASGs at a time) replaces the instances older than *max age - `lead_days`*: one that would
   pass the age before the next inventory is renewed now. An ASG another rollout holds is skipped. A failure
   halts that ASG with its capacity restored (there is no other image to roll back to);
3. `summary` lists what each ASG did and the throughput (keeps up or not); a failed renewal fails the run (the
   summary does not run).

**Notifications:** a failure (which ASG, the run link, what to do) goes to the config's `notifications` (SNS,
Slack) and the log; a success only with `notifications.on_success`.

**Trigger form:** `dry_run` (print each plan, change nothing), `max_asgs` (the budget of this run; 0: the
config's `max_age_asgs_per_run`), `lead_days`, `report` (a `report.json` path or `s3://` URI; empty: the triggering
report, else `s3://<artifacts_bucket>/inventory/latest/report.json`). See docs/inventory.md.
"""

from __future__ import annotations

# Airflow modules this file uses, named so that the DAG processor imports them once, before it forks each
# parse ([dag_processor] parsing_pre_import_modules reads a DAG file's top-level airflow imports).
import airflow.providers.standard.decorators.python  # noqa: F401
import airflow.providers.standard.operators.empty  # noqa: F401
import airflow.sdk.bases.sensor  # noqa: F401
import airflow.sdk.definitions.decorators  # noqa: F401
import pendulum
from airflow.sdk import dag, task
from phoenix_fleet.form_params import REPORT_REF_PATTERN, form_param
from phoenix_fleet.inventory.inventory_assets import INVENTORY_ASSET
from phoenix_fleet.operators.recycle_operators import AsgRecycleOperator
from phoenix_fleet.pipelines.notify import dag_callbacks

PARAMS = {
    "report": form_param(
        None,
        "A report.json path on the worker or an s3:// URI. Empty: the report that triggered this run, else the "
        "latest (s3://<artifacts_bucket>/inventory/latest/report.json).",
        title="Inventory report",
        section="What to renew",
        type="string",
        pattern=REPORT_REF_PATTERN,
        maxLength=1024,
        **{"x-fix": "an absolute path or s3://bucket/key ending in report.json (no '..'), or leave it empty"},
    ),
    "max_asgs": form_param(
        None,
        "The most ASGs this run may renew (the budget; it renews what keeps up with the fleet). Empty or 0: "
        "max_age_asgs_per_run in include/fleet.yaml.",
        title="Budget (ASGs per run)",
        section="What to renew",
        type="integer",
        minimum=0,
        maximum=500,
    ),
    "lead_days": form_param(
        1,
        "Also renew instances that pass max age within this many days (the time to the next run). Empty: 1.",
        title="Lead (days)",
        section="What to renew",
        type="number",
        minimum=0,
        maximum=30,
    ),
    "dry_run": form_param(
        False,
        "On: print each ASG's renewal plan and change nothing.",
        title="Dry run (plan only)",
        section="Safety",
        type="boolean",
    ),
}


@dag(
    dag_id="fleet_max_age",
    schedule=[INVENTORY_ASSET],
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["phoenix-fleet", "inventory", "rollout"],
    doc_md=__doc__,
    **dag_callbacks("max_age"),
    render_template_as_native_obj=True,
    default_args={"owner": "platform", "retries": 1, "retry_delay": pendulum.duration(minutes=5)},
    params=PARAMS,
)
def fleet_max_age():
    @task
    def select(params: dict | None = None, triggering_asset_events=None, ti=None) -> list[dict]:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
        from airflow.sdk.exceptions import AirflowFailException
        from phoenix_fleet.aws_conn import require_aws_connection
        from phoenix_fleet.config import cached_fleet_config
        from phoenix_fleet.form_params import unknown_fields
        from phoenix_fleet.inventory.max_age import (
            MaxAgeParamError,
            describe,
            limits,
            read_report,
            renewals,
            report_ref,
        )

        cfg = cached_fleet_config()
        params = params or {}
        try:
            problems = unknown_fields(params, PARAMS)
            if problems:
                raise MaxAgeParamError("invalid fleet_max_age parameters:\n  " + "\n  ".join(problems))
            budget, lead = limits(params, cfg.max_age_asgs_per_run)
            ref = report_ref(params.get("report"), triggering_asset_events, cfg.artifacts_bucket)
            artifacts = cfg.artifacts_aws_conn()
            if ref.startswith("s3://"):
                require_aws_connection(artifacts.conn_id, artifacts.field)
            report = read_report(ref, lambda: AwsBaseHook(aws_conn_id=artifacts.conn_id, client_type="s3").conn)
            kwargs, plan = renewals(report, budget, lead)
        except MaxAgeParamError as exc:  # bad input: fail now, no retry, nothing changed
            raise AirflowFailException(str(exc)) from None
        for k in kwargs:  # each ASG is renewed through its role's environment's connection
            conn = cfg.aws_conn(k["role"])
            require_aws_connection(conn.conn_id, conn.field)
            k["aws_conn_id"] = conn.conn_id
        print(describe(plan, report, ref, lead))
        ti.xcom_push(key="throughput", value=plan["throughput"])  # for the summary (a few hundred bytes)
        return kwargs

    renew = AsgRecycleOperator.partial(
        task_id="renew",
        rollout_id="{{ dag.dag_id }}:{{ run_id }}",
        dry_run="{{ params.dry_run }}",
        if_locked="skip",
        max_active_tis_per_dagrun=2,
        execution_timeout=pendulum.duration(hours=3),
    ).expand_kwargs(select())

    # skipped groups (locked, template moved, none due) are not failures; one XCom (its keys are never pulled alone)
    @task(trigger_rule="none_failed", multiple_outputs=False)
    def summary(ti=None) -> dict:
        from phoenix_fleet.operators.recycle_operators import SUMMARY_XCOM_KEY

        pulled = ti.xcom_pull(task_ids="renew", key=SUMMARY_XCOM_KEY)
        results = [r for r in (pulled if isinstance(pulled, list) else [pulled]) if isinstance(r, dict)]
        for r in results:
            print(f"{r['asg']}: {r['outcome']}, {r['replaced']} replaced in {r['duration_seconds']}s: {r['message']}")
        if not results:
            print("nothing renewed (no ASG due, or every one skipped: see select and renew)")
        rate = ti.xcom_pull(task_ids="select", key="throughput") or {}
        if rate:
            print(
                f"throughput: {rate['needed_per_night']} renewal(s) a night keep up with {rate['asgs']} ASG(s); "
                f"budget {rate['budget']}: " + ("keeps up" if rate["keeps_up"] else rate["message"])
            )
            if rate.get("behind"):
                print(f"behind: {rate['behind']} due ASG(s) wait for the next run (their instances pass max age)")
        return {
            "renewed": [r["asg"] for r in results if r["outcome"] == "forward"],
            "results": results,
            "keeps_up": rate.get("keeps_up"),
            "throughput": {k: rate.get(k) for k in ("asgs", "needed_per_night", "budget", "per_run", "due_asgs", "behind", "message")},
        }

    renew >> summary()


fleet_max_age()
