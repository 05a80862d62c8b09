"""form_param: draft-07 schemas (that every DAG's forms validate as 2020-12 would is checked in tests/dags)."""

from __future__ import annotations

import pytest
from jsonschema import Draft7Validator
from phoenix_fleet.form_params import JSON_SCHEMA_DIALECT, form_param
from phoenix_fleet.pipelines.rollout_dag import rollout_params


def test_form_param_declares_draft_07_and_keeps_the_rest():
    p = form_param(3, "how many", type="integer", minimum=1)
    assert p.schema == {"$schema": JSON_SCHEMA_DIALECT, "type": "integer", "minimum": 1}
    assert (p.value, p.description) == (3, "how many")
    assert Draft7Validator.META_SCHEMA["$schema"] == JSON_SCHEMA_DIALECT  # the URI jsonschema maps to draft-07


def test_a_bad_value_is_rejected_naming_the_param():
    from airflow.sdk.definitions.param import ParamsDict, ParamValidationError

    params = ParamsDict(rollout_params())
    with pytest.raises(ParamValidationError, match="param batch_size: -1 is less than the minimum of 1"):
        params["batch_size"] = -1  # a trigger's conf goes through the same check
    params["batch_size"] = 2
    assert params.validate()["batch_size"] == 2
