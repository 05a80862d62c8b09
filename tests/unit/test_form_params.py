"""form_param: draft-07 schemas that validate exactly as Airflow's default dialect (2020-12) would."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from jsonschema import Draft7Validator, Draft202012Validator, FormatChecker
from phoenix_fleet.form_params import JSON_SCHEMA_DIALECT, form_param
from phoenix_fleet.pipelines.rollout_dag import rollout_params

REPO = Path(__file__).resolve().parents[2]

PROBES = [None, "", "latest", "2026.11.02-1", "2026.11.02-0", "ami-0123456789abcdef0", "ami-XYZ", "surge", "yolo",
          -1, 0, 0.5, 1, 2.5, 30, 31, 100, 101, 365, 366, 500, 501, True, False, [], ["a", "b"], [1], {"a": 1}]


def test_form_param_declares_draft_07_and_keeps_the_rest():
    p = form_param(3, "how many", type="integer", minimum=1)
    assert p.schema == {"$schema": JSON_SCHEMA_DIALECT, "type": "integer", "minimum": 1}
    assert (p.value, p.description) == (3, "how many")
    assert Draft7Validator.META_SCHEMA["$schema"] == JSON_SCHEMA_DIALECT  # the URI jsonschema maps to draft-07


@pytest.fixture(scope="module")
def form_params():
    """Every Param of every DAG in dags/, as (dag_id.name, Param)."""
    from airflow.dag_processing.dagbag import DagBag

    dags = REPO / "dags"
    sys.path.insert(0, str(dags))
    try:
        bag = DagBag(dag_folder=str(dags))
    finally:
        sys.path.remove(str(dags))
    assert not bag.import_errors, bag.import_errors
    return [(f"{d.dag_id}.{name}", d.params.get_param(name)) for d in bag.dags.values() for name in d.params]


def test_every_form_validates_as_the_default_dialect_would(form_params):
    assert len(form_params) >= 30, [n for n, _ in form_params]  # the generated release and rollout forms included
    assert {"ami_release_web.skip_bake", "fleet_rollout_web.batch_size"} <= {n for n, _ in form_params}
    for name, param in form_params:
        schema = dict(param.schema)
        assert schema.pop("$schema") == JSON_SCHEMA_DIALECT, name
        Draft7Validator.check_schema(param.schema)
        draft7 = Draft7Validator(param.schema, format_checker=FormatChecker())
        default = Draft202012Validator(schema, format_checker=FormatChecker())
        for value in [*PROBES, param.value]:
            assert draft7.is_valid(value) == default.is_valid(value), (name, value)
        assert draft7.is_valid(param.value), f"{name}: its default fails its own schema"


def test_a_bad_value_is_rejected_naming_the_param():
    from airflow.sdk.definitions.param import ParamsDict, ParamValidationError

    params = ParamsDict(rollout_params())
    with pytest.raises(ParamValidationError, match="param batch_size: -1 is less than the minimum of 1"):
        params["batch_size"] = -1  # a trigger's conf goes through the same check
    params["batch_size"] = 2
    assert params.validate()["batch_size"] == 2
