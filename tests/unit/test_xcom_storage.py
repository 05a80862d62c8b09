"""phoenix_fleet.xcom_storage: what a deployment sets, and what is wrong with a configuration."""

from __future__ import annotations

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
