"""
### ami_retention

Weekly clean-up of superseded AMIs, per role (mapped): **keep the newest `keep_versions` versions** (the role's
`keep_versions` in `include/fleet.yaml`, 5 by default) **and every AMI in use**, deprecate the rest, and delete
them after a grace period.

In use means: an instance in any state but terminated (in an ASG or not, in any region of the role); a
launch-template version an ASG uses, and every template's `$Default` and `$Latest`; the SSM
`/phoenix/images/<role>/latest` pointer's value and the version `latest-version` names; whatever a rollout
record (an ASG's `phoenix:rollout:*` tags) names, its rollback target above all. A version in use in one
region is kept in all. Releases at or after the latest pointer (in flight) are kept. A sweep that could not see
everything (a failed lookup) deletes nothing, and says why.

1. **deprecate**: EnableImageDeprecation where the endpoint has it (moto lacks it: a log line says so), and the
   tag `phoenix:deprecated-at`;
2. after `grace_days` since deprecation: sweep again, ask DescribeImageReferences, then **deregister** and delete
   the AMI's snapshots;
3. an AMI that is needed again (e.g. the pointer rolled back to it) is un-deprecated.

**Notifications:** a failure (which role, the run link, what to do) goes to the config's `notifications` (SNS,
Slack) and the log; a success (what was deprecated and deleted) only with `notifications.on_success`.

**dry_run** logs what would be deprecated and deleted, and why the rest stays, and changes nothing. See
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
from phoenix_fleet.form_params import form_param
from phoenix_fleet.operators.retention_operators import AmiRetentionOperator
from phoenix_fleet.pipelines.notify import dag_callbacks


@dag(
    dag_id="ami_retention",
    schedule="0 5 * * 0",
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["phoenix-fleet", "inventory", "retention"],
    doc_md=__doc__,
    **dag_callbacks("retention"),
    render_template_as_native_obj=True,
    default_args={"owner": "platform", "retries": 1, "retry_delay": pendulum.duration(minutes=10)},
    params={
        "roles": form_param(
            [],
            type="array",
            items={"type": "string"},
            description="Only these roles (empty: every role in include/fleet.yaml).",
        ),
        "dry_run": form_param(
            False,
            type="boolean",
            description="Only log what would be deprecated and deleted; change nothing.",
        ),
        "keep_versions": form_param(
            0,
            type="integer",
            minimum=0,
            maximum=100,
            description="Versions to keep besides those in use (0: each role's keep_versions, 5 by default).",
        ),
        "grace_days": form_param(
            14,
            type="integer",
            minimum=0,
            maximum=365,
            description="Days an AMI stays deprecated before it is deregistered and its snapshots deleted.",
        ),
    },
)
def ami_retention():
    @task
    def roles(params: dict | None = None) -> list[str]:
        from phoenix_fleet.config import load_fleet_config

        cfg = load_fleet_config()
        wanted = [r for r in (params or {}).get("roles") or [] if r]
        for name in wanted:
            cfg.role(name)  # unknown role: the error names it and the fix
        return wanted or sorted(cfg.roles)

    AmiRetentionOperator.partial(
        task_id="retention",
        aws_conn_id="aws_default",
        keep_versions="{{ params.keep_versions }}",
        grace_days="{{ params.grace_days }}",
        dry_run_only="{{ params.dry_run }}",
    ).expand(role=roles())


ami_retention()
