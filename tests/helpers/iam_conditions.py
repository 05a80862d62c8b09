"""Which statements of a shipped policy (include/iam/) allow an action on a resource with given tags, conditions
included, for the condition operators our destructive statements use on resource tags (``Null`` and
``StringEquals`` on ``aws:ResourceTag/<key>``). The sandbox evaluates no condition (docs/sandbox.md): tests use
this where what matters is whether a resource's tags satisfy a statement, e.g. a failed build's image.
An operator or key outside that set fails loudly rather than being guessed at."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sandbox.iam_principals import POLICY_DIR

RESOURCE_TAG = "aws:ResourceTag/"


def _holds(operator: str, key: str, want: Any, tags: Mapping[str, str]) -> bool:
    if not key.startswith(RESOURCE_TAG):
        raise AssertionError(f"condition key {key!r} is not a resource tag: extend tests/helpers/iam_conditions.py")
    tag = key[len(RESOURCE_TAG):]
    wanted = want if isinstance(want, list) else [want]
    if operator == "Null":
        return all((tag not in tags) == (str(w).lower() == "true") for w in wanted)
    if operator == "StringEquals":
        return tags.get(tag) in wanted
    raise AssertionError(f"condition operator {operator!r}: extend tests/helpers/iam_conditions.py")


def allowing_sids(policy: str, action: str, tags: Mapping[str, str]) -> list[str]:
    """The Sids of ``include/iam/<policy>.json`` that allow ``action`` on a resource tagged ``tags``."""
    document = json.loads((POLICY_DIR / f"{policy}.json").read_text())
    out = []
    for statement in document["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        if statement["Effect"] != "Allow" or action not in actions:
            continue
        conditions = statement.get("Condition", {})
        if all(_holds(op, key, want, tags) for op, pairs in conditions.items() for key, want in pairs.items()):
            out.append(statement["Sid"])
    return out
