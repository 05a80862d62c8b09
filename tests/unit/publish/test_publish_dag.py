"""The publish operators wired as a DAG author wires them, run by Airflow itself (dag.test) against the sandbox.

Checks what the direct-call tests cannot: ``release.output["ami_id"]`` (per-key XComs), the copy mapped over regions
(the home region included), the trigger run by Airflow, and the asset event *stored in the metadata DB* with its
extra (version, AMIs per region, release notes) -- emitted from a classic operator through ``outlet_events``.
"""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest
from phoenix_fleet.operators.publish_operators import (
    CopyImageToRegionOperator,
    PublishReleaseOperator,
    ReleaseImageOperator,
    image_asset,
)
from publish_helpers import HOME, OTHER, bake, fleet_config, make_bucket, today, upload_packages

DAG_FILE = """
import datetime as dt

from airflow.sdk import DAG
from phoenix_fleet.operators.publish_operators import (
    CopyImageToRegionOperator,
    PublishReleaseOperator,
    ReleaseImageOperator,
)

with DAG("{dag_id}", schedule=None, start_date=dt.datetime(2026, 1, 1), catchup=False, params={{"version": ""}}) as dag:
    release = ReleaseImageOperator(
        task_id="release", role="{role}", ami_id="{ami}", version="{{{{ params.version }}}}", config_path="{cfg}"
    )
    copies = CopyImageToRegionOperator.partial(
        task_id="copy_to_region",
        ami_id=release.output["ami_id"],
        source_region=release.output["region"],
        poll_interval=0.05,
        timeout=120,
    ).expand(dest_region=["{home}", "{other}"])
    publish = PublishReleaseOperator(
        task_id="publish", role="{role}", release=release.output, copies=copies.output, config_path="{cfg}"
    )
    release >> copies >> publish
"""


def _dag_in_own_bundle(tmp_path, monkeypatch, ami: str, cfg: str, role: str, dag_id: str):
    """dag.test() serializes a DAG by finding it in a DAG bundle: give this test's DAG file a bundle of its own."""
    import importlib.util
    import json

    folder = tmp_path / "dags"
    folder.mkdir()
    path = folder / f"{dag_id}.py"
    path.write_text(DAG_FILE.format(dag_id=dag_id, ami=ami, cfg=cfg, role=role, home=HOME, other=OTHER))
    monkeypatch.setenv(
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST",
        json.dumps(
            [
                {
                    "name": "phoenix-publish-test",
                    "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                    "kwargs": {"path": str(folder), "refresh_interval": 0},
                }
            ]
        ),
    )
    spec = importlib.util.spec_from_file_location(dag_id, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


@pytest.fixture
def test_dag_id(migrated_db):
    """A fresh DAG id (and role, hence asset) per run; the DAG is deleted from the metadata DB afterwards, so that
    no stale DAG (whose bundle is gone) keeps an asset active in a developer's test DB."""
    dag_id = f"phoenix_publish_test_{uuid.uuid4().hex[:8]}"
    yield dag_id
    from airflow.api.common.delete_dag import delete_dag
    from airflow.exceptions import DagNotFound

    try:
        delete_dag(dag_id)
    except DagNotFound:
        pass


@pytest.fixture(scope="module")
def migrated_db() -> None:
    proc = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]


def test_publish_dag_emits_the_image_asset_event(test_dag_id, sandbox_clean, tmp_path, monkeypatch):
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    sb = sandbox_clean
    role = f"web-{test_dag_id[-8:]}"  # an asset of its own: phoenix_image_web-<hex>
    cfg = fleet_config(tmp_path, role=role)
    s3 = make_bucket(sb)
    v1, v2 = today(1), today(2)
    upload_packages(s3, role, v1, "openssl\t3.0.11-1\ntelnet\t0.17-2\n")
    upload_packages(s3, role, v2, "openssl\t3.0.15-1\n")
    # the previous release, published by a direct run (see test_publish.py)
    from publish_helpers import outlet_context

    from tests.helpers.airflow_run import run_task

    ami1 = bake(sb, role=role, version=v1)
    rel1 = run_task(ReleaseImageOperator(task_id="r", role=role, ami_id=ami1, config_path=cfg), outlet_context()).result
    copies1 = [
        run_task(CopyImageToRegionOperator(task_id="c", ami_id=ami1, source_region=HOME, dest_region=r), outlet_context()).result
        for r in (HOME, OTHER)
    ]
    run_task(PublishReleaseOperator(task_id="p", role=role, release=rel1, copies=copies1, config_path=cfg), outlet_context())

    ami2 = bake(sb, role=role, version=v2)
    dag = _dag_in_own_bundle(tmp_path, monkeypatch, ami2, cfg, role, test_dag_id)
    dr = dag.test()
    states = {ti.task_id + (f"[{ti.map_index}]" if ti.map_index >= 0 else ""): ti.state for ti in dr.get_task_instances()}
    assert dr.state == "success", states

    asset = image_asset(role)
    with create_session() as session:
        events = session.scalars(
            select(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.uri == asset.uri, AssetEvent.source_dag_id == dag.dag_id)
        ).all()
        assert len(events) == 1
        extra = dict(events[0].extra)
        model = session.scalars(select(AssetModel).where(AssetModel.uri == asset.uri)).one()
        assert model.name == f"phoenix_image_{role}"
    assert extra["version"] == v2 and extra["previous_version"] == v1 and extra["ami_id"] == ami2
    assert set(extra["amis"]) == {HOME, OTHER} and extra["amis"][HOME] == ami2
    notes = extra["release_notes"]
    assert notes["counts"] == {"upgraded": 1, "downgraded": 0, "added": 0, "removed": 1}
    assert notes["upgraded"] == [{"name": "openssl", "old": "3.0.11-1", "new": "3.0.15-1"}]
    assert notes["removed"] == [{"name": "telnet", "version": "0.17-2"}]
    assert extra["release_notes_uri"].endswith(f"images/{role}/{v2}/release-notes.md")
