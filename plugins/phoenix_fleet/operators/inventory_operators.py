"""Operators of the nightly fleet inventory: collect one region, build and write the report, notify.

Import-light (DAG files import this at parse time): only ``airflow.sdk``, the standard library and our pure
modules at module level; the Amazon provider (``AwsBaseHook``, the notifiers) is imported inside ``execute``.

* :class:`CollectInventoryOperator` — one region's paginated sweep (``inventory.collect.collect_region``) with
  boto3 clients from ``AwsBaseHook(aws_conn_id, client_type=..., region_name=...)``; returns the region
  snapshot (XCom, JSON).
* :class:`BuildInventoryReportOperator` — joins the snapshots into the report (``inventory.report``), writes
  ``report.{json,csv,html}`` to ``$PHOENIX_REPORT_DIR/inventory/<date>/`` and ``.../latest/`` and to
  ``s3://<artifacts_bucket>/inventory/<date>/`` and ``inventory/latest/``, fills the outlet Asset event's
  extra, and returns the summary (with the text of the notification).
* :class:`InventoryNotifyOperator` — sends the summary when it is news (instances past max age), through the
  common notifier (``pipelines.notify``: SNS and Slack where configured), and logs it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context

from phoenix_fleet import fleet_config as cached_fleet_config
from phoenix_fleet.inventory.inventory_assets import INVENTORY_ASSET
from phoenix_fleet.operators.operator_args import as_bool

SNS_TOPIC_ENV = "PHOENIX_INVENTORY_SNS_TOPIC_ARN"
_SNS_ARN_RE = re.compile(r"^arn:aws[a-z-]*:sns:(?P<region>[a-z0-9-]+):\d{12}:[A-Za-z0-9_.-]+$")
_CONTENT_TYPES = {
    "report.json": "application/json",
    "report.csv": "text/csv; charset=utf-8",
    "report.html": "text/html; charset=utf-8",
}



def _as_int(value: Any, field: str) -> int | None:
    if value in (None, "", "None"):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{field}: {value!r} is not a whole number. Fix: give a number of days, or 0 for the config's") from None
    if number < 0:
        raise ValueError(f"{field}: must be 0 or more (got {number}). Fix: 0 uses the fleet config's value")
    return number or None


class CollectInventoryOperator(BaseOperator):
    """Sweep one region (instances, ASGs, launch-template versions, AMIs, SSM pointers) and return its snapshot.

    :param region_name: the region to sweep (mapped over the fleet's regions by fleet_inventory); None: the
        connection's region.
    :param aws_conn_id: Airflow AWS connection.
    :param ssm_prefix: prefix of the "latest" pointers (default: the fleet config's ``ssm_prefix``).
    :param page_sizes: override the largest page sizes (tests only; see ``collect.MAX_PAGE_SIZES``).
    """

    template_fields: Sequence[str] = ("aws_conn_id", "region_name", "ssm_prefix")
    ui_color = "#e3f2fd"

    def __init__(
        self,
        *,
        region_name: str | None = None,
        aws_conn_id: str | None = "aws_default",
        ssm_prefix: str | None = None,
        page_sizes: Mapping[str, int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.region_name = region_name
        self.aws_conn_id = aws_conn_id
        self.ssm_prefix = ssm_prefix
        self.page_sizes = dict(page_sizes or {})

    def _clients(self) -> tuple[str, Any, Any, Any]:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        from phoenix_fleet.aws_conn import require_aws_connection

        require_aws_connection(self.aws_conn_id)
        hooks = [
            AwsBaseHook(aws_conn_id=self.aws_conn_id, client_type=t, region_name=self.region_name)
            for t in ("ec2", "autoscaling", "ssm")
        ]
        region = self.region_name or hooks[0].conn_region_name
        if not region:
            raise ValueError("region_name: no region given and the connection has none. Fix: pass region_name")
        return region, hooks[0].conn, hooks[1].conn, hooks[2].conn

    def execute(self, context: Context) -> dict[str, Any]:
        from phoenix_fleet.inventory.collect import collect_region

        prefix = self.ssm_prefix or cached_fleet_config().ssm_prefix
        region, ec2, autoscaling, ssm = self._clients()
        self.log.info("Collecting the inventory of %s (SSM pointers under %s)", region, prefix)
        snapshot = collect_region(
            ec2, autoscaling, ssm, region, ssm_prefix=prefix, page_sizes=self.page_sizes or None, logger=self.log
        )
        for note in snapshot["stats"]["notes"]:
            self.log.warning("%s: %s", region, note)
        self._check_xcom_storage(region, snapshot)
        return snapshot

    def _check_xcom_storage(self, region: str, snapshot: Mapping[str, Any]) -> None:
        """Warn when this snapshot would land in the metadata DB above the limit (no object-storage backend)."""
        import json

        from phoenix_fleet.xcom_storage import XCOM_LIMIT_BYTES, problem

        size = len(json.dumps(snapshot))
        why = problem() if size > XCOM_LIMIT_BYTES else None
        if why:
            self.log.warning("The snapshot of %s is %d bytes (XCom limit %d): %s", region, size, XCOM_LIMIT_BYTES, why)


class BuildInventoryReportOperator(BaseOperator):
    """Build the fleet report from the region snapshots and write it locally and to S3.

    :param snapshots: the region snapshots (the mapped collect task's output).
    :param max_age_days: override every role's max age for this run (None/0: the fleet config's).
    :param artifacts_bucket: S3 bucket (default: the fleet config's ``artifacts_bucket``).
    :param write_s3: write to ``s3://<artifacts_bucket>/inventory/`` (the report's home: the UI page reads it there).
    :param report_dir: also write a local copy under this directory (default ``$PHOENIX_REPORT_DIR``; unset: no
        local copy). With neither S3 nor a local directory the task fails before it builds anything.
    :param aws_conn_id: Airflow AWS connection (S3): fleet_inventory passes the config's ``artifacts_aws_conn_id``.
    :param region_name: region of the S3 client (None: the connection's).
    """

    template_fields: Sequence[str] = (
        "snapshots",
        "max_age_days",
        "artifacts_bucket",
        "write_s3",
        "report_dir",
        "aws_conn_id",
        "region_name",
    )
    ui_color = "#e8f5e9"

    def __init__(
        self,
        *,
        snapshots: Any,
        max_age_days: int | str | None = None,
        artifacts_bucket: str | None = None,
        write_s3: bool | str = True,
        report_dir: str | None = None,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("outlets", [INVENTORY_ASSET])
        super().__init__(**kwargs)
        self.snapshots = snapshots
        self.max_age_days = max_age_days
        self.artifacts_bucket = artifacts_bucket
        self.write_s3 = write_s3
        self.report_dir = report_dir
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name

    def execute(self, context: Context) -> dict[str, Any]:
        from phoenix_fleet.inventory.report import (
            REPORT_DIR_ENV,
            build_report,
            default_report_dir,
            render_all,
            report_date,
            summary,
            summary_text,
            write_local,
        )

        cfg = cached_fleet_config()
        snaps = [s for s in (self.snapshots or []) if s]
        if not snaps:
            raise ValueError("snapshots: no region was collected. Fix: check the collect tasks and params.regions")
        local_dir = self.report_dir or default_report_dir()
        to_s3 = as_bool(self.write_s3)
        if not to_s3 and not local_dir:
            raise ValueError(
                f"write_s3: false and no local report directory (${REPORT_DIR_ENV} unset): the report would go "
                "nowhere. Fix: write it to S3 (the inventory page reads it there), or set a report_dir"
            )
        report = build_report(snaps, cfg, max_age_days=_as_int(self.max_age_days, "max_age_days"))
        from phoenix_fleet.fleet_metrics import inventory_stale

        inventory_stale(report["totals"]["stale"])
        files = render_all(report)
        local: dict[str, str | None] = dict.fromkeys(("dir", "report.html", "report.json"))
        if local_dir:
            local.update(write_local(report, local_dir, files))
            self.log.info("Wrote %s (and %s)", local["dir"], local["latest"])
        s3_uri = None
        if to_s3:
            s3_uri = self._upload(files, self.artifacts_bucket or cfg.artifacts_bucket, report_date(report))
        out = summary(report)
        where = s3_uri or str(local["report.html"])
        out.update(path=local["report.html"], dir=local["dir"], s3_uri=s3_uri, text=summary_text(report, where))
        for line in out["text"].splitlines():
            self.log.info("%s", line)
        extra = {
            "stale": report["totals"]["stale"],
            "instances": report["totals"]["instances"],
            "behind_latest": report["totals"]["behind_latest"],
            "asgs_drifted": report["totals"]["asgs_drifted"],
            "path": local["report.json"],
            "s3_uri": s3_uri,
            "generated_at": report["generated_at"],
            "regions": report["regions"],
        }
        outlet_events = context.get("outlet_events")
        if outlet_events is not None and any(getattr(o, "uri", None) == INVENTORY_ASSET.uri for o in self.outlets):
            outlet_events[INVENTORY_ASSET].extra.update(extra)
        return out

    def _upload(self, files: Mapping[str, bytes], bucket: str, date: str) -> str:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        from phoenix_fleet.aws_conn import require_aws_connection

        require_aws_connection(self.aws_conn_id)
        s3 = AwsBaseHook(aws_conn_id=self.aws_conn_id, client_type="s3", region_name=self.region_name).conn
        for prefix in (f"inventory/{date}", "inventory/latest"):
            for name, data in files.items():
                s3.put_object(
                    Bucket=bucket,
                    Key=f"{prefix}/{name}",
                    Body=data,
                    ContentType=_CONTENT_TYPES.get(name, "application/octet-stream"),
                    CacheControl="no-cache" if prefix.endswith("latest") else "max-age=86400",
                )
        uri = f"s3://{bucket}/inventory/{date}/report.html"
        self.log.info("Uploaded the report to s3://%s/inventory/%s/ and inventory/latest/", bucket, date)
        return uri


class InventoryNotifyOperator(BaseOperator):
    """Send the inventory summary when it is news, through the common notifier (``pipelines.notify``): the
    Amazon provider's ``SnsNotifier`` and the Slack provider's ``SlackWebhookNotifier``; always log it.

    News: an instance past max age (``stale`` above zero); a report with nothing to act on is only sent with
    the fleet config's ``notifications.on_success``. A failed run is reported by the DAG's failure callback.

    :param summary: the report task's return value (``text`` is the message).
    :param sns_topic_arn: topic; empty: ``$PHOENIX_INVENTORY_SNS_TOPIC_ARN``, else the fleet config's
        ``notifications.sns_topic_arn`` (else the environments' one topic).
    :param aws_conn_id: Airflow AWS connection.
    :param region_name: unused (the topic ARN names its region); kept for the AWS operator convention.

    Returns ``{"sent", "subject", "channels", "news"}``.
    """

    template_fields: Sequence[str] = ("summary", "sns_topic_arn", "aws_conn_id", "region_name")

    def __init__(
        self,
        *,
        summary: Any,
        sns_topic_arn: str | None = None,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.summary = summary
        self.sns_topic_arn = sns_topic_arn
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name

    def execute(self, context: Context) -> dict[str, Any]:
        from phoenix_fleet.pipelines.notify import Targets, inventory_message, send, targets

        summary = dict(self.summary or {})
        message = inventory_message(None, "succeeded", context, summary=summary)
        to = targets("inventory")
        topic = (self.sns_topic_arn or "").strip() or os.environ.get(SNS_TOPIC_ENV, "").strip() or to.sns_topic_arn
        if topic and not _SNS_ARN_RE.match(topic):
            raise ValueError(f"sns_topic_arn: {topic!r} is not an SNS topic ARN. Fix: arn:aws:sns:<region>:<account>:<name>")
        out = {"sent": False, "subject": message.subject, "channels": ["log"], "news": message.news}
        if not (topic or to.slack_conn_id):
            self.log.info(
                "No notification target configured (params.sns_topic_arn, $%s or the config's notifications):",
                SNS_TOPIC_ENV,
            )
        elif not (message.news or to.on_success):
            self.log.info("Nothing to act on (no instance past max age) and notifications.on_success is off:")
        else:
            sent = send(message, Targets(topic or None, to.slack_conn_id, to.on_success), context, self.aws_conn_id)
            if sent.errors:
                raise RuntimeError(f"the inventory summary could not be sent: {'; '.join(sent.errors)}")
            return {**out, "sent": True, "channels": sent.channels, "topic": topic}
        self.log.info("%s", message.subject)
        for line in message.body.splitlines():
            self.log.info("%s", line)
        return out
