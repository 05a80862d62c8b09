"""form_param: labelled, sectioned, optional, draft-07 schemas (every DAG's forms are checked in tests/dags)."""

from __future__ import annotations

import pytest
from jsonschema import Draft7Validator
from phoenix_fleet.form_params import JSON_SCHEMA_DIALECT, form_param, shown, unknown_fields
from phoenix_fleet.pipelines.rollout_dag import rollout_params


def test_form_param_is_optional_labelled_and_declares_draft_07():
    p = form_param(3, "how many", title="How many", section="Scope", type="integer", minimum=1)
    assert p.schema == {
        "$schema": JSON_SCHEMA_DIALECT, "title": "How many", "section": "Scope", "type": ["integer", "null"],
        "minimum": 1,
    }
    assert (p.value, p.description) == (3, "how many")
    assert Draft7Validator.META_SCHEMA["$schema"] == JSON_SCHEMA_DIALECT  # the URI jsonschema maps to draft-07
    assert p.resolve(None) is None  # an emptied field is valid: it means the default


def test_an_enum_accepts_empty_and_a_required_param_stays_required():
    p = form_param(None, "how", title="How", section="S", type="string", enum=["a", "b"])
    assert p.schema["enum"] == [None, "a", "b"] and p.schema["type"] == ["string", "null"]
    strict = form_param("a", "how", title="How", section="S", required=True, type="string")
    assert strict.schema["type"] == "string"


def test_a_bad_value_is_rejected_naming_the_param():
    from airflow.sdk.definitions.param import ParamsDict, ParamValidationError

    params = ParamsDict(rollout_params())
    with pytest.raises(ParamValidationError, match="param batch_size: -1 is less than the minimum of 1"):
        params["batch_size"] = -1  # a trigger's conf goes through the same check
    params["batch_size"] = 2
    assert params.validate()["batch_size"] == 2


def test_unknown_fields_name_each_key_and_the_known_ones():
    assert unknown_fields({"a": 1, "b": None}, ["a", "b"]) == []
    assert unknown_fields({"a": 1, "zz": 2, "x" * 1000: 3}, ["a", "b"]) == [
        f"params.{'x' * 60}… (1000 characters): unknown field. Fix: remove it; known fields: a, b",
        "params.zz: unknown field. Fix: remove it; known fields: a, b",
    ]


def test_shown_cuts_long_values_and_says_how_long():
    assert shown("abc") == "'abc'"
    assert shown("x" * 100_000) == "'" + "x" * 59 + "… (100002 characters)"
