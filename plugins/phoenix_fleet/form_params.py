"""Trigger-form Params: a title, a section, help text and a JSON schema (draft-07) that refuses bad values.

**What the form shows.** Airflow's trigger form (the React UI of Airflow 3.3) labels a field with the schema's
``title`` (else the raw Param name), groups fields into collapsible sections by ``section``, shows an enum's
values through ``values_display``, and marks a field *required* whenever its ``type`` does not include
``"null"``: a required field with an empty value puts a red mark on its section and disables Trigger, and a
required switch that is off counts as empty. So every Param here is nullable (``form_param`` adds ``"null"`` to
its type): a person can submit any form as it opens, and an empty field means "the default", which the task
that reads it resolves (``plan`` of each DAG). A Param is required only when a run cannot mean anything
without it; none of ours is.

**What the schema refuses.** Airflow validates a trigger's conf against these schemas before it creates the
run (HTTP 400, the UI shows the message), so every string has a ``maxLength`` and, where the value has a
format, a ``pattern``; arrays have ``maxItems`` and typed items. ``x-fix`` is our own keyword (JSON Schema
ignores unknown keywords): the fix a person should apply, which :mod:`phoenix_fleet.ui.trigger_errors` puts into
the 400 answer instead of Airflow's raw schema dump.

**Parse cost.** Airflow validates a scheduled DAG's Params when it builds the DAG, at every parse of its file
(``DAG._validate_params`` → ``Param.resolve`` → ``jsonschema.validate``), and ``jsonschema.validate`` first
checks the schema itself against its dialect's metaschema. A schema without ``$schema`` is checked against
draft 2020-12, whose metaschema (vocabularies, ``$dynamicRef``) costs about 2.7 times draft-07's: ~0.8 ms
per Param on our 2-core test machine, against ~0.3 ms. Our forms only use keywords that mean the same in both
dialects (``type``, ``enum``, ``pattern``, ``minimum``, ``maximum``, ``maxLength``, ``maxItems``, ``items``),
so declaring draft-07 changes no validation (docs/parse-time.md; tests/dags/test_dag_integrity.py checks both
dialects agree on every form).

What the schemas cannot see (one field against another, a field against AWS or the fleet config, keys that
are no Param at all) the DAG's first task checks before anything changes: :func:`unknown_fields` here, and
each DAG's own validation (``release_plan``, ``rollout_plan``, ...). See docs/forms.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from airflow.sdk import Param

JSON_SCHEMA_DIALECT = "http://json-schema.org/draft-07/schema#"

# ------------------------------------------------------------------------------------ shared value formats
#: a release version, YYYY.MM.DD-N
VERSION_PATTERN = r"^\d{4}\.\d{2}\.\d{2}-[1-9]\d*$"
AMI_ID_PATTERN = r"^ami-[0-9a-f]{8,17}$"
#: what EC2 allows in an AMI name (letters, digits, ( ) [ ] space . / - ' @ _), plus the filter wildcard *
AMI_NAME_PATTERN = r"^[A-Za-z0-9()\[\] ./'@_*-]{3,128}$"
AMI_OWNER_PATTERN = r"^(\d{12}|self|amazon)$"
REGION_PATTERN = r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d$"
ROLE_PATTERN = r"^[a-z][a-z0-9-]{0,30}$"
#: an Auto Scaling group name as our Terraform names them (AWS allows more; we never name one so)
ASG_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
SNS_TOPIC_ARN_PATTERN = r"^arn:aws[a-z-]*:sns:[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$"
#: a report.json (or its .html/.csv sibling): an absolute path or an s3:// URI, with no '..' segment
REPORT_REF_PATTERN = (
    r"^(?![\s\S]*/\.\./)(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]|)/[A-Za-z0-9._/=+-]*\.(json|html|csv)$"
)
#: free text that reaches templated places (notifications, the run's notes) must not carry Jinja delimiters
NO_JINJA_PATTERN = r"^(?![\s\S]*(\{\{|\{%|\{#))[\s\S]*$"
NAME_MAX = 128
NOTES_MAX = 4000


def form_param(
    default: Any,
    description: str,
    *,
    title: str,
    section: str,
    required: bool = False,
    **schema: Any,
) -> Param:
    """A Param for the trigger form: its default, help text, label (``title``), ``section`` and JSON schema
    keywords (draft-07). Optional unless ``required``: ``"null"`` joins the type, so an empty field is valid
    (it means the default; the DAG's first task resolves it)."""
    kind = schema.get("type")
    if not required and kind is not None:
        kinds = [kind] if isinstance(kind, str) else list(kind)
        if "null" not in kinds:
            kinds.append("null")
        schema["type"] = kinds
        if "enum" in schema and None not in schema["enum"]:
            schema["enum"] = [None, *schema["enum"]]
    return Param(
        default,
        description=description,
        schema={"$schema": JSON_SCHEMA_DIALECT, "title": title, "section": section, **schema},
    )


def string_list(item_pattern: str, item_max: int, max_items: int, fix: str) -> dict[str, Any]:
    """Schema keywords of a list of strings in a given format (the form's one-per-line text box)."""
    return {
        "type": "array",
        "maxItems": max_items,
        "items": {"type": "string", "pattern": item_pattern, "maxLength": item_max, "x-fix": fix},
        "x-fix": fix,
    }


def unknown_fields(params: Mapping[str, Any], known: Iterable[str]) -> list[str]:
    """One line per key of ``params`` that is no field of the form: ``params.evil: unknown field. Fix: ...``.

    Airflow runs a DAG with any extra conf key (it becomes a Param without a schema), so the first task of every
    DAG refuses them before anything changes: a typo (``dryrun``) would otherwise be ignored silently."""
    names = list(known)
    extra = sorted(k for k in params if k not in names)
    listed = ", ".join(names)
    return [
        f"params.{shown(k, quote=False)}: unknown field. Fix: remove it; known fields: {listed}" for k in extra
    ]


def shown(value: Any, limit: int = 60, *, quote: bool = True) -> str:
    """A value as an error message shows it: its repr (or text), cut at ``limit`` characters with its length,
    so that a 100 kB value does not come back 100 kB long."""
    text = repr(value) if quote else str(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"
