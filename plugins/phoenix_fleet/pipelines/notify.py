"""Notifications for every DAG: what happened, which version, the run link, and what to do.

:class:`PhoenixNotifier` is the ``on_failure_callback`` (and ``on_success_callback``) of ``ami_release_<role>``,
``fleet_rollout_<role>``, ``fleet_inventory``, ``fleet_max_age`` and ``ami_retention`` (:func:`dag_callbacks`).
It builds the message from the run (its XComs, the failed task), always writes it to the log, and sends it through
the Amazon provider's ``SnsNotifier`` and the Slack provider's ``SlackWebhookNotifier`` when the fleet config names
a topic or a connection (:func:`targets`):

* a role's DAGs: its environment's ``notify_sns_topic_arn`` / ``slack_conn_id``; a success only with
  ``notify_on_success`` (true by default);
* the fleet-wide DAGs: ``notifications:`` (else the environments' one topic / connection); a success only with
  ``notifications.on_success``, or when it is news (:attr:`Message.news`: an inventory with instances past max
  age is sent whatever the setting).

The targets are read from the fleet config when a message goes out (callbacks run in the DAG processor, or
after ``dag.test()``), not at DAG parse time; the provider notifiers are imported there too. A message carries
run data (release notes are operator text): it is never rendered as a template.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from airflow.sdk import BaseNotifier

log = logging.getLogger(__name__)

KINDS = ("release", "rollout", "inventory", "max_age", "retention")
ROLE_KINDS = ("release", "rollout")
NOTES_LIMIT = 1000
"""Characters of the operator's release notes a message carries (the release notes in S3 have them whole)."""
_SNS_ARN_RE = re.compile(r"^arn:aws[a-z-]*:sns:(?P<region>[a-z0-9-]+):\d{12}:.+$")


@dataclass
class Message:
    subject: str
    body: str
    news: bool = False  # worth sending on success even when success notifications are off


@dataclass
class Targets:
    sns_topic_arn: str | None = None
    slack_conn_id: str | None = None
    on_success: bool = False
    aws_conn_id: str | None = None  # the connection SNS is reached through (the environment's, or the artifacts')


@dataclass
class Sent:
    channels: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------- run data


def run_link(context: Mapping[str, Any]) -> str:
    """The run's page in the Airflow UI (``[api] base_url``)."""
    from airflow.configuration import conf

    base = str(conf.get("api", "base_url", fallback="") or "http://localhost:8080/").rstrip("/")
    dag_id = _dag_id(context)
    run_id = str(context.get("run_id") or getattr(context.get("dag_run"), "run_id", "") or "")
    return f"{base}/dags/{dag_id}/runs/{quote(run_id, safe='')}"


def _dag_id(context: Mapping[str, Any]) -> str:
    dag = context.get("dag")
    ti = context.get("ti")
    return str(getattr(dag, "dag_id", None) or getattr(ti, "dag_id", None) or "?")


def xcom(context: Mapping[str, Any], task_id: str, key: str = "return_value") -> Any:
    """An XCom of this run, or None.

    In a running Airflow the DAG callback runs in the DAG processor, whose supervisor answers XCom reads. After
    ``dag.test()`` it runs in the test's process with no supervisor: there the metadata DB is read directly.
    """
    ti = context.get("ti")
    if ti is not None:
        try:
            return ti.xcom_pull(task_ids=task_id, key=key)
        except Exception:  # noqa: BLE001 -- no supervisor to ask (dag.test): read the metadata DB below
            pass
    run_id = context.get("run_id") or getattr(context.get("dag_run"), "run_id", None)
    if not run_id:
        return None
    try:
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session

        with create_session() as session:
            rows = session.scalars(
                XComModel.get_many(run_id=run_id, key=key, task_ids=task_id, dag_ids=_dag_id(context))
            ).all()
            values = [XComModel.deserialize_value(r) for r in sorted(rows, key=lambda r: r.map_index)]
    except Exception:  # noqa: BLE001 -- neither way works here: the message says what it does not know
        return None
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def run_conf(context: Mapping[str, Any]) -> dict[str, Any]:
    """The run's trigger conf (what the form or the REST call asked for), or {}."""
    conf = getattr(context.get("dag_run"), "conf", None)
    return dict(conf) if isinstance(conf, Mapping) else {}


def failed_task(context: Mapping[str, Any]) -> str | None:
    """The task that failed (a mapped one with its index), from the callback's ``ti``."""
    ti = context.get("ti")
    task_id = getattr(ti, "task_id", None)
    if not task_id:
        return None
    index = getattr(ti, "map_index", -1)
    return f"{task_id}[{index}]" if isinstance(index, int) and index >= 0 else str(task_id)


def _reason(context: Mapping[str, Any]) -> str:
    reason = str(context.get("reason") or "").strip()
    return f" ({reason})" if reason and reason not in ("success", "task_failure") else ""


def _clip(text: str, limit: int = NOTES_LIMIT) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _hint(hints: Mapping[str, str], task: str | None, default: str) -> str:
    """The advice for the failed task: the longest task-id prefix in ``hints`` that matches."""
    if not task:
        return default
    bare = task.split("[")[0]
    for prefix in sorted(hints, key=len, reverse=True):
        if bare == prefix or bare.startswith(prefix + ".") or (prefix.endswith(".") and bare.startswith(prefix)):
            return hints[prefix]
    return default


def _failure_lines(context: Mapping[str, Any], hints: Mapping[str, str], default: str) -> list[str]:
    task = failed_task(context)
    return [
        f"What failed: task {task or '(unknown)'}{_reason(context)}.",
        f"What to do: {_hint(hints, task, default)}",
    ]


# ------------------------------------------------------------------------------------------------- messages

RELEASE_HINTS = {
    "plan": "the trigger form (or the schedule) was refused before anything changed; the plan task log names "
    "the field and the fix. Correct it and trigger the release again.",
    "bake": "Packer failed: its output (and any failed build-time image check) is in the bake task log. Fix the "
    "image (include/packer) or the base image and trigger again; a retry reuses an AMI already built for this "
    "version.",
    "ami_available": "the AMI did not become available (failed, or the wait timed out): see the ami_available "
    "log, deregister the AMI and trigger again.",
    "verify": "the image failed verification on its canary (launch_canary, wait_canary_healthy and "
    "run_image_tests log why). It was not published and the fleet is unchanged; the canary is terminated by "
    "terminate_canary. Fix the image and release again.",
    "release": "publishing failed before any pointer moved (see the task log); the fleet is unchanged. Clear "
    "the failed task to retry: the publish steps are idempotent.",
    "copy_to_region": "copying the AMI to a region failed (see the task log); the fleet is unchanged. Clear the "
    "failed task to retry: an existing copy is reused.",
    "publish": "moving the 'latest' pointers or announcing the release failed (see the publish log). Clear the "
    "task to retry: publishing the same AMI again is a no-op where nothing changed.",
}

ROLLOUT_HINTS = {
    "plan": "the trigger (or the asset event) was refused before anything changed; the plan task log names the "
    "field and the fix.",
    "apply": "Terraform (or the launch-template update) failed or its plan guard refused a change: see the apply "
    "log. No instance was replaced. Fix it and trigger the rollout again.",
    "check_launch_templates": "an ASG does not launch the new image after apply: see the task log (which ASG, "
    "which template version). No instance was replaced.",
    "canary": "the canary batch failed its health checks and was rolled back (or halted, per on_failure): see "
    "the canary log. The other ASGs were not touched; find out why the new image is unhealthy before retrying.",
    "approval": "the rollout was rejected or the approval timed out: canary_rollback put the canary's group back "
    "on its previous version (capacity, processes and lock restored; its line above says what it did, or why "
    "not). Nothing else was touched. Trigger the rollout again to go on.",
    "recycle": "an ASG failed its rollout and ended on one version (rolled forward or back, per on_failure): "
    "the recycle log says which and why. Fix the cause, then trigger the rollout again (instances already on "
    "the target are skipped).",
    "health_gate": "after the rollout an ASG is not at desired capacity with every instance healthy on the new "
    "image: see the health_gate log, then check the ASG and its targets.",
}

INVENTORY_HINTS = {
    "regions": "the regions could not be listed (the fleet config or params.regions): see the task log.",
    "collect": "a region's sweep failed (an AWS error or throttling): see the collect log. Tonight has no report "
    "and fleet_max_age does not run; trigger fleet_inventory again once the cause is gone.",
    "report": "the report could not be built or written (S3): see the report log; trigger fleet_inventory again.",
    "notify": "the report was written but its summary could not be sent: see the notify log.",
}

MAX_AGE_HINTS = {
    "select": "the inventory report could not be read or the form was refused: see the select log. Nothing was "
    "renewed.",
    "renew": "renewing an ASG failed: it halted with its capacity restored, on the image it ran (see the renew "
    "log for which ASG and why). The next inventory reports its instances again.",
}

RETENTION_HINTS = {
    "roles": "the roles could not be listed (the fleet config or params.roles): see the task log.",
    "retention": "a role's clean-up failed part way (see the retention log for the role and the AMI). What it "
    "deprecated or deleted stays so; the next run goes on. Nothing in use is ever deleted.",
}


def release_message(role: str | None, outcome: str, context: Mapping[str, Any]) -> Message:
    plan = xcom(context, "plan") or {}
    published = xcom(context, "publish") or {}
    asked = run_conf(context).get("version")  # what the form asked for, when plan did not get to decide
    version = published.get("version") or plan.get("version") or (str(asked) if asked else "(not decided)")
    lines = [f"Release of {role} {version}: {outcome}."]
    notes = published.get("operator_notes") or plan.get("operator_notes")
    if outcome == "succeeded":
        amis = published.get("amis") or {}
        if amis:
            lines.append("AMIs: " + ", ".join(f"{r} {a}" for r, a in amis.items()))
        if published.get("release_notes_uri"):
            lines.append(f"Release notes: {published['release_notes_uri']}")
        if plan.get("dry_run"):
            lines.append("Dry run: nothing was baked, verified or published.")
        elif amis:
            lines.append(f"fleet_rollout_{role} starts from the image asset event.")
    else:
        lines += _failure_lines(context, RELEASE_HINTS, "see the failed task's log.")
    if notes:
        lines.append(f"Operator's notes: {_clip(str(notes))}")
    lines.append(f"Run: {run_link(context)}")
    return Message(f"[phoenix-fleet] {role} {version}: release {outcome}", "\n".join(lines))


def rollout_message(role: str | None, outcome: str, context: Mapping[str, Any]) -> Message:
    """(subject, body) for a finished rollout run, from its plan and summary XComs."""
    dag_run = context.get("dag_run")
    plan = xcom(context, "plan") or {}
    skipped = xcom(context, "plan", key="skipped")
    if skipped and not plan:  # the plan skipped the run (one version, one rollout): nothing was rolled
        return Message(
            f"[phoenix-fleet] {role}: rollout skipped",
            f"Rollout of {role}: skipped, nothing changed.\n{skipped}\nRun: {run_link(context)}",
        )
    summary = xcom(context, "summary") or {}
    asked = run_conf(context).get("target_version")
    version = summary.get("version") or plan.get("version") or (str(asked) if asked else "latest")
    start = getattr(dag_run, "start_date", None)
    end = getattr(dag_run, "end_date", None)
    took = f" (took {(end - start).total_seconds() / 60:.1f} min)" if start and end else ""
    lines = [f"Rollout of {role} to {version}: {outcome}{took}."]
    from phoenix_fleet.pipelines.rollout_summary import asg_line

    for asg in summary.get("asgs") or []:
        lines.append(f"- {asg_line(asg)}")
    if not summary.get("asgs") and plan.get("targets"):
        lines.append("ASGs: " + ", ".join(t["asg_name"] for t in plan["targets"]))
    from phoenix_fleet.pipelines.rollout_summary import canary_rollback_line

    rolled_back = canary_rollback_line(xcom(context, "canary_rollback"))
    if rolled_back:
        lines.append(rolled_back)
    if summary.get("dry_run") or plan.get("dry_run"):
        lines.append("Dry run: nothing was changed.")
    if outcome != "succeeded":
        lines += _failure_lines(context, ROLLOUT_HINTS, "see the failed task's log.")
    notes = summary.get("operator_notes") or plan.get("operator_notes")
    if notes:
        lines.append(f"Operator's release notes: {_clip(str(notes))}")
    if summary.get("release_notes_uri") or plan.get("release_notes_uri"):
        lines.append(f"Release notes: {summary.get('release_notes_uri') or plan.get('release_notes_uri')}")
    lines.append(f"Run: {run_link(context)}")
    return Message(f"[phoenix-fleet] {role} {version}: rollout {outcome}", "\n".join(lines))


def inventory_message(
    role: str | None, outcome: str, context: Mapping[str, Any], summary: Mapping[str, Any] | None = None
) -> Message:
    """``summary``: the report task's result (default: its XCom)."""
    summary = summary if summary is not None else (xcom(context, "report") or {})
    stale = summary.get("stale") or 0
    versions = ", ".join(
        f"{r} {v.get('latest') or '-'}" for r, v in sorted((summary.get("roles") or {}).items())
    )
    if outcome == "succeeded":
        head = f"Fleet inventory: {stale} instance(s) past max age, {summary.get('behind_latest', '?')} behind latest"
        lines = [str(summary.get("text") or head)]
        if stale:
            lines.append(
                "What to do: nothing by hand: fleet_max_age (started by this report) renews the instances past "
                "max age on the image they run. Releases renew the rest."
            )
    else:
        head = "Fleet inventory failed"
        lines = [f"{head}."] + _failure_lines(context, INVENTORY_HINTS, "see the failed task's log.")
    if versions:
        lines.append(f"Latest versions: {versions}")
    lines.append(f"Run: {run_link(context)}")
    return Message(f"[phoenix-fleet] {head}", "\n".join(lines), news=outcome == "succeeded" and bool(stale))


def max_age_message(role: str | None, outcome: str, context: Mapping[str, Any]) -> Message:
    summary = xcom(context, "summary") or {}
    results = summary.get("results") or []
    lines = [f"Max-age renewal: {outcome}."]
    for r in results:
        lines.append(f"- {r.get('asg')}: {r.get('outcome')}, {r.get('replaced')} replaced: {r.get('message')}")
    if outcome != "succeeded":
        lines += _failure_lines(context, MAX_AGE_HINTS, "see the failed task's log.")
    lines.append(f"Run: {run_link(context)}")
    renewed = len(summary.get("renewed") or [])
    return Message(f"[phoenix-fleet] max-age renewal {outcome} ({renewed} ASG(s) renewed)", "\n".join(lines))


def retention_message(role: str | None, outcome: str, context: Mapping[str, Any]) -> Message:
    pulled = xcom(context, "retention")
    results = [r for r in (pulled if isinstance(pulled, list) else [pulled]) if isinstance(r, dict)]
    lines = [f"AMI retention: {outcome}."]
    for r in results:
        lines.append(
            f"- {r.get('role')}: deprecated {len(r.get('deprecated') or [])}, deleted {len(r.get('deleted') or [])} "
            f"AMIs{' (dry run)' if r.get('dry_run') else ''}"
        )
    if outcome != "succeeded":
        lines += _failure_lines(context, RETENTION_HINTS, "see the failed task's log.")
    lines.append(f"Run: {run_link(context)}")
    return Message(f"[phoenix-fleet] AMI retention {outcome}", "\n".join(lines))


MESSAGES: dict[str, Callable[[str | None, str, Mapping[str, Any]], Message]] = {
    "release": release_message,
    "rollout": rollout_message,
    "inventory": inventory_message,
    "max_age": max_age_message,
    "retention": retention_message,
}


# ------------------------------------------------------------------------------------------------- sending


def targets(kind: str, role: str | None = None, config_path: str | None = None) -> Targets:
    """Where a DAG of ``kind`` notifies, from the fleet config (read now, not at parse time)."""
    from phoenix_fleet.config import cached_fleet_config

    cfg = cached_fleet_config(config_path)
    if kind in ROLE_KINDS and role:
        env = cfg.environment(role)
        return Targets(env.notify_sns_topic_arn, env.slack_conn_id, env.notify_on_success, cfg.aws_conn(role).conn_id)
    n = cfg.fleet_notifications()
    return Targets(n.sns_topic_arn, n.slack_conn_id, n.on_success, cfg.artifacts_aws_conn().conn_id)


def send(message: Message, to: Targets, context: Mapping[str, Any], aws_conn_id: str | None = "aws_default") -> Sent:
    """Log the message, then send it to SNS and Slack where configured. A channel that fails is logged and the
    next one is tried; nothing raises (a notification must not hide what it reports)."""
    sent = Sent()
    log.info("%s\n%s", message.subject, message.body)
    sent.channels.append("log")
    subject = " ".join(message.subject.split())[:100]  # SNS: one line, at most 100 characters
    if to.sns_topic_arn:
        try:
            from airflow.providers.amazon.aws.notifications.sns import SnsNotifier

            m = _SNS_ARN_RE.match(to.sns_topic_arn)
            SnsNotifier(
                aws_conn_id=aws_conn_id,
                target_arn=to.sns_topic_arn,
                message=message.body,
                subject=subject,
                region_name=m["region"] if m else None,
            ).notify(dict(context))
            sent.channels.append("sns")
        except Exception as e:  # noqa: BLE001
            log.exception("could not publish the notification to %s", to.sns_topic_arn)
            sent.errors.append(f"sns: {e}")
    if to.slack_conn_id:
        try:
            from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

            SlackWebhookNotifier(
                slack_webhook_conn_id=to.slack_conn_id, text=f"*{message.subject}*\n{message.body}"
            ).notify(dict(context))
            sent.channels.append("slack")
        except Exception as e:  # noqa: BLE001
            log.exception("could not post the notification to Slack (connection %s)", to.slack_conn_id)
            sent.errors.append(f"slack: {e}")
    return sent


class PhoenixNotifier(BaseNotifier):
    """A DAG's failure or success notification (see the module docstring).

    :param kind: one of :data:`KINDS` (which message to build)
    :param outcome: ``failed`` or ``succeeded``
    :param role: the role of a release or rollout DAG
    :param sns_topic_arn: / :param slack_conn_id: override the fleet config's targets
    :param aws_conn_id: the AWS connection for SNS; None (default): the role's environment's
        (``environments.<env>.aws_conn_id``), for the fleet-wide DAGs ``artifacts_aws_conn_id``, read when sent
    """

    # nothing to template: the message is built from the run, and may hold operator text
    template_fields = ()

    def __init__(
        self,
        *,
        kind: str,
        outcome: str,
        role: str | None = None,
        sns_topic_arn: str | None = None,
        slack_conn_id: str | None = None,
        aws_conn_id: str | None = None,
        config_path: str | None = None,
    ) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind: {kind!r} is not one of {KINDS}")
        if outcome not in ("failed", "succeeded"):
            raise ValueError(f"outcome: {outcome!r} is not 'failed' or 'succeeded'")
        self.kind = kind
        self.outcome = outcome
        self.role = role
        self.sns_topic_arn = sns_topic_arn
        self.slack_conn_id = slack_conn_id
        self.aws_conn_id = aws_conn_id
        self.config_path = config_path
        self.sent: list[Sent] = []

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        """Nothing to render (and DAG-level callbacks may run where the DAG has no template environment)."""

    def notify(self, context: Any) -> None:
        message = MESSAGES[self.kind](self.role, self.outcome, context)
        to = targets(self.kind, self.role, self.config_path)
        to = Targets(self.sns_topic_arn or to.sns_topic_arn, self.slack_conn_id or to.slack_conn_id, to.on_success,
                     self.aws_conn_id or to.aws_conn_id)
        if self.outcome == "succeeded" and not (to.on_success or message.news):
            log.info("%s\n%s\n(success notifications are off for this DAG: logged only)", message.subject, message.body)
            self.sent.append(Sent(["log"]))
            return
        self.sent.append(send(message, to, context, to.aws_conn_id))


def dag_callbacks(kind: str, role: str | None = None, success: bool = True) -> dict[str, Any]:
    """``on_failure_callback`` (and, with ``success``, ``on_success_callback``) for a DAG of ``kind``."""
    out: dict[str, Any] = {"on_failure_callback": PhoenixNotifier(kind=kind, outcome="failed", role=role)}
    if success:
        out["on_success_callback"] = PhoenixNotifier(kind=kind, outcome="succeeded", role=role)
    return out
