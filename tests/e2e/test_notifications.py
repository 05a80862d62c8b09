"""Every DAG tells someone when it fails: whole-DAG runs (dag.test) that fail, and the message read back from the
SNS topic through an SQS subscription in the sandbox (and from a Slack incoming webhook served locally).

Each message says what failed, the version (where there is one), the run link and what to do; it is always in the
log too. The failures are real ones, each at the first task that can fail (bad input, a missing bucket); the
tests set every task's retries to 0, so a failure is final at once instead of after a retry delay.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_fleet import dag_from

pytestmark = pytest.mark.e2e

SLACK_CONN = "slack_phoenix_test"


class _Webhook(BaseHTTPRequestHandler):
    posts: list[dict[str, Any]]

    def do_POST(self) -> None:  # noqa: N802 -- http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).posts.append({"path": self.path, "json": json.loads(body or b"{}")})
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def slack_webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """A local stand-in for Slack's incoming-webhook endpoint (the HTTP boundary), and the Airflow connection the
    Slack provider's notifier posts through: its password is the webhook URL."""
    handler = type("Webhook", (_Webhook,), {"posts": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/services/T000/B000/XXXX"
    monkeypatch.setenv(f"AIRFLOW_CONN_{SLACK_CONN.upper()}", json.dumps({"conn_type": "slackwebhook", "password": url}))
    try:
        yield handler.posts
    finally:
        server.shutdown()


@pytest.fixture
def inbox(seeded: dict[str, Any], fast_fleet_config: Path) -> dict[str, Any]:
    """An SNS topic with an SQS queue subscribed, named by the fleet config for every role's environment and for
    the fleet-wide DAGs (success notifications off for those)."""
    h = seeded["handle"]
    sns, sqs = h.client("sns"), h.client("sqs")
    topic = sns.create_topic(Name="phoenix-notifications")["TopicArn"]
    queue = sqs.create_queue(QueueName="phoenix-notifications-mail")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    raw = yaml.safe_load(fast_fleet_config.read_text())
    for env in raw["environments"].values():
        env["notify_sns_topic_arn"] = topic
    fast_fleet_config.write_text(yaml.safe_dump(raw))

    def messages() -> list[dict[str, str]]:
        out = []
        while True:
            got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
            if not got:
                return out
            for m in got:
                body = json.loads(m["Body"])
                out.append({"subject": body.get("Subject", ""), "message": body["Message"]})
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])

    return {"topic": topic, "messages": messages, "config": fast_fleet_config}


def _run_failing(module: str, dag_id: str, conf: dict[str, Any]) -> Any:
    dag = dag_from(module, dag_id)
    for task in dag.tasks:
        task.retries = 0
    run = dag.test(run_conf=conf)
    assert run.state == "failed", {ti.task_id: ti.state for ti in run.get_task_instances()}
    return run


def _one(messages: list[dict[str, str]], dag_id: str, run: Any) -> dict[str, str]:
    assert len(messages) == 1, messages
    m = messages[0]
    assert "failed" in m["subject"], m
    assert f"/dags/{dag_id}/runs/" in m["message"] and run.run_id.replace(":", "%3A").replace("+", "%2B") in m["message"]
    assert "What failed: task " in m["message"] and "What to do: " in m["message"], m["message"]
    return m


@pytest.fixture
def notify_log() -> Iterator[list[str]]:
    """What the notifier writes to its logger (wherever Airflow's logging config sends it afterwards)."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger, handler = logging.getLogger("phoenix_fleet.pipelines.notify"), Collect(logging.INFO)
    logger.addHandler(handler)
    level, logger.level = logger.level, logging.INFO
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_a_failed_release_and_rollout_notify_with_the_version(airflow_db, seeded, inbox, notify_log):
    """ami_release_worker refuses a version another AMI holds (plan); fleet_rollout_worker refuses an ASG that is
    not the role's (plan): each failure arrives on the topic, saying so."""
    version = seeded["roles"]["worker"]["version"]
    run = _run_failing("ami_release", "ami_release_worker", {"version": version})
    m = _one(inbox["messages"](), "ami_release_worker", run)
    assert m["subject"] == f"[phoenix-fleet] worker {version}: release failed", m
    assert "What failed: task plan." in m["message"]
    assert "the plan task log names the field and the fix" in m["message"]
    assert any(line.startswith(m["subject"] + "\n") for line in notify_log), notify_log  # always a log line

    run = _run_failing("fleet_rollout", "fleet_rollout_worker", {"target_version": version, "asgs": ["no-such-asg"]})
    m = _one(inbox["messages"](), "fleet_rollout_worker", run)
    assert m["subject"] == f"[phoenix-fleet] worker {version}: rollout failed", m
    assert "What failed: task plan." in m["message"]


def test_fleet_wide_dags_notify_failures(airflow_db, seeded, inbox, slack_webhook, tmp_path, monkeypatch):
    """fleet_inventory (no bucket to write the report to), fleet_max_age (no report) and ami_retention (an unknown
    role) fail; each failure arrives on the fleet's topic and in Slack."""
    raw = yaml.safe_load(inbox["config"].read_text())
    raw["notifications"] = {"sns_topic_arn": inbox["topic"], "slack_conn_id": SLACK_CONN}
    inbox["config"].write_text(yaml.safe_dump(raw))
    h = seeded["handle"]
    s3 = h.client("s3")
    for version in s3.list_object_versions(Bucket="phoenix-fleet-artifacts").get("Versions", []):
        s3.delete_object(Bucket="phoenix-fleet-artifacts", Key=version["Key"], VersionId=version["VersionId"])
    s3.delete_bucket(Bucket="phoenix-fleet-artifacts")
    monkeypatch.setenv("PHOENIX_REPORT_DIR", str(tmp_path / "reports"))

    run = _run_failing("fleet_inventory", "fleet_inventory", {})
    m = _one(inbox["messages"](), "fleet_inventory", run)
    assert m["subject"] == "[phoenix-fleet] Fleet inventory failed"
    assert "What failed: task report." in m["message"] and "the report could not be built or written" in m["message"]

    run = _run_failing("fleet_max_age", "fleet_max_age", {"report": str(tmp_path / "missing.json")})
    m = _one(inbox["messages"](), "fleet_max_age", run)
    assert "What failed: task select." in m["message"] and "Nothing was renewed" in m["message"]

    run = _run_failing("ami_retention", "ami_retention", {"roles": ["no-such-role"]})
    m = _one(inbox["messages"](), "ami_retention", run)
    assert m["subject"] == "[phoenix-fleet] AMI retention failed" and "What failed: task roles." in m["message"]

    assert [p["path"] for p in slack_webhook] == ["/services/T000/B000/XXXX"] * 3
    texts = [p["json"]["text"] for p in slack_webhook]
    assert texts[0].startswith("*[phoenix-fleet] Fleet inventory failed*\n") and "What to do: " in texts[0]
    assert "AMI retention failed" in texts[2]

