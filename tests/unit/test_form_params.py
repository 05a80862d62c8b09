"""form_param: draft-07 schemas that validate exactly as Airflow's default dialect (2020-12) would."""

from __future__ import annotations

import itertools

import pytest
from jsonschema import Draft7Validator, Draft202012Validator, FormatChecker
from phoenix_fleet.form_params import JSON_SCHEMA_DIALECT, form_param
from phoenix_fleet.pipelines.release_dag import release_params
from phoenix_fleet.pipelines.rollout_dag import rollout_params

PROBES = [None, "", "latest", "2026.11.02-1", "2026.11.02-0", "ami-0123456789abcdef0", "ami-XYZ", "surge", "yolo",
          -1, 0, 1, 2.5, 100, 101, True, False, [], ["a", "b"], [1], {"a": 1}]


def _form_params():
    return sorted(itertools.chain(release_params().items(), rollout_params().items()), key=lambda kv: kv[0])


def test_form_param_declares_draft_07_and_keeps_the_rest():
    p = form_param(3, "how many", type="integer", minimum=1)
    assert p.schema == {"$schema": JSON_SCHEMA_DIALECT, "type": "integer", "minimum": 1}
    assert (p.value, p.description) == (3, "how many")
    assert Draft7Validator.META_SCHEMA["$schema"] == JSON_SCHEMA_DIALECT  # the URI jsonschema maps to draft-07


@pytest.mark.parametrize(("name", "param"), _form_params(), ids=lambda v: v if isinstance(v, str) else "")
def test_the_forms_validate_as_the_default_dialect_would(name, param):
    schema = dict(param.schema)
    assert schema.pop("$schema") == JSON_SCHEMA_DIALECT
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
