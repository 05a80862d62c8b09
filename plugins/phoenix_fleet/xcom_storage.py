"""Where XCom values live: the metadata DB for small ones, object storage (S3) past a size threshold.

Payloads that grow with the fleet (the inventory's region snapshots: ~370 bytes an instance; the max-age
renewals; a rollout's list of ASGs) must not land in the metadata DB. Airflow's common-io provider ships
``XComObjectStorageBackend``: a value whose JSON reaches ``xcom_objectstorage_threshold`` bytes is written to
``xcom_objectstorage_path`` (here ``s3://<conn>@<artifacts_bucket>/xcom/<dag>/<run>/<task>/<uuid>.gz``) and the
DB keeps that path (~120 bytes); smaller values stay in the DB. So with the threshold below :data:`XCOM_LIMIT_BYTES`
no XCom row in any DAG is larger than that, at any fleet size. See docs/scale.md for what a deployment sets.

:func:`backend_env` is the configuration as environment variables (the sandbox's Airflow, docker-compose and
the tests use it); :func:`current` reads what this process is configured with, :func:`problem` says what is
wrong with it. Standard library only at module level: operator modules import this at parse time.
"""

from __future__ import annotations

from dataclasses import dataclass

BACKEND = "airflow.providers.common.io.xcom.backend.XComObjectStorageBackend"
XCOM_LIMIT_BYTES = 64 * 1024  # no XCom row in the metadata DB above this (issue 16)
THRESHOLD_BYTES = 16 * 1024  # values of this many bytes of JSON or more go to object storage
COMPRESSION = "gzip"
PREFIX = "xcom"


def backend_env(bucket: str, conn_id: str = "aws_default") -> dict[str, str]:
    """The settings, as ``AIRFLOW__...`` environment variables, for every Airflow component (workers write the
    values, the API server and scheduler read and purge them, the triggerer too)."""
    return {
        "AIRFLOW__CORE__XCOM_BACKEND": BACKEND,
        "AIRFLOW__COMMON_IO__XCOM_OBJECTSTORAGE_PATH": f"s3://{conn_id}@{bucket}/{PREFIX}",
        "AIRFLOW__COMMON_IO__XCOM_OBJECTSTORAGE_THRESHOLD": str(THRESHOLD_BYTES),
        "AIRFLOW__COMMON_IO__XCOM_OBJECTSTORAGE_COMPRESSION": COMPRESSION,
    }


@dataclass(frozen=True)
class XComStorage:
    backend: str
    path: str
    threshold: int  # -1: never object storage

    @property
    def object_storage(self) -> bool:
        return self.backend.rsplit(".", 1)[-1] == BACKEND.rsplit(".", 1)[-1] and bool(self.path) and self.threshold >= 0


def current() -> XComStorage:
    """What this process's Airflow configuration says (airflow.cfg or ``AIRFLOW__*`` variables)."""
    from airflow.configuration import conf

    backend = conf.get("core", "xcom_backend", fallback="") or ""
    path = conf.get("common.io", "xcom_objectstorage_path", fallback="") or ""
    try:
        threshold = conf.getint("common.io", "xcom_objectstorage_threshold", fallback=-1)
    except Exception:  # a value that is not a number: Airflow's backend fails on it too
        threshold = -1
    return XComStorage(backend=backend, path=path, threshold=threshold)


def problem(storage: XComStorage | None = None) -> str | None:
    """Why XCom values may exceed :data:`XCOM_LIMIT_BYTES` in the metadata DB under this configuration, or None."""
    s = storage or current()
    if not s.object_storage:
        return (
            f"XCom values are stored in the metadata DB ([core] xcom_backend = {s.backend or 'default'}, "
            f"[common.io] xcom_objectstorage_path = {s.path or 'unset'}, threshold {s.threshold}): payloads that "
            "grow with the fleet (region snapshots: ~370 bytes an instance) land there. Fix: set "
            + ", ".join(f"{k}={v}" for k, v in backend_env("<artifacts_bucket>").items())
            + " (docs/scale.md)"
        )
    if s.threshold > XCOM_LIMIT_BYTES:
        return (
            f"[common.io] xcom_objectstorage_threshold is {s.threshold} bytes: values up to that size stay in the "
            f"metadata DB. Fix: {THRESHOLD_BYTES} (at most {XCOM_LIMIT_BYTES})"
        )
    return None

