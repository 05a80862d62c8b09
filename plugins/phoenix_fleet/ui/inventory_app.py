"""The fleet inventory page: a FastAPI app that serves the latest report written by fleet_inventory.

Mounted by the ``phoenix_fleet`` Airflow plugin at ``/phoenix`` (``fastapi_apps``) and linked from the UI's
navigation (``external_views``: Browse → Fleet inventory, shown in an iframe). Routes, relative to the mount:

======================================  ==================================================================
``GET /``                               redirect to ``inventory``
``GET /inventory``                      the latest ``report.html`` (or a page saying there is none yet, and why)
``GET /inventory/report.json|.csv``     the latest JSON / CSV
``GET /inventory/{YYYY-MM-DD}/{file}``  an earlier day's report (``report.html``, ``.json``, ``.csv``)
``GET /inventory/history``              the days on record (JSON)
``GET /healthz``                        ``{"status": "ok", "source": ..., "latest": true|false, "reason": ...}``
======================================  ==================================================================

Where reports are read (at every request):

* a local report directory, when one is configured (``create_app(report_dir)``, else ``$PHOENIX_REPORT_DIR``);
* otherwise **S3, the report's home**: ``s3://<artifacts_bucket>/inventory/`` of the fleet config, through the
  AWS connection ``artifacts_aws_conn_id`` (default: the roles' environments' connection). The API server needs
  nothing on its disk but the fleet config.

Nothing is ever derived from where the package is installed. A missing bucket, object or connection, an invalid
fleet config or an unreachable S3 is "no report yet" with the reason (404), never a 500.

Inside Airflow (``auth=True``) every route requires an Airflow user allowed to see the website (the UI's
session cookie or a bearer token, checked by Airflow's auth manager). Responses carry a Content-Security-Policy
that forbids any external resource, so the page cannot load anything from outside even if a report tried.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from phoenix_fleet.inventory.report import REPORT_FILES, default_report_dir

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TYPES = {
    "report.html": "text/html; charset=utf-8",
    "report.json": "application/json",
    "report.csv": "text/csv; charset=utf-8",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}
#: S3 answers that mean "there is no report (there)", not "S3 is broken"
_ABSENT = {"NoSuchKey", "NoSuchBucket", "404", "NotFound", "AccessDenied", "403", "Forbidden", "AllAccessDisabled"}

EMPTY_PAGE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Fleet inventory</title>
<style>body{{font:14px system-ui,sans-serif;margin:24px;color:#1f2328}} code{{background:#f6f8fa;padding:1px 4px}}</style>
</head><body><h1>Fleet inventory</h1><p id="no-report">No report yet in <code>{where}</code>.</p>
<p id="reason">{reason}</p>
<p>Trigger the <code>fleet_inventory</code> DAG (it runs nightly at 02:00 UTC) and reload this page.</p></body></html>"""


class NoReport(LookupError):
    """No report where we looked; ``reason`` says why (shown on the page)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class LocalReports:
    """Reports under ``<base>/inventory/<day>/`` on this machine."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.where = str(base / "inventory")

    def read(self, day: str, name: str) -> bytes:
        path = self.base / "inventory" / day / name
        try:
            return path.read_bytes()
        except OSError as exc:
            raise NoReport(f"{path}: {exc.strerror or exc}") from None

    def days(self) -> list[str]:
        root = self.base / "inventory"
        return sorted((p.name for p in root.iterdir() if p.is_dir() and _DATE_RE.match(p.name)), reverse=True) if root.is_dir() else []


class S3Reports:
    """Reports under ``s3://<bucket>/inventory/<day>/``, read through an Airflow AWS connection."""

    def __init__(self, bucket: str, conn_id: str, conn_field: str) -> None:
        self.bucket = bucket
        self.conn_id = conn_id
        self.conn_field = conn_field
        self.where = f"s3://{bucket}/inventory/"

    def _client(self) -> Any:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
        from botocore.config import Config

        from phoenix_fleet.aws_conn import require_aws_connection

        require_aws_connection(self.conn_id, self.conn_field)
        config = Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5, read_timeout=15)
        return AwsBaseHook(aws_conn_id=self.conn_id, client_type="s3", config=config).conn

    def _call(self, what: str, call: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        from phoenix_fleet.aws_conn import UnknownAwsConnection

        try:
            return call(self._client())
        except UnknownAwsConnection as exc:
            raise NoReport(str(exc)) from None
        except ClientError as exc:
            err = exc.response.get("Error", {})
            code = str(err.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode"))
            detail = err.get("Message") or code
            if code in _ABSENT:
                raise NoReport(f"{what}: {code} ({detail}), through connection {self.conn_id!r}") from None
            raise NoReport(f"{what}: S3 answered {code} ({detail}), through connection {self.conn_id!r}") from None
        except BotoCoreError as exc:  # no credentials, endpoint unreachable, ...
            raise NoReport(f"{what}: {type(exc).__name__}: {exc} (connection {self.conn_id!r})") from None

    def read(self, day: str, name: str) -> bytes:
        key = f"inventory/{day}/{name}"
        body = self._call(f"s3://{self.bucket}/{key}", lambda s3: s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())
        return bytes(body)

    def days(self) -> list[str]:
        def listing(s3: Any) -> list[str]:
            found: set[str] = set()
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix="inventory/", Delimiter="/"):
                for cp in page.get("CommonPrefixes", []):
                    day = cp["Prefix"][len("inventory/") :].strip("/")
                    if _DATE_RE.match(day):
                        found.add(day)
            return sorted(found, reverse=True)

        result: list[str] = self._call(self.where, listing)
        return result


class Unconfigured:
    """No place to read from (an invalid fleet config): every read is "no report yet", with the reason."""

    def __init__(self, reason: str) -> None:
        self.where = "the fleet config"
        self.reason = reason

    def read(self, day: str, name: str) -> bytes:
        raise NoReport(self.reason)

    def days(self) -> list[str]:
        raise NoReport(self.reason)


Reports = LocalReports | S3Reports | Unconfigured


def report_source(report_dir: str | Path | None = None) -> Reports:
    """Where the page reads: ``report_dir``, else ``$PHOENIX_REPORT_DIR``, else S3 per the fleet config."""
    if report_dir is not None:
        return LocalReports(Path(report_dir))
    local = default_report_dir()
    if local is not None:
        return LocalReports(local)
    try:
        from phoenix_fleet.config import cached_fleet_config

        fleet = cached_fleet_config()
    except Exception as exc:  # an invalid or missing config: say so on the page
        return Unconfigured(f"the fleet config cannot be read, so the report's bucket is unknown: {exc}")
    conn = fleet.artifacts_aws_conn()
    return S3Reports(fleet.artifacts_bucket, conn.conn_id, conn.field)


async def _airflow_user(request: Request) -> None:
    """Require an Airflow user who may see the website (the UI's cookie or a bearer token)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.security import HTTPAuthorizationCredentials

    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    creds = HTTPAuthorizationCredentials(scheme=scheme, credentials=token) if scheme.lower() == "bearer" and token else None
    user = await get_user(request, None, creds)
    if not get_auth_manager().is_authorized_view(access_view=AccessView.WEBSITE, user=user):
        raise HTTPException(status_code=403, detail="Forbidden")


def _check(day: str, name: str) -> None:
    if name not in REPORT_FILES:
        raise HTTPException(status_code=404, detail=f"no such report file {name!r}; use one of {list(REPORT_FILES)}")
    if day != "latest" and not _DATE_RE.match(day):
        raise HTTPException(status_code=404, detail="the day must be YYYY-MM-DD or latest")


def create_app(report_dir: str | Path | None = None, *, auth: bool = True) -> FastAPI:
    """The app. ``report_dir`` fixed, or None to decide at every request (``$PHOENIX_REPORT_DIR``, else S3 per the
    fleet config: :func:`report_source`); ``auth=False`` only for serving it outside Airflow (tests, a laptop)."""
    deps = [Depends(_airflow_user)] if auth else []
    app = FastAPI(
        title="phoenix-fleet inventory",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        dependencies=deps,
    )

    def source() -> Reports:
        return report_source(report_dir)

    def serve(day: str, name: str) -> Response:
        _check(day, name)
        try:
            data = source().read(day, name)
        except NoReport as exc:
            raise HTTPException(status_code=404, detail=f"{name} not found: {exc.reason}") from None
        return Response(data, media_type=_TYPES[name], headers=SECURITY_HEADERS)

    @app.get("/", include_in_schema=False)
    def root(request: Request) -> RedirectResponse:
        # a path, not an absolute URL: right behind any proxy; root_path is the mount point (/phoenix)
        return RedirectResponse(f"{request.scope.get('root_path', '')}/inventory", status_code=307)

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        src = source()
        try:
            src.read("latest", "report.html")
            return {"status": "ok", "source": src.where, "latest": True}
        except NoReport as exc:
            return {"status": "ok", "source": src.where, "latest": False, "reason": exc.reason}

    @app.get("/inventory", name="inventory_page", response_class=HTMLResponse)
    def inventory_page() -> Response:
        src = source()
        try:
            data = src.read("latest", "report.html")
        except NoReport as exc:
            page = EMPTY_PAGE.format(where=html.escape(src.where), reason=html.escape(exc.reason))
            return HTMLResponse(page, status_code=404, headers=SECURITY_HEADERS)
        return Response(data, media_type=_TYPES["report.html"], headers=SECURITY_HEADERS)

    @app.get("/inventory/history")
    def history() -> JSONResponse:
        try:
            return JSONResponse({"days": source().days()}, headers=SECURITY_HEADERS)
        except NoReport as exc:
            return JSONResponse({"days": [], "reason": exc.reason}, headers=SECURITY_HEADERS)

    @app.get("/inventory/{name}")
    def latest_file(name: str) -> Response:
        return serve("latest", name)

    @app.get("/inventory/{day}/{name}")
    def day_file(day: str, name: str) -> Response:
        return serve(day, name)

    return app


def summary_of_latest(report_dir: str | Path | None = None) -> dict[str, Any] | None:
    """The latest report's totals (for other pages or checks), from where the page reads; None if there is none."""
    try:
        data = json.loads(report_source(report_dir).read("latest", "report.json"))
    except NoReport:
        return None
    return {"generated_at": data.get("generated_at"), **data.get("totals", {})}


app = create_app()
