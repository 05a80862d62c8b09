"""Rollout notifications: what changed, which version, how long it took, where to look.

``RolloutNotifier`` is an Airflow notifier (DAG ``on_success_callback``/``on_failure_callback``). It always
writes the message to the log, publishes it through the Amazon provider's ``SnsHook`` when the role's
environment names an SNS topic, and posts it through the Slack provider when a Slack connection is
configured and the provider is installed. Import-light: the hooks are imported when a message is sent.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseNotifier

if TYPE_CHECKING:
    from phoenix_fleet.dag_facts import RoleFacts

log = logging.getLogger(__name__)


def rollout_message(role: str, outcome: str, context: Any) -> tuple[str, str]:
    """(subject, body) for a finished rollout run, from its context (plan and summary XComs)."""
    dag_run = context.get("dag_run")
    ti = context.get("ti")
    plan = (ti.xcom_pull(task_ids="plan") if ti else None) or {}
    summary = (ti.xcom_pull(task_ids="summary") if ti else None) or {}
    version = plan.get("version") or "?"
    start = getattr(dag_run, "start_date", None)
    end = getattr(dag_run, "end_date", None)
    took = f"{(end - start).total_seconds() / 60:.1f} min" if start and end else "?"
    lines = [f"Rollout of {role} to {version}: {outcome} (took {took})."]
    for asg in summary.get("asgs") or []:
        lines.append(
            f"- {asg.get('asg')}: {asg.get('outcome')} {asg.get('from_image')} -> {asg.get('to_image')}, "
            f"{asg.get('replaced')} instances replaced"
        )
    if not summary.get("asgs") and plan.get("targets"):
        lines.append("ASGs: " + ", ".join(t["asg_name"] for t in plan["targets"]))
    if outcome != "succeeded":
        failed = getattr(ti, "task_id", None)
        lines.append(f"Failed task: {failed}. Each ASG ends on one version (rolled forward or back): check the "
                     "recycle task logs for the progress lines and the reason.")
    run_id = getattr(dag_run, "run_id", "?")
    lines.append(f"Where to look: DAG fleet_rollout_{role}, run {run_id} (Airflow UI > Grid), task logs of recycle.")
    subject = f"[phoenix-fleet] {role} {version}: rollout {outcome}"
    return subject, "\n".join(lines)


class RolloutNotifier(BaseNotifier):
    # nothing to template: the message is built from the run's XComs (and DAG-level callbacks run where a
    # serialized DAG has no template environment)
    template_fields = ()

    def __init__(
        self,
        *,
        role: str,
        outcome: str,
        sns_topic_arn: str | None = None,
        slack_conn_id: str | None = None,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
    ) -> None:
        super().__init__()
        self.role = role
        self.outcome = outcome
        self.sns_topic_arn = sns_topic_arn
        self.slack_conn_id = slack_conn_id
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.sent: list[str] = []

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        """Nothing to render (and DAG-level callbacks may run where the DAG has no template environment)."""

    def notify(self, context: Any) -> None:
        subject, body = rollout_message(self.role, self.outcome, context)
        log.info("%s\n%s", subject, body)
        self.sent.append("log")
        if self.sns_topic_arn:
            from airflow.providers.amazon.aws.hooks.sns import SnsHook

            SnsHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name).publish_to_target(
                target_arn=self.sns_topic_arn, message=body, subject=subject[:100]
            )
            self.sent.append("sns")
        if self.slack_conn_id:
            try:
                from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook
            except ImportError:
                log.warning("slack_conn_id %s is set but apache-airflow-providers-slack is not installed: "
                            "install it to post rollout messages to Slack", self.slack_conn_id)
                return
            SlackWebhookHook(slack_webhook_conn_id=self.slack_conn_id).send(text=f"*{subject}*\n{body}")
            self.sent.append("slack")


def rollout_callbacks(facts: RoleFacts) -> tuple[RolloutNotifier, RolloutNotifier]:
    """(on success, on failure) for the role's rollout DAG: its environment's SNS topic and Slack connection."""
    common = {
        "sns_topic_arn": facts["notify_sns_topic_arn"],
        "slack_conn_id": facts["slack_conn_id"],
        "region_name": facts["home_region"],
    }
    return (
        RolloutNotifier(role=facts["role"], outcome="succeeded", **common),
        RolloutNotifier(role=facts["role"], outcome="failed", **common),
    )
