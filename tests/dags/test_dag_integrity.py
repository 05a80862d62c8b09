"""Tier 1: every DAG file parses, cheaply, and explains itself.

- no import errors, and at least one DAG (an empty dags/ folder is a failure, not a pass);
- each DAG has tags, an owner other than the default, retries (but human-in-the-loop tasks), doc_md, and described,
  typed Params whose
  schemas declare JSON Schema draft-07 (cheaper to check at every parse than the default 2020-12);
- parsing a DAG file imports neither boto3 nor the Amazon provider (checked in a fresh interpreter),
  and stays inside a parse-time budget;
- the DAG processor pre-imports every Airflow module a parse needs (the file names them at top level), and with
  the parse cache warm no parse validates the fleet config or imports the release logic.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from airflow.providers.standard.operators.hitl import HITLOperator
from phoenix_fleet.form_params import JSON_SCHEMA_DIALECT

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
DAG_FILES = sorted(p for p in DAGS.glob("*.py") if not p.name.startswith("_"))
# a hang guard, not a speed goal (bench/parse measures parse time): the DAG processor's import timeout
PARSE_BUDGET_S = 30.0


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    sys.path.insert(0, str(DAGS))
    try:
        return DagBag(dag_folder=str(DAGS))
    finally:
        sys.path.remove(str(DAGS))


def test_dag_files_exist():
    assert DAG_FILES, f"no DAG files in {DAGS}"


def test_no_import_errors(dagbag):
    assert not dagbag.import_errors, "\n".join(f"{k}: {v}" for k, v in dagbag.import_errors.items())
    assert dagbag.dags, "DagBag found no DAG at all"


def test_every_file_defines_a_dag(dagbag):
    files_with_dags = {Path(d.fileloc).name for d in dagbag.dags.values()}
    assert files_with_dags == {p.name for p in DAG_FILES}


def _dags(dagbag):
    return sorted(dagbag.dags.values(), key=lambda d: d.dag_id)


def test_dags_are_documented_and_owned(dagbag):
    problems = []
    for dag in _dags(dagbag):
        if not dag.tags:
            problems.append(f"{dag.dag_id}: no tags")
        if not dag.doc_md or len(dag.doc_md.strip()) < 80:
            problems.append(f"{dag.dag_id}: doc_md missing or too short to help an operator")
        for t in dag.tasks:
            if t.owner in (None, "", "airflow"):
                problems.append(f"{dag.dag_id}.{t.task_id}: owner is {t.owner!r}; set default_args owner")
            # a human's answer (an approval rejected, or not given in time) is not a transient failure: asking again
            # would only repeat the question, so human-in-the-loop tasks are the one exception
            if (t.retries is None or t.retries < 1) and not isinstance(t, HITLOperator):
                problems.append(f"{dag.dag_id}.{t.task_id}: retries={t.retries}; set default_args retries")
    assert not problems, "\n".join(problems)


def test_params_are_described_and_typed(dagbag):
    problems = []
    for dag in _dags(dagbag):
        for name in dag.params:
            p = dag.params.get_param(name)
            if not p.description:
                problems.append(f"{dag.dag_id}: Param {name!r} has no description")
            if "type" not in p.schema:
                problems.append(f"{dag.dag_id}: Param {name!r} has no JSON-schema type")
            if p.schema.get("$schema") != JSON_SCHEMA_DIALECT:
                # without it, every parse checks the schema against draft 2020-12's metaschema (~2.7x the cost)
                problems.append(f"{dag.dag_id}: Param {name!r} does not declare JSON Schema draft-07; "
                                "build it with phoenix_fleet.form_params.form_param")
    assert not problems, "\n".join(problems)


def _types(schema):
    kind = schema.get("type")
    return [kind] if isinstance(kind, str) else list(kind or [])


def test_forms_explain_themselves_and_open_submittable(dagbag):
    """What the trigger form needs so that a person can read it and submit it as it opens (issue 14):

    - a human label (``title``, not the raw name) and a ``section``;
    - optional: ``"null"`` in the type (Airflow's form marks every other field required, and a required field
      that is empty or a switch that is off blocks Trigger), and the default valid against the schema;
    - bounded: every string (and string item) has a ``maxLength`` (or an ``enum``), every list a ``maxItems``;
    - every enum value has a label in ``values_display`` (the empty choice included).
    """
    from jsonschema import Draft7Validator

    problems = []
    for dag in _dags(dagbag):
        for name in dag.params:
            p = dag.params.get_param(name)
            where, schema = f"{dag.dag_id}.{name}", p.schema
            title = schema.get("title")
            if not title or title == name or "_" in title:
                problems.append(f"{where}: no human title (the form would show the raw name)")
            if not schema.get("section"):
                problems.append(f"{where}: no section")
            if "null" not in _types(schema):
                problems.append(f"{where}: required in the form (its type {schema.get('type')} has no 'null')")
            if not Draft7Validator(schema).is_valid(p.value):
                problems.append(f"{where}: its default {p.value!r} fails its own schema")
            for part, label in ((schema, where), (schema.get("items") or {}, f"{where}[]")):
                if "string" in _types(part) and not part.get("maxLength") and "enum" not in part:
                    problems.append(f"{label}: a string without maxLength")
                if "array" in _types(part) and not part.get("maxItems"):
                    problems.append(f"{label}: a list without maxItems")
            if "enum" in schema:
                shown = {"null" if v is None else str(v) for v in schema["enum"]}
                missing = shown - set(schema.get("values_display") or {})
                if missing:
                    problems.append(f"{where}: enum values without a label in values_display: {sorted(missing)}")
    assert not problems, "\n".join(problems)


_PROBES = [None, "", "latest", "2026.11.02-1", "2026.11.02-0", "ami-0123456789abcdef0", "ami-XYZ", "surge", "yolo",
           -1, 0, 0.5, 1, 2.5, 30, 31, 100, 101, 365, 366, 500, 501, True, False, [], ["a", "b"], [1], {"a": 1},
           "../../etc", "$(reboot)", "{{ conf }}", "a\n{% x %}", "x" * 5000, ["us-east-1"], ["self", "x" * 200],
           "/tmp/r/report.json", "/tmp/../etc/report.json", "s3://b-1/inventory/latest/report.json",
           "arn:aws:sns:us-east-1:123456789012:fleet", "debian-12-amd64-*"]


def test_every_form_validates_as_the_default_dialect_would(dagbag):
    """Declaring draft-07 (for parse time) changes no validation: both dialects accept and reject the same values."""
    from jsonschema import Draft7Validator, Draft202012Validator, FormatChecker

    params = [(f"{d.dag_id}.{n}", d.params.get_param(n)) for d in _dags(dagbag) for n in d.params]
    assert len(params) >= 30, [n for n, _ in params]  # the generated release and rollout forms included
    assert {"ami_release_web.skip_bake", "fleet_rollout_web.batch_size"} <= {n for n, _ in params}
    for name, param in params:
        schema = dict(param.schema)
        assert schema.pop("$schema") == JSON_SCHEMA_DIALECT, name
        Draft7Validator.check_schema(param.schema)
        draft7 = Draft7Validator(param.schema, format_checker=FormatChecker())
        default = Draft202012Validator(schema, format_checker=FormatChecker())
        for value in [*_PROBES, param.value]:
            assert draft7.is_valid(value) == default.is_valid(value), (name, value)
        assert draft7.is_valid(param.value), f"{name}: its default fails its own schema"

def _schedule_leaves(cond):
    objects = getattr(cond, "objects", None)
    if objects is None:
        yield cond
        return
    for obj in objects:
        yield from _schedule_leaves(obj)


def test_asset_schedules_name_assets_that_a_dag_emits(dagbag):
    """A DAG scheduled on an asset (or a reference to one) nobody emits would never run: each must resolve."""
    from airflow.sdk.definitions.asset import Asset, AssetNameRef, AssetUriRef

    emitted = [a for d in dagbag.dags.values() for t in d.tasks for a in t.outlets if isinstance(a, Asset)]
    names, uris = {a.name for a in emitted}, {a.uri for a in emitted}
    scheduled, problems = 0, []
    for dag in _dags(dagbag):
        cond = getattr(dag.timetable, "asset_condition", None)
        for leaf in _schedule_leaves(cond) if cond is not None else ():
            scheduled += 1
            if isinstance(leaf, AssetNameRef) and leaf.name not in names:
                problems.append(f"{dag.dag_id}: scheduled on Asset.ref(name={leaf.name!r}), which no task emits")
            elif isinstance(leaf, AssetUriRef) and leaf.uri not in uris:
                problems.append(f"{dag.dag_id}: scheduled on Asset.ref(uri={leaf.uri!r}), which no task emits")
            elif isinstance(leaf, Asset) and leaf.uri not in uris:
                problems.append(f"{dag.dag_id}: scheduled on {leaf.uri}, which no task emits")
    assert scheduled, "no DAG is scheduled on an asset: the rollouts should be"
    assert not problems, "\n".join(problems)


_PROBE = r"""
import json, sys, time, importlib.util
sys.path.insert(0, sys.argv[2])
import airflow.sdk  # what every DAG file imports anyway
import pendulum, structlog
from airflow.dag_processing.processor import _pre_import_airflow_modules
_pre_import_airflow_modules(sys.argv[1], structlog.get_logger())  # what the processor does before each fork
with airflow.sdk.DAG("baseline_probe", schedule=None, start_date=pendulum.datetime(2026, 1, 1)):
    airflow.sdk.BaseOperator(task_id="t")  # what Airflow itself loads for any DAG is not the file's cost
before = set(sys.modules)
t0 = time.perf_counter()
spec = importlib.util.spec_from_file_location("dagfile_probe", sys.argv[1])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
dt = time.perf_counter() - t0
heavy = sorted(m for m in set(sys.modules) - before if m.split(".")[0] in ("boto3", "botocore", "aiobotocore")
               or m.startswith("airflow.providers.amazon"))
late = sorted(m for m in set(sys.modules) - before if m.startswith("airflow."))
ours = sorted(m for m in set(sys.modules) - before if m in ("phoenix_fleet.config", "phoenix_fleet.release")
              or m.startswith("phoenix_fleet.release."))
print(json.dumps({"seconds": dt, "heavy": heavy[:10], "late_airflow": late, "ours": ours}))
"""


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_is_cheap_to_parse(path):
    from phoenix_fleet.dag_facts import fleet_dag_facts

    fleet_dag_facts()  # the parse cache is warm, as after the processor's first parse of the config
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, str(path), str(DAGS)],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert not result["heavy"], f"{path.name} imports AWS libraries at parse time: {result['heavy']}"
    assert result["seconds"] < PARSE_BUDGET_S, f"{path.name} took {result['seconds']:.2f}s to parse"
    assert not result["late_airflow"], (
        f"{path.name} imports Airflow modules at every parse that the DAG processor could import once: add "
        f"top-level `import <module>` lines for {result['late_airflow']}"
    )
    assert not result["ours"], f"{path.name} validates the config or loads release logic at parse: {result['ours']}"
