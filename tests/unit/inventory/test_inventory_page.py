"""The inventory page reads S3, the report's home, when no local report directory is configured.

The app (``phoenix_fleet.ui.inventory_app``, without Airflow's auth) under FastAPI's TestClient, against the sandbox's
S3 through the Airflow AWS connection the fleet config names. Whatever is missing (the bucket, the object, the
connection, the fleet config) or unreachable, the page says "no report yet" and why: never a 500. The local
directory is only ever the one configured; nothing comes from where the package is installed.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient` is deprecated")

REPO = Path(__file__).resolve().parents[3]
BUCKET = "phoenix-fleet-artifacts"
DAY = "2026-12-01"


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """include/fleet.yaml as shipped (bucket phoenix-fleet-artifacts, aws_default), no local report dir."""
    path = tmp_path / "fleet.yaml"
    path.write_text((REPO / "include" / "fleet.yaml").read_text())
    monkeypatch.setenv("PHOENIX_FLEET_CONFIG", str(path))
    monkeypatch.delenv("PHOENIX_REPORT_DIR", raising=False)
    return path


@pytest.fixture
def client(sandbox_clean: Any, config: Path) -> Any:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from phoenix_fleet.ui.inventory_app import create_app

    root = FastAPI()
    root.mount("/phoenix", create_app(auth=False))
    return TestClient(root, raise_server_exceptions=False)


def put_report(s3: Any, day: str = DAY, marker: str = "from-s3", latest: bool = True) -> None:
    for prefix in (f"inventory/{day}", "inventory/latest")[: 2 if latest else 1]:
        s3.put_object(Bucket=BUCKET, Key=f"{prefix}/report.html", Body=f"<html><h1>{marker}</h1></html>".encode(),
                      ContentType="text/html")
        s3.put_object(Bucket=BUCKET, Key=f"{prefix}/report.json", Body=json.dumps({"generated_at": day,
                      "totals": {"stale": 3}}).encode())


def no_report(r: Any) -> str:
    assert r.status_code == 404, (r.status_code, r.text[:500])
    assert 'id="no-report"' in r.text and f"s3://{BUCKET}/inventory/" in r.text
    return r.text.split('id="reason">')[1].split("</p>")[0]


def test_the_page_reads_the_report_from_s3(sandbox_clean: Any, client: Any) -> None:
    s3 = sandbox_clean.client("s3")
    reason = no_report(client.get("/phoenix/inventory"))
    assert "NoSuchBucket" in reason and "aws_default" in reason
    assert client.get("/phoenix/healthz").json() == {
        "status": "ok", "source": f"s3://{BUCKET}/inventory/", "latest": False, "reason": reason.replace("&#x27;", "'"),
    }
    assert client.get("/phoenix/inventory/history").json()["days"] == []

    s3.create_bucket(Bucket=BUCKET)
    assert "NoSuchKey" in no_report(client.get("/phoenix/inventory"))
    r = client.get("/phoenix/inventory/report.json")
    assert r.status_code == 404 and "NoSuchKey" in r.json()["detail"]

    put_report(s3)
    put_report(s3, "2026-11-30", "older", latest=False)
    page = client.get("/phoenix/inventory")
    assert page.status_code == 200 and "<h1>from-s3</h1>" in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert client.get("/phoenix/inventory/report.json").json()["totals"] == {"stale": 3}
    assert "<h1>older</h1>" in client.get("/phoenix/inventory/2026-11-30/report.html").text
    assert client.get("/phoenix/inventory/history").json() == {"days": [DAY, "2026-11-30"]}
    assert client.get("/phoenix/healthz").json()["latest"] is True
    assert client.get("/phoenix/inventory/2026-11-29/report.html").status_code == 404
    assert client.get("/phoenix/inventory/report.exe").status_code == 404

    from phoenix_fleet.ui.inventory_app import summary_of_latest

    assert summary_of_latest() == {"generated_at": DAY, "stale": 3}


def test_the_page_uses_the_configured_connection_and_names_an_unknown_one(
    sandbox_clean: Any, client: Any, config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3 = sandbox_clean.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    put_report(s3)
    raw = yaml.safe_load(config.read_text())
    raw["artifacts_aws_conn_id"] = "aws_reports"
    config.write_text(yaml.safe_dump(raw))
    reason = no_report(client.get("/phoenix/inventory")).replace("&#x27;", "'")
    assert reason.startswith("artifacts_aws_conn_id: Airflow has no connection 'aws_reports'"), reason
    assert "AIRFLOW_CONN_AWS_REPORTS" in reason
    # the connection exists: the page reads through it
    monkeypatch.setenv("AIRFLOW_CONN_AWS_REPORTS", json.dumps({
        "conn_type": "aws", "login": "testing", "password": "testing",
        "extra": {"endpoint_url": sandbox_clean.endpoint_url, "region_name": "us-east-1"},
    }))
    assert "<h1>from-s3</h1>" in client.get("/phoenix/inventory").text


def test_unreachable_s3_or_a_broken_config_is_no_report_yet_not_a_500(
    sandbox_clean: Any, client: Any, config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({
        "conn_type": "aws", "login": "testing", "password": "testing",
        "extra": {"endpoint_url": dead, "region_name": "us-east-1"},
    }))
    reason = no_report(client.get("/phoenix/inventory"))
    assert "EndpointConnectionError" in reason or "Could not connect" in reason, reason
    assert client.get("/phoenix/inventory/history").status_code == 200

    config.write_text(config.read_text().replace("artifacts_bucket: phoenix-fleet-artifacts", "artifacts_bucket: X"))
    r = client.get("/phoenix/inventory")
    assert r.status_code == 404 and "the fleet config cannot be read" in r.text and "artifacts_bucket" in r.text


def test_a_local_report_dir_is_only_ever_the_configured_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from phoenix_fleet.inventory.report import default_report_dir
    from phoenix_fleet.ui.inventory_app import LocalReports, S3Reports, report_source

    monkeypatch.delenv("PHOENIX_REPORT_DIR", raising=False)
    monkeypatch.setenv("PHOENIX_FLEET_CONFIG", str(REPO / "include" / "fleet.yaml"))
    assert default_report_dir() is None  # not <install location>/.sandbox/reports
    source = report_source()
    assert isinstance(source, S3Reports) and (source.bucket, source.conn_id) == (BUCKET, "aws_default")
    monkeypatch.setenv("PHOENIX_REPORT_DIR", str(tmp_path))
    assert default_report_dir() == tmp_path
    assert isinstance(report_source(), LocalReports) and report_source().where == str(tmp_path / "inventory")


def test_the_report_task_writes_no_local_copy_unless_asked(
    sandbox_clean: Any, config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import inventory_fleet as F
    from phoenix_fleet.operators.inventory_operators import (
        BuildInventoryReportOperator,
        CollectInventoryOperator,
    )

    from tests.helpers.airflow_run import make_context, run_task

    F.build_fleet(sandbox_clean)
    s3 = sandbox_clean.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    snap = run_task(CollectInventoryOperator(task_id="collect", region_name="us-east-1"), make_context()).result
    monkeypatch.chdir(tmp_path)
    old_default = REPO / ".sandbox" / "reports"  # where the report used to land without PHOENIX_REPORT_DIR

    def files() -> set[Path]:
        return {p for p in (*tmp_path.rglob("*"), *old_default.rglob("*")) if p.is_file()}

    before = files()
    out = run_task(BuildInventoryReportOperator(task_id="report", snapshots=[snap]), make_context()).result
    assert out["path"] is None and out["dir"] is None and out["s3_uri"].startswith(f"s3://{BUCKET}/inventory/")
    assert files() == before
    with pytest.raises(ValueError, match=r"write_s3: false and no local report directory .* Fix:"):
        BuildInventoryReportOperator(task_id="report", snapshots=[snap], write_s3="False").execute(make_context())
