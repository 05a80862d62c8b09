"""fleet_inventory's XComs through the XCom backend a deployment configures (Airflow's object-storage backend on
the artifacts bucket, phoenix_fleet.xcom_storage.backend_env): no row the metadata DB would keep is over 64 kB.

The collect and report tasks run against a fleet grown into the sandbox (sandbox/scale_fleet.py), and each
task's return value goes through the backend's ``serialize_value``, the call the task SDK makes in ``XCom.set``
(the class itself: Airflow resolves ``[core] xcom_backend`` once per process, so a test session cannot switch
to it). 500 instances make snapshots of ~95 kB each (250 a region), past the limit: past the threshold a row holds a
path whose size does not depend on the fleet's; bench/inventory checks the same at 10,000 and 30,000.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.execution_time.context import OutletEventAccessors
from phoenix_fleet.operators.inventory_operators import BuildInventoryReportOperator, CollectInventoryOperator
from phoenix_fleet.xcom_storage import THRESHOLD_BYTES, XCOM_LIMIT_BYTES, backend_env

from sandbox.scale_fleet import grow_fleet
from tests.helpers.airflow_run import make_context, run_task

BUCKET = "phoenix-fleet-artifacts"
REGIONS = ("us-east-1", "eu-west-1")


@pytest.fixture
def object_storage_xcom(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from airflow.providers.common.io.xcom import backend

    for name, value in backend_env(BUCKET).items():
        monkeypatch.setenv(name, value)
    cached = (backend._get_base_path, backend._get_threshold, backend._get_compression)
    for f in cached:
        f.cache_clear()
    yield backend.XComObjectStorageBackend
    for f in cached:
        f.cache_clear()


def test_no_xcom_row_of_a_500_instance_inventory_is_over_64_kb(sandbox_clean: Any, object_storage_xcom: Any, tmp_path: Any) -> None:
    backend = object_storage_xcom
    sandbox_clean.update_config(instance_boot=None, instance_status_checks=None)
    made = grow_fleet(lambda service, region: sandbox_clean.client(service, region_name=region), list(REGIONS), asgs=25, per_asg=20)
    assert made["instances_added"] == 500, made
    s3 = sandbox_clean.client("s3")
    s3.create_bucket(Bucket=BUCKET)

    run_id = f"scheduled__{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}"
    values = [
        ("collect", i, run_task(CollectInventoryOperator(task_id="collect", region_name=r), make_context()).result)
        for i, r in enumerate(REGIONS)
    ]
    report = BuildInventoryReportOperator(task_id="report", snapshots=[v for _, _, v in values], report_dir=str(tmp_path))
    values.append(("report", -1, run_task(report, make_context(outlet_events=OutletEventAccessors())).result))

    rows = {}
    for task_id, map_index, value in values:
        stored = backend.serialize_value(value, key="return_value", dag_id="fleet_inventory", run_id=run_id, task_id=task_id, map_index=map_index)
        rows[(task_id, map_index)] = stored
        assert backend.deserialize_value(SimpleNamespace(value=stored)) == json.loads(json.dumps(value))  # read back whole

    sizes = {k: len(json.dumps(v)) for k, v in rows.items()}
    raw = {(t, m): len(json.dumps(v)) for t, m, v in values}
    assert max(sizes.values()) <= XCOM_LIMIT_BYTES, sizes
    for i in range(len(REGIONS)):
        assert raw[("collect", i)] > XCOM_LIMIT_BYTES  # the snapshots would have been rows of ~95 kB
        assert rows[("collect", i)].startswith(f"s3://aws_default@{BUCKET}/xcom/fleet_inventory/{run_id}/collect/")
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"xcom/fleet_inventory/{run_id}/")["Contents"]
    objects = {o["Key"]: s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in listed}
    assert all(k.endswith(".gz") for k in objects) and len(objects) == sum(
        1 for n in raw.values() if n >= THRESHOLD_BYTES
    )
    assert sum(len(gzip.decompress(b)) for b in objects.values()) >= raw[("collect", 0)] + raw[("collect", 1)]
