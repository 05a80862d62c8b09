"""The fleet inventory page: a FastAPI app that serves the latest report written by fleet_inventory.

Mounted by the ``phoenix_fleet`` Airflow plugin at ``/phoenix`` (``fastapi_apps``) and linked from the UI's
navigation (``external_views``: Browse → Fleet inventory, shown in an iframe). Routes, relative to the mount:

======================================  ==================================================================
``GET /``                               redirect to ``inventory``
``GET /inventory``                      the latest ``report.html`` (or a page saying how to make one)
``GET /inventory/report.json|.csv``     the latest JSON / CSV
``GET /inventory/{YYYY-MM-DD}/{file}``  an earlier day's report (``report.html``, ``.json``, ``.csv``)
``GET /inventory/history``              the days on record (JSON)
``GET /healthz``                        ``{"status": "ok", "report_dir": ..., "latest": true|false}``
======================================  ==================================================================

Reports are read from the local report directory (``$PHOENIX_REPORT_DIR``, else ``<repo>/.sandbox/reports``:
the directory the report task writes to; share it, or set the variable, when the API server runs elsewhere).

Inside Airflow (``auth=True``) every route requires an Airflow user allowed to see the website (the UI's
session cookie or a bearer token, checked by Airflow's auth manager). Responses carry a Content-Security-Policy
that forbids any external resource, so the page cannot load anything from outside even if a report tried.
"""

from __future__ import annotations

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

EMPTY_PAGE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Fleet inventory</title>
<style>body{{font:14px system-ui,sans-serif;margin:24px;color:#1f2328}} code{{background:#f6f8fa;padding:1px 4px}}</style>
</head><body><h1>Fleet inventory</h1><p id="no-report">No report yet in <code>{where}</code>.</p>
<p>Trigger the <code>fleet_inventory</code> DAG (it runs nightly at 02:00 UTC) and reload this page.</p></body></html>"""


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


def _latest_dir(base: Path) -> Path:
    return base / "inventory" / "latest"


def _file(base: Path, day: str, name: str) -> Path:
    if name not in REPORT_FILES:
        raise HTTPException(status_code=404, detail=f"no such report file {name!r}; use one of {list(REPORT_FILES)}")
    if day != "latest" and not _DATE_RE.match(day):
        raise HTTPException(status_code=404, detail="the day must be YYYY-MM-DD or latest")
    return base / "inventory" / day / name


def create_app(report_dir: str | Path | None = None, *, auth: bool = True) -> FastAPI:
    """The app. ``report_dir`` fixed, or None to read ``$PHOENIX_REPORT_DIR`` at every request;
    ``auth=False`` only for serving it outside Airflow (tests, a laptop)."""
    deps = [Depends(_airflow_user)] if auth else []
    app = FastAPI(
        title="phoenix-fleet inventory",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        dependencies=deps,
    )

    def base() -> Path:
        return Path(report_dir) if report_dir is not None else default_report_dir()

    def serve(path: Path) -> Response:
        if not path.is_file():
            raise HTTPException(status_code=404, detail=f"{path.name} not found")
        return Response(path.read_bytes(), media_type=_TYPES[path.name], headers=SECURITY_HEADERS)

    @app.get("/", include_in_schema=False)
    def root(request: Request) -> RedirectResponse:
        # a path, not an absolute URL: right behind any proxy; root_path is the mount point (/phoenix)
        return RedirectResponse(f"{request.scope.get('root_path', '')}/inventory", status_code=307)

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        b = base()
        return {"status": "ok", "report_dir": str(b), "latest": (_latest_dir(b) / "report.html").is_file()}

    @app.get("/inventory", name="inventory_page", response_class=HTMLResponse)
    def inventory_page() -> Response:
        path = _latest_dir(base()) / "report.html"
        if not path.is_file():
            page = EMPTY_PAGE.format(where=str(_latest_dir(base())).replace("<", "&lt;"))
            return HTMLResponse(page, status_code=404, headers=SECURITY_HEADERS)
        return serve(path)

    @app.get("/inventory/history")
    def history() -> JSONResponse:
        root_dir = base() / "inventory"
        days = sorted((p.name for p in root_dir.iterdir() if p.is_dir() and _DATE_RE.match(p.name)), reverse=True) if root_dir.is_dir() else []
        return JSONResponse({"days": days}, headers=SECURITY_HEADERS)

    @app.get("/inventory/{name}")
    def latest_file(name: str) -> Response:
        return serve(_file(base(), "latest", name))

    @app.get("/inventory/{day}/{name}")
    def day_file(day: str, name: str) -> Response:
        return serve(_file(base(), day, name))

    return app


def summary_of_latest(report_dir: str | Path | None = None) -> dict[str, Any] | None:
    """The latest report's totals (for other pages or checks); None if there is none."""
    path = _latest_dir(Path(report_dir) if report_dir is not None else default_report_dir()) / "report.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return {"generated_at": data.get("generated_at"), **data.get("totals", {})}


app = create_app()
