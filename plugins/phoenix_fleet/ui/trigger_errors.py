"""A trigger refused by a Param's schema gets an answer a person can act on, not Airflow's schema dump.

Airflow 3.3 validates a trigger's conf against the DAG's Params before it creates the run
(``POST /api/v2/dags/{dag_id}/dagRuns``, which the UI's Trigger button calls too) and answers HTTP 400 with
``{"detail": "Invalid input for param <name>: <str(jsonschema.ValidationError)>"}``: the failed check, the whole
schema pretty-printed, and the value, twice (a 100 kB value gives a 200 kB answer). Neither the Param nor the DAG
can change that text (``SerializedParamsDict.validate`` formats it in the api-server), but an Airflow plugin can
add ASGI middleware to the api-server (``fastapi_root_middlewares``). :class:`TriggerErrorMiddleware` rewrites only
those 400 answers, only on that route: it reads the Param's name, the failed keyword, the schema and the value
from Airflow's text and answers::

    {"detail": "params.version (Version): '2026-11-30' is not in the expected format. Fix: use YYYY.MM.DD-N, ..."}

naming the field (and its label in the form), the problem, and the fix (the schema's ``x-fix``, see
:mod:`phoenix_fleet.form_params`), with the value cut to 60 characters. Anything it cannot read passes through
unchanged. What it cannot do: Airflow stops at the first Param that fails (one problem per answer), and a conf
key that is no Param is accepted by Airflow (the DAG's first task refuses it; docs/forms.md).
"""

from __future__ import annotations

import ast
import json
import re
import textwrap
from typing import Any

from phoenix_fleet.form_params import shown

TRIGGER_PATH = re.compile(r"/api/v2/dags/[^/]+/dagRuns/?$")
_HEAD = re.compile(r"^Invalid input for param (?P<name>[^:\s]{1,250}): ")
_FAILED = re.compile(
    r"\n\nFailed validating '(?P<keyword>\w+)' in schema(?P<schema_path>(?:\[[^\n]*?\])*):\n"
    r"(?P<schema>.*?)\n\nOn instance(?P<path>(?:\[[^\n]*?\])*):\n(?P<instance>.*)\Z",
    re.S,
)
_NOTHING = object()
_JSON_TYPES = {
    bool: "true/false", int: "a number", float: "a number", str: "text", list: "a list", dict: "an object",
    type(None): "empty",
}
_TYPE_NAME = {
    "boolean": "true or false",
    "integer": "a whole number",
    "number": "a number",
    "string": "text",
    "array": "a list",
    "object": "an object",
}
_TYPE_FIX = {**_TYPE_NAME, "array": 'a list, e.g. ["a", "b"]'}


def _literal(block: str) -> Any:
    try:
        return ast.literal_eval(textwrap.dedent(block).strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return _NOTHING


def _span(schema: dict[str, Any]) -> str:
    """`` from 1 to 1000`` for a schema with bounds, else empty."""
    lo, hi = schema.get("minimum", schema.get("exclusiveMinimum")), schema.get("maximum", schema.get("exclusiveMaximum"))
    if lo is not None and hi is not None:
        return f" from {lo} to {hi}"
    if lo is not None:
        return f" of at least {lo}"
    return f" of at most {hi}" if hi is not None else ""


def explain(detail: str) -> str | None:
    """Airflow's ``Invalid input for param ...`` text as one line that names the field and the fix; None when
    ``detail`` is not such a text (it is then left as it is)."""
    head = _HEAD.match(detail)
    failed = _FAILED.search(detail)
    if not head or not failed:
        return None
    keyword = failed["keyword"]
    schema = _literal(failed["schema"])
    schema = schema if isinstance(schema, dict) else {}
    value = _literal(failed["instance"])
    field = f"params.{head['name']}{failed['path']}"
    if schema.get("title") and not failed["path"]:
        field += f" ({schema['title']})"
    fix = schema.get("x-fix")
    nullable = "null" in ([schema.get("type")] if isinstance(schema.get("type"), str) else schema.get("type") or [])
    empty = " (or leave it empty)" if nullable and not fix else ""
    what = shown(value) if value is not _NOTHING else "the value"
    if keyword in ("maxLength", "minLength") and isinstance(value, str):
        limit = schema.get(keyword)
        more = keyword == "maxLength"
        problem = f"{len(value)} characters, {'more' if more else 'fewer'} than the {limit} {'allowed' if more else 'needed'}"
        fix = fix or (f"shorten it to {limit} characters or fewer" if more else f"give at least {limit} characters")
    elif keyword in ("maxItems", "minItems") and isinstance(value, list):
        limit = schema.get(keyword)
        problem = f"{len(value)} items, {'more' if keyword == 'maxItems' else 'fewer'} than the {limit} allowed"
        fix = fix or f"give {'at most' if keyword == 'maxItems' else 'at least'} {limit}"
    elif keyword == "pattern":
        problem = f"{what} is not in the expected format"
        fix = fix or f"match the pattern {schema.get('pattern')}"
    elif keyword == "type":
        expected = [t for t in ([schema.get("type")] if isinstance(schema.get("type"), str) else schema.get("type", []))
                    if t != "null"]
        got = _JSON_TYPES.get(type(value), "something else") if value is not _NOTHING else "of another type"
        problem = f"{what} is {got}, not {' or '.join(_TYPE_NAME.get(t, t) for t in expected)}"
        fix = fix or " or ".join(_TYPE_FIX.get(t, t) for t in expected) + _span(schema) + empty
    elif keyword == "enum":
        choices = [c for c in schema.get("enum", []) if c is not None]
        problem = f"{what} is not one of the choices"
        fix = fix or "choose one of " + ", ".join(map(str, choices)) + empty
    elif keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        problem = f"{what} is out of range"
        fix = fix or f"a number{_span(schema)}{empty}"
    else:
        first = detail[head.end():].split("\n", 1)[0]
        problem = shown(first, 200, quote=False)
        fix = fix or "see the field's help text in the trigger form"
    return f"{field}: {problem}. Fix: {fix}"


class TriggerErrorMiddleware:
    """ASGI middleware for Airflow's api-server: rewrites the 400 answers of ``POST .../dagRuns`` whose detail is a
    Param validation error (see the module doc). Everything else streams through untouched."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") != "http" or scope.get("method") != "POST" or not TRIGGER_PATH.search(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        start: dict[str, Any] | None = None
        chunks: list[bytes] = []

        async def send_rewritten(message: dict[str, Any]) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and message.get("status") == 400:
                start = message  # hold it: the body decides what we answer
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = _rewrite(b"".join(chunks))
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, send_rewritten)


def _rewrite(body: bytes) -> bytes:
    try:
        payload = json.loads(body)
    except ValueError:
        return body
    detail = payload.get("detail") if isinstance(payload, dict) else None
    better = explain(detail) if isinstance(detail, str) else None
    if better is None:
        return body
    return json.dumps({**payload, "detail": better}).encode()
