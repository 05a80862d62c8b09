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
from phoenix_fleet.form_params import ROLE_PATTERN, form_param, string_list
from phoenix_fleet.operators.retention_operators import AmiRetentionOperator
from phoenix_fleet.pipelines.notify import dag_callbacks

GRACE_DAYS = 14

PARAMS = {
    "roles": form_param(
        None,
        "Only these roles, one per line. Empty: every role in include/fleet.yaml.",
        title="Roles",
        section="What to clean up",
        **string_list(ROLE_PATTERN, 31, 50, "one role name per line, as in include/fleet.yaml, e.g. web"),
    ),
    "keep_versions": form_param(
        None,
        "Versions to keep besides those in use. Empty or 0: each role's keep_versions (5 by default).",
        title="Versions to keep",
        section="What to clean up",
        type="integer",
        minimum=0,
        maximum=100,
    ),
    "grace_days": form_param(
        GRACE_DAYS,
        f"Days an AMI stays deprecated before it is deregistered and its snapshots deleted. Empty: {GRACE_DAYS}.",
        title="Grace before deletion (days)",
        section="What to clean up",
        type="integer",
        minimum=0,
        maximum=365,
    ),
    "dry_run": form_param(
        False,
        "On: only log what would be deprecated and deleted; change nothing.",
        title="Dry run (plan only)",
        section="Safety",
        type="boolean",
    ),
}


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
    params=PARAMS,
)
def ami_retention():
    @task
    def roles(params: dict | None = None) -> list[dict]:
        from airflow.sdk.exceptions import AirflowFailException
        from phoenix_fleet.aws_conn import require_aws_connection
        from phoenix_fleet.config import load_fleet_config
        from phoenix_fleet.form_params import unknown_fields

        params = params or {}
        problems = unknown_fields(params, PARAMS)
        cfg = load_fleet_config()
        wanted = [r for r in params.get("roles") or [] if r]
        problems += [
            f"params.roles: {name!r} is not a role of include/fleet.yaml. Fix: use some of {sorted(cfg.roles)} "
            "or leave it empty"
            for name in wanted
            if name not in cfg.roles
        ]
        if problems:  # bad input: fail now, no retry, nothing changed
            raise AirflowFailException("invalid ami_retention parameters:\n  " + "\n  ".join(problems))
        out = []
        for name in wanted or sorted(cfg.roles):  # each role through its environment's connection
            conn = cfg.aws_conn(name)
            require_aws_connection(conn.conn_id, conn.field)
            out.append({"role": name, "aws_conn_id": conn.conn_id})
        return out

    AmiRetentionOperator.partial(
        task_id="retention",
        keep_versions="{{ params.keep_versions }}",
        grace_days=f"{{{{ params.grace_days if params.grace_days is not none else {GRACE_DAYS} }}}}",
        dry_run_only="{{ params.dry_run is true }}",
    ).expand_kwargs(roles())


ami_retention()
