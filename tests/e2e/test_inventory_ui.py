"""The fleet inventory end to end: fleet_inventory runs (dag.test) against a sandbox fleet, and its report is
looked at in headless Chromium, served by the plugin's FastAPI app, then through a real ``airflow api-server``
with the plugin loaded (the app mounted at /phoenix, the external view in the navigation).

Screenshots are kept in ``artifacts/`` (gitignored): ``inventory-page.png`` (the page) and
``inventory-in-airflow-ui.png`` (the page inside Airflow's UI, Browse -> Fleet inventory).

Chromium is Debian's ``chromium`` (``.ci/apt-packages.txt``); without it this test fails, it never skips.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts"
sys.path.insert(0, str(REPO / "tests" / "unit" / "inventory"))  # the shared sandbox fleet builder

import inventory_fleet as F  # noqa: E402

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient` is deprecated"),
]

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        where = "CI installs it from .ci/apt-packages.txt" if os.environ.get("CI") else "install it"
        pytest.fail(f"chromium is not on PATH ({where}: apt-get install -y chromium)", pytrace=False)
    return path


def run_chromium(url: str, tmp: Path, *args: str, timeout: float = 120) -> str:
    profile = tmp / f"chromium-profile-{time.monotonic_ns()}"
    out = subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, url],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 10) -> tuple[int, bytes, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read(), {k.lower(): v for k, v in r.headers.items()}
    except urllib.error.HTTPError as e:
        return e.code, e.read(), {k.lower(): v for k, v in e.headers.items()}


@pytest.fixture(scope="module")
def inventory_run(sandbox: Any, tmp_path_factory: Any) -> Iterator[dict[str, Any]]:
    """A sandbox fleet, ``airflow db migrate``, and one fleet_inventory run (dag.test) writing to a temp dir."""
    from sandbox.airflow_env import aws_connection_uri

    report_dir = tmp_path_factory.mktemp("reports")
    sandbox.reset(config=True)
    with pytest.MonkeyPatch.context() as mp:
        for k, v in sandbox.env().items():
            mp.setenv(k, v)
        mp.setenv("AIRFLOW_CONN_AWS_DEFAULT", aws_connection_uri(sandbox.endpoint_url))
        mp.setenv("PHOENIX_REPORT_DIR", str(report_dir))
        mp.setenv("NO_PROXY", "127.0.0.1,localhost")
        mp.delenv("PHOENIX_INVENTORY_SNS_TOPIC_ARN", raising=False)
        # the DAG run measures ages against the clock: the fleet is aged relative to now, not to F.NOW
        fleet = F.build_fleet(sandbox, now=datetime.datetime.now(datetime.UTC))
        sandbox.client("s3").create_bucket(Bucket="phoenix-fleet-artifacts")

        migrate = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True, timeout=300)
        assert migrate.returncode == 0, migrate.stderr[-3000:]

        from airflow.dag_processing.dagbag import DagBag

        sys.path.insert(0, str(REPO / "dags"))
        try:
            dag = DagBag(dag_folder=str(REPO / "dags" / "fleet_inventory.py")).dags["fleet_inventory"]
        finally:
            sys.path.remove(str(REPO / "dags"))
        run = dag.test()
        states = {(ti.task_id, ti.map_index): str(ti.state) for ti in run.get_task_instances()}
        assert str(run.state) == "success", states

        from airflow.models.asset import AssetEvent, AssetModel
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            event = session.scalars(
                select(AssetEvent)
                .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                .where(AssetModel.uri == "x-phoenix://inventory/fleet", AssetEvent.source_run_id == run.run_id)
            ).one()
            extra = dict(event.extra)
        s3_keys = {
            o["Key"] for o in sandbox.client("s3").list_objects_v2(Bucket="phoenix-fleet-artifacts", Prefix="inventory/")["Contents"]
        }
        yield {"fleet": fleet, "report_dir": report_dir, "states": states, "asset_extra": extra, "s3_keys": s3_keys}


def test_the_dag_run_wrote_everything(inventory_run: dict[str, Any]) -> None:
    states = inventory_run["states"]
    assert states[("collect", 0)] == states[("collect", 1)] == "success"  # eu-west-1, us-east-1
    latest = inventory_run["report_dir"] / "inventory" / "latest"
    report = json.loads((latest / "report.json").read_text())
    assert report["regions"] == ["eu-west-1", "us-east-1"] and report["totals"]["stale"] == 1
    assert {f"inventory/latest/report.{x}" for x in ("json", "csv", "html")} <= inventory_run["s3_keys"]
    extra = inventory_run["asset_extra"]
    assert extra["stale"] == 1 and extra["instances"] == 8 and extra["path"].endswith("report.json")


def test_ami_retention_dag_dry_run_changes_nothing(inventory_run: dict[str, Any], sandbox: Any) -> None:
    """ami_retention end to end (dag.test, mapped over both roles), as a dry run against the same fleet."""
    from airflow.dag_processing.dagbag import DagBag

    ec2 = sandbox.client("ec2")
    before = sorted(i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"])
    sys.path.insert(0, str(REPO / "dags"))
    try:
        dag = DagBag(dag_folder=str(REPO / "dags" / "ami_retention.py")).dags["ami_retention"]
    finally:
        sys.path.remove(str(REPO / "dags"))
    run = dag.test(run_conf={"dry_run": True, "keep_versions": 1})
    states = {(ti.task_id, ti.map_index): str(ti.state) for ti in run.get_task_instances()}
    assert str(run.state) == "success", states
    assert states[("retention", 0)] == states[("retention", 1)] == "success"  # web, worker
    assert sorted(i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"]) == before
    tags = [t for i in ec2.describe_images(Owners=["self"])["Images"] for t in i.get("Tags", [])]
    assert not [t for t in tags if t["Key"] == "phoenix:deprecated-at"]


@pytest.fixture
def served_app(inventory_run: dict[str, Any]) -> Iterator[str]:
    """The plugin's FastAPI app (without Airflow's auth) under uvicorn on a free 127.0.0.1 port, mounted at /phoenix
    as the plugin mounts it."""
    import uvicorn
    from fastapi import FastAPI
    from phoenix_fleet.ui.inventory_app import create_app

    root = FastAPI()
    root.mount("/phoenix", create_app(inventory_run["report_dir"], auth=False))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(root, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/phoenix"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def _assert_page(dom: str, fleet: Any) -> None:
    assert "<h1>Fleet inventory</h1>" in dom
    stale_section = dom.split('id="stale-list"')[1].split("</section>")[0]
    assert f'data-instance-id="{fleet.stale_instance}"' in stale_section
    assert "Past max age (1)" in stale_section
    chart = dom.split('id="version-chart"')[1].split("</section>")[0]
    for version in ("2026.11.08-1", "2026.11.15-1"):
        assert f'data-version="{version}"' in chart, version
    assert 'data-group="web-b"' in chart and 'data-group="worker-a"' in chart
    assert 'id="max-age-line" data-days="14"' in dom
    assert fleet.amazon_ami in dom.split('id="not-ours"')[1]


def test_inventory_page_in_chromium(served_app: str, inventory_run: dict[str, Any], tmp_path: Path) -> None:
    status, body, headers = get(f"{served_app}/inventory")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in headers["content-security-policy"]
    assert get(f"{served_app}/inventory/report.json")[0] == 200
    assert get(f"{served_app}/inventory/report.exe")[0] == 404
    assert get(f"{served_app}/inventory/..%2F..%2Fetc/report.html")[0] == 404
    history = json.loads(get(f"{served_app}/inventory/history")[1])
    assert len(history["days"]) == 1

    dom = run_chromium(f"{served_app}/inventory", tmp_path, "--dump-dom")
    _assert_page(dom, inventory_run["fleet"])
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "inventory-page.png"
    shot.unlink(missing_ok=True)
    run_chromium(f"{served_app}/", tmp_path, f"--screenshot={shot}", "--window-size=1280,2000")
    assert shot.is_file() and shot.stat().st_size > 20_000


def test_no_report_yet_says_how_to_make_one(tmp_path: Path) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from phoenix_fleet.ui.inventory_app import create_app

    root = FastAPI()
    root.mount("/phoenix", create_app(tmp_path, auth=False))
    client = TestClient(root)
    r = client.get("/phoenix/inventory")
    assert r.status_code == 404 and "fleet_inventory" in r.text and 'id="no-report"' in r.text
    assert client.get("/phoenix/healthz").json()["latest"] is False
    r = client.get("/phoenix/", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == "/phoenix/inventory"


def test_the_page_requires_an_airflow_user(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient
    from phoenix_fleet.ui.inventory_app import create_app

    r = TestClient(create_app(tmp_path)).get("/inventory")
    assert r.status_code == 401


def test_inventory_page_through_airflow_api_server(inventory_run: dict[str, Any], sandbox: Any, tmp_path: Path) -> None:
    """A real ``airflow api-server`` (simple auth manager, all admins) loads the plugin (entry point): the app
    answers at /phoenix/inventory, the plugins API lists the external view, and the UI shows the page in its nav.
    The API server has no report directory: the page is the report the DAG run wrote to S3, read through the AWS
    connection."""
    from sandbox.airflow_env import airflow_env

    port = free_port()
    env = airflow_env(sandbox.endpoint_url, home=Path(os.environ["AIRFLOW_HOME"]), api_port=port)
    env.pop("PHOENIX_REPORT_DIR", None)  # nothing local: s3://phoenix-fleet-artifacts/inventory/ is the truth
    env["NO_PROXY"] = "127.0.0.1,localhost"
    log = (tmp_path / "api-server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "airflow", "api-server", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (tmp_path / "api-server.log").read_text()[-3000:]
            try:
                if get(f"{base}/api/v2/version", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "api-server did not answer in 180 s"
            time.sleep(0.5)

        plugins = json.loads(get(f"{base}/api/v2/plugins")[1])["plugins"]
        ours = next(p for p in plugins if p["name"] == "phoenix_fleet")
        assert ours["fastapi_apps"][0]["url_prefix"] == "/phoenix"
        assert ours["external_views"][0]["href"] == "/phoenix/inventory"
        assert ours["external_views"][0]["url_route"] == "fleet-inventory"

        health = json.loads(get(f"{base}/phoenix/healthz")[1])
        assert health["source"] == "s3://phoenix-fleet-artifacts/inventory/" and health["latest"] is True, health
        status, _, headers = get(f"{base}/phoenix/inventory")
        assert status == 200 and headers["content-type"].startswith("text/html")
        dom = run_chromium(f"{base}/phoenix/inventory", tmp_path, "--dump-dom")
        _assert_page(dom, inventory_run["fleet"])

        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "inventory-in-airflow-ui.png"
        shot.unlink(missing_ok=True)
        run_chromium(
            f"{base}/plugin/fleet-inventory",
            tmp_path,
            f"--screenshot={shot}",
            "--window-size=1280,1000",
            "--virtual-time-budget=15000",
        )
        assert shot.is_file() and shot.stat().st_size > 20_000
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(10)
        log.close()
