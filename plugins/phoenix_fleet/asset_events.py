"""Reading a run's ``triggering_asset_events`` (pure: no Airflow import)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def extras(events: Any, uri: str) -> list[Mapping[str, Any]]:
    """The ``extra`` of every triggering event on the asset ``uri``, oldest first (empty ones as ``{}``)."""
    out: list[Mapping[str, Any]] = []
    for key, evs in dict(events or {}).items():
        if getattr(key, "uri", str(key)) == uri:
            out.extend(getattr(ev, "extra", None) or {} for ev in evs)
    return out
