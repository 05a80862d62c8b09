"""The inventory operators against the sandbox, through the Amazon provider's hooks (aws_default -> sandbox)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import inventory_fleet as F
import pytest
from airflow.sdk.execution_time.context import OutletEventAccessors
from phoenix_fleet.inventory.inventory_assets import INVENTORY_ASSET, INVENTORY_ASSET_URI
from phoenix_fleet.inventory.report import validate_report
from phoenix_fleet.operators.inventory_operators import (
    BuildInventoryReportOperator,
    CollectInventoryOperator,
    InventoryNotifyOperator,
)

from tests.helpers.airflow_run import make_context, run_task

BUCKET = "phoenix-fleet-artifacts"


def test_template_fields() -> None:
    for cls in (CollectInventoryOperator, BuildInventoryReportOperator, InventoryNotifyOperator):
        assert {"aws_conn_id", "region_name"} <= set(cls.template_fields), cls.__name__
    assert {"snapshots", "max_age_days", "artifacts_bucket", "report_dir", "write_s3"} <= set(
        BuildInventoryReportOperator.template_fields
    )
    assert "sns_topic_arn" in InventoryNotifyOperator.template_fields
    assert BuildInventoryReportOperator(task_id="r", snapshots=[]).outlets == [INVENTORY_ASSET]
    assert INVENTORY_ASSET.uri == INVENTORY_ASSET_URI == "x-phoenix://inventory/fleet"


def test_collect_report_and_notify(sandbox_clean: Any, tmp_path: Any, capsys: Any) -> None:
    # the operators measure ages against the clock: the fleet is aged relative to now, not to F.NOW
    fleet = F.build_fleet(sandbox_clean, now=dt.datetime.now(dt.UTC))
    s3 = sandbox_clean.client("s3")
    s3.create_bucket(Bucket=BUCKET)

    snaps = [
        run_task(CollectInventoryOperator(task_id="collect", region_name=r), make_context()).result
        for r in ("us-east-1", "eu-west-1")
    ]
    assert len(snaps[0]["instances"]) == 8 and snaps[1]["instances"] == []
    json.dumps(snaps)  # XCom-safe

    context = make_context(outlet_events=OutletEventAccessors())
    op = BuildInventoryReportOperator(task_id="report", snapshots=snaps, report_dir=str(tmp_path), max_age_days="0")
    summary = run_task(op, context).result
    assert summary["regions"] == ["eu-west-1", "us-east-1"]
    assert summary["instances"] == 8 and summary["stale"] == 1  # the backdated one: 20 days old
    assert summary["s3_uri"].startswith(f"s3://{BUCKET}/inventory/") and summary["s3_uri"].endswith("/report.html")
    assert "Fleet inventory" in summary["text"] and summary["path"].startswith(str(tmp_path))
    date = summary["generated_at"][:10]
    for prefix in (f"inventory/{date}", "inventory/latest"):
        keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix + "/")["Contents"]}
        assert keys == {f"{prefix}/report.{x}" for x in ("json", "csv", "html")}
    head = s3.head_object(Bucket=BUCKET, Key="inventory/latest/report.html")
    assert head["ContentType"].startswith("text/html")
    report = json.loads(s3.get_object(Bucket=BUCKET, Key="inventory/latest/report.json")["Body"].read())
    validate_report(report)
    assert (tmp_path / "inventory" / "latest" / "report.html").is_file()
    extra = context["outlet_events"][INVENTORY_ASSET].extra
    assert extra["instances"] == 8 and extra["stale"] == 1 and extra["path"].endswith("report.json")
    assert extra["s3_uri"] == summary["s3_uri"]
    json.dumps(extra)

    # an override that makes every instance stale
    strict = run_task(
        BuildInventoryReportOperator(task_id="report", snapshots=snaps, report_dir=str(tmp_path), max_age_days=1, write_s3=False),
        make_context(),
    ).result
    assert strict["stale"] == 8 and strict["s3_uri"] is None

    # notify: logs without a topic ...
    capsys.readouterr()
    assert run_task(InventoryNotifyOperator(task_id="notify", summary=summary), make_context()).result["sent"] is False
    out = capsys.readouterr().out
    assert "No notification target configured" in out and "1 instance(s) past max age" in out

    # ... and sends it with one, since an instance past max age is news (read back through an SQS subscription)
    sns, sqs = sandbox_clean.client("sns"), sandbox_clean.client("sqs")
    topic = sns.create_topic(Name="phoenix-inventory")["TopicArn"]
    queue = sqs.create_queue(QueueName="inventory-mail")["QueueUrl"]
    qarn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=qarn)
    sent = run_task(InventoryNotifyOperator(task_id="notify", summary=summary, sns_topic_arn=topic), make_context()).result
    assert sent["sent"] is True and sent["news"] is True and sent["channels"] == ["log", "sns"]
    (received,) = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    body = json.loads(received["Body"])
    assert body["Subject"] == "[phoenix-fleet] Fleet inventory: 1 instance(s) past max age, 5 behind latest"
    assert "8 instances" in body["Message"] and "fleet_max_age" in body["Message"] and "Run: http" in body["Message"]
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=received["ReceiptHandle"])
    assert fleet.stale_instance in (tmp_path / "inventory" / "latest" / "report.html").read_text()

    # nothing past max age: no news, and success notifications are off by default: logged, not sent
    calm = {**summary, "stale": 0}
    quiet = run_task(InventoryNotifyOperator(task_id="notify", summary=calm, sns_topic_arn=topic), make_context()).result
    assert quiet["sent"] is False and quiet["news"] is False
    assert sqs.receive_message(QueueUrl=queue).get("Messages", []) == []


def test_notify_topic_from_env_and_bad_arn(sandbox_clean: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("PHOENIX_INVENTORY_SNS_TOPIC_ARN", "not-an-arn")
    with pytest.raises(ValueError, match="sns_topic_arn.*Fix"):
        run_task(InventoryNotifyOperator(task_id="notify", summary={"text": "x"}), make_context())


def test_report_refuses_no_snapshots(tmp_path: Any) -> None:
    with pytest.raises(ValueError, match="snapshots.*Fix"):
        run_task(BuildInventoryReportOperator(task_id="r", snapshots=[], report_dir=str(tmp_path)), make_context())
    with pytest.raises(ValueError, match="max_age_days.*Fix"):
        run_task(
            BuildInventoryReportOperator(task_id="r", snapshots=[{"region": "x"}], report_dir=str(tmp_path), max_age_days="old"),
            make_context(),
        )


def test_collect_warns_when_a_big_snapshot_would_land_in_the_metadata_db(sandbox_clean: Any, monkeypatch: Any, capsys: Any) -> None:
    import phoenix_fleet.xcom_storage as xs

    F.build_fleet(sandbox_clean)
    monkeypatch.setattr(xs, "XCOM_LIMIT_BYTES", 1000)  # this small fleet's snapshot is a few kB
    monkeypatch.setenv("AIRFLOW__CORE__XCOM_BACKEND", "airflow.sdk.bases.xcom.BaseXCom")
    op = CollectInventoryOperator(task_id="collect", region_name="us-east-1")
    capsys.readouterr()
    run_task(op, make_context())
    logged = capsys.readouterr().out
    assert "The snapshot of us-east-1 is" in logged and "stored in the metadata DB" in logged and "Fix: set" in logged

    for name, value in xs.backend_env(BUCKET).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AIRFLOW__COMMON_IO__XCOM_OBJECTSTORAGE_THRESHOLD", "512")  # below the (patched) limit
    run_task(op, make_context())
    logged = capsys.readouterr().out
    assert "inventory us-east-1:" in logged and "The snapshot of" not in logged
