"""
### fleet_inventory

Nightly inventory of the fleet: **what AMI version every server runs, how old it is, and what drifted.**

1. `regions` lists every region of every role in `include/fleet.yaml` (or the `regions` Param), each with the AWS
   connection of the role's environment (`environments.<env>.aws_conn_id`), and checks that every connection the
   run uses exists (an unknown one fails here, naming the field);
2. `collect` (mapped, one task per region and connection) makes one paginated sweep: DescribeInstances, DescribeAutoScalingGroups,
   DescribeLaunchTemplateVersions (`$Default`/`$Latest` and pinned versions), DescribeImages (ours, including
   deprecated and disabled, plus every referenced image) and the SSM `latest` pointers;
3. `report` joins them into one report (rows per instance; summaries per ASG and role; drift: launch templates
   behind the latest version, instances behind their launch template; AMIs that are not ours) and writes
   `report.json` (schema `phoenix-inventory-report/1`), `report.csv` and a self-contained `report.html` to
   `s3://<artifacts_bucket>/inventory/<date>/` (and `inventory/latest/`) through `artifacts_aws_conn_id`, and to
   `$PHOENIX_REPORT_DIR/inventory/` when that is set.
   It emits the Asset `phoenix_fleet_inventory` (`x-phoenix://inventory/fleet`) with extra
   `{stale, instances, behind_latest, asgs_drifted, path, s3_uri}`; fleet_max_age consumes it;
4. `notify` logs the summary, and sends it when it is news (an instance past max age; or always, with the config's
   `notifications.on_success`) to SNS (`sns_topic_arn` Param, `$PHOENIX_INVENTORY_SNS_TOPIC_ARN`, or the config's
   `notifications`) and Slack. A failed run notifies there too: what failed, the run link, what to do.

The latest report is also a page of the Airflow UI: **Browse → Fleet inventory** (plugin `phoenix_fleet`).
A server is *stale* when it is older than `max_age_days` (14 by default, per role in the config). See
docs/inventory.md.
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
from phoenix_fleet.form_params import REGION_PATTERN, SNS_TOPIC_ARN_PATTERN, form_param, string_list
from phoenix_fleet.operators.inventory_operators import (
    BuildInventoryReportOperator,
    CollectInventoryOperator,
    InventoryNotifyOperator,
)
from phoenix_fleet.pipelines.notify import dag_callbacks

PARAMS = {
    "regions": form_param(
        None,
        "Only these regions, one per line. Empty: every region of every role in include/fleet.yaml.",
        title="Regions",
        section="Scope",
        **string_list(REGION_PATTERN, 32, 30, "one region per line, e.g. us-east-1"),
    ),
    "max_age_days": form_param(
        None,
        "Max age in days for this run, for every role. Empty or 0: each role's in include/fleet.yaml (14 by default).",
        title="Max age (days)",
        section="Report",
        type="integer",
        minimum=0,
        maximum=365,
    ),
    "write_s3": form_param(
        True,
        "On: write the report to s3://<artifacts_bucket>/inventory/, where the UI page reads it (off: only to $PHOENIX_REPORT_DIR).",
        title="Write the report to S3",
        section="Report",
        type="boolean",
    ),
    "sns_topic_arn": form_param(
        None,
        "SNS topic ARN for the summary. Empty: $PHOENIX_INVENTORY_SNS_TOPIC_ARN or the config's; else log only.",
        title="SNS topic for the summary",
        section="Report",
        type="string",
        pattern=SNS_TOPIC_ARN_PATTERN,
        maxLength=400,
        **{"x-fix": "an SNS topic ARN, arn:aws:sns:<region>:<12-digit account>:<name>, or leave it empty"},
    ),
}


@dag(
    dag_id="fleet_inventory",
    schedule="0 2 * * *",
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["phoenix-fleet", "inventory"],
    doc_md=__doc__,
    **dag_callbacks("inventory", success=False),
    render_template_as_native_obj=True,
    default_args={"owner": "platform", "retries": 2, "retry_delay": pendulum.duration(minutes=5)},
    params=PARAMS,
)
def fleet_inventory():
    @task
    def regions(params: dict | None = None, ti=None) -> list[dict]:
        from airflow.sdk.exceptions import AirflowFailException
        from phoenix_fleet.aws_conn import require_aws_connection
        from phoenix_fleet.config import load_fleet_config
        from phoenix_fleet.form_params import unknown_fields
        from phoenix_fleet.inventory.report import fleet_sweeps

        params = params or {}
        problems = unknown_fields(params, PARAMS)
        if problems:  # bad input: fail now, no retry, nothing written
            raise AirflowFailException("invalid inventory parameters:\n  " + "\n  ".join(problems))
        cfg = load_fleet_config()
        try:
            sweeps = fleet_sweeps(cfg, params.get("regions"))
        except ValueError as e:
            raise AirflowFailException(str(e)) from None
        # each region through the connection of its roles' environment; every connection the run uses must exist
        used = {c for c in (cfg.aws_conn(r) for r in cfg.roles) if c.conn_id in {s["aws_conn_id"] for s in sweeps}}
        for conn in sorted(used | {cfg.artifacts_aws_conn()}):
            require_aws_connection(conn.conn_id, conn.field)
        if ti is not None:
            ti.xcom_push(key="artifacts_aws_conn_id", value=cfg.artifacts_aws_conn().conn_id)
        return sweeps

    artifacts_conn = "{{ ti.xcom_pull(task_ids='regions', key='artifacts_aws_conn_id') }}"
    collect = CollectInventoryOperator.partial(task_id="collect").expand_kwargs(regions())
    report = BuildInventoryReportOperator(
        task_id="report",
        snapshots=collect.output,
        max_age_days="{{ params.max_age_days }}",
        write_s3="{{ params.write_s3 is not false }}",  # empty (null): the default, write
        aws_conn_id=artifacts_conn,
    )
    InventoryNotifyOperator(
        task_id="notify", summary=report.output, sns_topic_arn="{{ params.sns_topic_arn }}", aws_conn_id=artifacts_conn,
    )


fleet_inventory()
