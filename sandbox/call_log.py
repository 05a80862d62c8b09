"""The AWS calls the sandbox server answered, counted where AWS would count them: at the server.

Off until asked (``POST /phoenix-sandbox/calls`` ``{"enabled": true}``); then every AWS request the server
answers (faults and expired-credential refusals included; the control endpoints not) is kept as
``[t, region, service, action, status, client]``: ``t`` the wall-clock second it arrived (``time.time()``), region
and service from the SigV4 credential scope, the action from ``X-Amz-Target`` (JSON protocol) or the ``Action``
form field (query protocol), else (REST: S3) the HTTP method, ``status`` the HTTP status code of the answer, ``client`` ``async`` when the
User-Agent names aiobotocore (Airflow's triggers) else ``sync`` (boto3: tasks, the scheduler's processes, tools). ``GET /phoenix-sandbox/calls`` returns
them (``?since=<t>``: only later ones), ``DELETE`` forgets them and stops recording. Memory: ~100 bytes a call,
kept until forgotten.

:func:`call_rates` turns such a list into calls per second per region and API (peak over one-second windows and
mean over the span), what ``bench/fleet_rollout`` prints against the API budget.
"""

from __future__ import annotations

import io
import json
import math
import re
import threading
from collections.abc import Iterable, Sequence
from typing import Any

_CREDENTIAL_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/([^/,\s]+)/([^/,\s]+)/aws4_request")


def credential_scope(environ: dict[str, Any]) -> tuple[str | None, str | None]:
    """``(region, service)`` from a request's SigV4 credential scope (the Authorization header)."""
    scope = _CREDENTIAL_SCOPE.search(environ.get("HTTP_AUTHORIZATION") or "")
    return (scope.group(1), scope.group(2)) if scope else (None, None)


def request_identity(environ: dict[str, Any]) -> tuple[str | None, str | None, str | None, dict[str, Any]]:
    """``(region, service, action, params)`` of an AWS request as the SDKs send it: region and service from the
    SigV4 credential scope, the action from ``X-Amz-Target`` or the ``Action`` form field, the parameters from the
    JSON body or the form. The body is read once and put back for moto."""
    from urllib.parse import parse_qs

    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    region, service = credential_scope(environ)
    target = environ.get("HTTP_X_AMZ_TARGET") or ""
    params: dict[str, Any] = {}
    action: str | None
    if target:
        action = target.rsplit(".", 1)[-1]
        try:
            loaded = json.loads(body or b"{}")
        except json.JSONDecodeError:
            loaded = {}
        params = loaded if isinstance(loaded, dict) else {}
    else:
        form = parse_qs(body.decode("utf-8", "replace")) if body else {}
        form.update({k: v for k, v in parse_qs(environ.get("QUERY_STRING") or "").items() if k not in form})
        params = {k: v[0] for k, v in form.items() if v}
        action = params.get("Action")
        if action is None and service is not None:  # REST (S3): no action name on the wire, the method says it
            action = environ.get("REQUEST_METHOD")
    return region, service, action, params


class CallLog:
    """The calls answered while recording is on; thread-safe (the server answers from many threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.enabled = False
        self._calls: list[list[Any]] = []

    def start(self) -> None:
        with self._lock:
            self._calls = []
            self.enabled = True

    def stop(self) -> None:
        with self._lock:
            self._calls = []
            self.enabled = False

    def add(
        self, t: float, region: str | None, service: str | None, action: str | None, status: int, client: str = "sync"
    ) -> None:
        with self._lock:
            if self.enabled:
                self._calls.append([round(t, 3), region or "?", service or "?", action or "?", status, client])

    def calls(self, since: float | None = None) -> list[list[Any]]:
        with self._lock:
            return [c for c in self._calls if since is None or c[0] > since]

    def to_dict(self, since: float | None = None) -> dict[str, Any]:
        return {"enabled": self.enabled, "calls": self.calls(since)}


def client_of(user_agent: str) -> str:
    """``async`` for aiobotocore (what Airflow's triggers use), else ``sync``."""
    return "async" if "aiobotocore" in (user_agent or "") else "sync"


def call_rates(
    calls: Iterable[Sequence[Any]], *, start: float | None = None, end: float | None = None,
    client: str | None = None, services: Iterable[str] | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    """Calls per second, per region and API (``"<service>:<action>"``, and ``"*"`` for all of the region's calls):
    ``{"count", "peak", "mean"}``. ``peak`` is the most calls in one one-second window ``[start + k, start + k +
    1)``; ``mean`` is the count over the span ``end - start`` (default: the first call's second to the last's, at
    least one second). Calls outside ``[start, end)`` are left out; with ``client`` (``sync``/``async``) only that
client's calls count; with ``services`` only calls to those services."""
    wanted = None if services is None else set(services)
    rows = [
        (float(c[0]), str(c[1]), f"{c[2]}:{c[3]}") for c in calls
        if (client is None or c[5:6] == [client]) and (wanted is None or c[2] in wanted)
    ]
    if start is None:
        start = math.floor(min((r[0] for r in rows), default=0.0))
    if end is None:
        end = max(start + 1.0, math.floor(max((r[0] for r in rows), default=start)) + 1.0)
    span = max(1.0, end - start)
    windows: dict[tuple[str, str], dict[int, int]] = {}
    for t, region, api in rows:
        if not start <= t < end:
            continue
        second = int(math.floor(t - start))
        for key in ((region, api), (region, "*")):
            per = windows.setdefault(key, {})
            per[second] = per.get(second, 0) + 1
    out: dict[str, dict[str, dict[str, float]]] = {}
    for (region, api), per in sorted(windows.items()):
        count = sum(per.values())
        out.setdefault(region, {})[api] = {"count": count, "peak": max(per.values()), "mean": count / span}
    return out
