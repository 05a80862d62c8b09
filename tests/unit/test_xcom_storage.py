"""phoenix_fleet.xcom_storage: what a deployment sets, and what is wrong with a configuration."""

from __future__ import annotations

import json
from typing import Any

import pytest
from phoenix_fleet.xcom_storage import (
    BACKEND,
    THRESHOLD_BYTES,
    XCOM_LIMIT_BYTES,
    XComStorage,
    backend_env,
    current,
    problem,
)


def test_the_settings_name_the_backend_the_bucket_and_a_threshold_below_the_limit() -> None:
    env = backend_env("phoenix-fleet-artifacts")
    assert env["AIRFLOW__CORE__XCOM_BACKEND"] == BACKEND
    assert env["AIRFLOW__COMMON_IO__XCOM_OBJECTSTORAGE_PATH"] == "s3://aws_default@phoenix-fleet-artifacts/xcom"
    assert 0 < int(env["AIRFLOW__COMMON_IO__XCOM_OBJECTSTORAGE_THRESHOLD"]) == THRESHOLD_BYTES < XCOM_LIMIT_BYTES


def test_current_reads_the_environment_and_problem_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in backend_env("b"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AIRFLOW__CORE__XCOM_BACKEND", "airflow.sdk.bases.xcom.BaseXCom")
    why = problem(current())
    assert why and "stored in the metadata DB" in why and "Fix: set AIRFLOW__CORE__XCOM_BACKEND=" + BACKEND in why

    for name, value in backend_env("b").items():
        monkeypatch.setenv(name, value)
    assert current() == XComStorage(BACKEND, "s3://aws_default@b/xcom", THRESHOLD_BYTES)
    assert problem(current()) is None

    monkeypatch.setenv("AIRFLOW__COMMON_IO__XCOM_OBJECTSTORAGE_THRESHOLD", str(10 * 1024 * 1024))
    assert "Fix: 16384" in (problem(current()) or "")
    monkeypatch.setenv("AIRFLOW__COMMON_IO__XCOM_OBJECTSTORAGE_THRESHOLD", "-1")  # never object storage
    assert "stored in the metadata DB" in (problem(current()) or "")


BUCKET = "phoenix-fleet-artifacts"  # include/fleet.yaml's artifacts_bucket, named in include/iam/worker.json


def test_a_new_try_purges_the_last_tries_xcom_objects_as_the_worker(sandbox_clean: Any, monkeypatch: Any) -> None:
    """A task's new try (a retry, a cleared task) starts by deleting the XComs of the try before: the task runner gets
    their keys from the API server (``xcom_keys_to_clear``) and ``XCom.delete`` calls the backend's ``purge``, which
    for a value in object storage deletes ``s3://<artifacts_bucket>/xcom/...``. The worker's policy
    (include/iam/worker.json) allows exactly that, under ``xcom/`` only; without it the purge raises and the retry
    fails before it runs."""
    import boto3
    from airflow.providers.common.io.xcom import backend
    from airflow.sdk.execution_time.comms import XComResult
    from airflow.sdk.io import store

    from tests.helpers.iam_enforced import assert_no_denials, enforce_iam

    sandbox_clean.client("s3").create_bucket(Bucket=BUCKET)
    enforce_iam(sandbox_clean, monkeypatch)  # aws_default, which the XCom path names, signs as phoenix-worker
    for name, value in backend_env(BUCKET).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(store, "_STORE_CACHE", {})  # no S3 filesystem made with other credentials
    cached = (backend._get_base_path, backend._get_threshold, backend._get_compression)
    for f in cached:
        f.cache_clear()
    try:
        value = {"snapshot": "x" * THRESHOLD_BYTES}
        stored = backend.XComObjectStorageBackend.serialize_value(
            value, key="return_value", dag_id="fleet_inventory", run_id="scheduled__1", task_id="collect"
        )
        path = stored if isinstance(stored, str) else json.loads(stored)  # the DB row: the object's path
        assert path.startswith(f"s3://aws_default@{BUCKET}/xcom/fleet_inventory/scheduled__1/collect/"), path
        key = path.split(f"{BUCKET}/", 1)[1]
        s3 = sandbox_clean.client("s3")
        s3.head_object(Bucket=BUCKET, Key=key)

        backend.XComObjectStorageBackend.purge(XComResult(key="return_value", value=path))

        with pytest.raises(s3.exceptions.ClientError):
            s3.head_object(Bucket=BUCKET, Key=key)
        # the grant is for xcom/ only: the artifacts themselves (manifests, reports) stay undeletable by the worker
        s3.put_object(Bucket=BUCKET, Key="images/web/2026.12.07-1/manifest.json", Body=b"{}")
        worker = boto3.session.Session().client("s3", endpoint_url=sandbox_clean.endpoint_url, region_name="us-east-1")
        with pytest.raises(worker.exceptions.ClientError, match="AccessDenied"):
            worker.delete_object(Bucket=BUCKET, Key="images/web/2026.12.07-1/manifest.json")
        sandbox_clean.realism.iam_audit.clear()  # that refusal was the point
        assert_no_denials(sandbox_clean)
    finally:
        sandbox_clean.update_config(iam_access_control=False)
        for f in cached:
            f.cache_clear()
