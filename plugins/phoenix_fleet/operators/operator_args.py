"""Coercions for operator arguments that Jinja may have rendered into strings (shared by the operator modules;
stdlib only, so importing it costs a DAG parse nothing)."""

from __future__ import annotations

from typing import Any


def as_bool(value: Any) -> bool:
    """True for ``True`` and the strings ``1``/``true``/``yes``/``on`` (any case, any surrounding space)."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)
