"""Release versions are claimed atomically: one SSM parameter per version, created only if it does not exist.

A version used to count as taken only once Packer tagged the finished AMI, so two runs (or a run and the orphaned
build of an earlier one) could both pick it. ``plan`` now claims the version before anything is built:

* ``<ssm_prefix>-claims/<role>/<version>`` (a sibling of the pointers' prefix, so the inventory's recursive sweep of
  ``<ssm_prefix>`` never pages through claims) is created with ``PutParameter(Overwrite=False)``: SSM's conditional
  write. Exactly one caller gets it; everyone else gets ``ParameterAlreadyExists``.
* Its value is JSON ``{"run_id", "dag_id", "claimed_at", "expires_at"}``; ``expires_at`` is the claim time plus the
  release run's ``dagrun_timeout`` (a run older than that is over, whatever became of its teardown).
* The same run claiming again (a retried ``plan``) gets its own claim back.
* An expired claim is taken over with a compare-and-swap on the parameter's version number: overwrite, then own it
  only if the write produced the very next version *and* the parameter names this run. Two takers racing both lose
  (neither owns it, the version stays blocked until the new expiry), never both win.
* The run releases its claim when it ends without publishing (the release DAG's ``settle_version_claim``
  teardown): the parameter is deleted if it still names the run. A published version keeps its claim for good.

Calls take a boto3 SSM client; nothing here imports boto3 or Airflow.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

CLAIMS_SUFFIX = "-claims"


def claims_prefix(ssm_prefix: str) -> str:
    return f"{ssm_prefix}{CLAIMS_SUFFIX}"


def claim_parameter(ssm_prefix: str, role: str, version: str) -> str:
    """``/phoenix/images-claims/web/2026.12.01-1`` for ssm_prefix ``/phoenix/images``."""
    return f"{claims_prefix(ssm_prefix)}/{role}/{version}"


@dataclass(frozen=True)
class Claim:
    parameter: str
    run_id: str
    dag_id: str
    claimed_at: str
    expires_at: str
    number: int  # the SSM parameter version holding this value

    def expired(self, now: dt.datetime) -> bool:
        try:
            expires = dt.datetime.fromisoformat(self.expires_at)
        except ValueError:
            return False  # unreadable: never taken over on a guess
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=dt.UTC)
        return now >= expires

    def held_by(self, run_id: str, dag_id: str) -> bool:
        return self.run_id == run_id and self.dag_id == dag_id

    def describe(self) -> str:
        return f"run {self.run_id} of {self.dag_id} (claimed {self.claimed_at}, expires {self.expires_at})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "parameter": self.parameter, "run_id": self.run_id, "dag_id": self.dag_id,
            "claimed_at": self.claimed_at, "expires_at": self.expires_at,
        }


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="seconds")


def _error_code(exc: BaseException) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def _value(run_id: str, dag_id: str, now: dt.datetime, ttl: dt.timedelta) -> str:
    return json.dumps(
        {"run_id": run_id, "dag_id": dag_id, "claimed_at": _iso(now), "expires_at": _iso(now + ttl)},
        sort_keys=True,
    )


def _parse(parameter: str, raw: Mapping[str, Any]) -> Claim:
    try:
        data = json.loads(str(raw.get("Value") or "{}"))
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    return Claim(
        parameter,
        str(data.get("run_id") or "?"),
        str(data.get("dag_id") or "?"),
        str(data.get("claimed_at") or "?"),
        str(data.get("expires_at") or "?"),
        int(raw.get("Version") or 0),
    )


def current_claim(ssm: Any, parameter: str) -> Claim | None:
    try:
        raw = ssm.get_parameter(Name=parameter)["Parameter"]
    except Exception as exc:
        if _error_code(exc) == "ParameterNotFound":
            return None
        raise
    return _parse(parameter, raw)


def claim_version(
    ssm: Any, parameter: str, *, run_id: str, dag_id: str, now: dt.datetime, ttl: dt.timedelta, description: str = ""
) -> tuple[bool, Claim | None]:
    """Try to claim ``parameter`` for the run. Returns ``(True, claim)`` when the run holds it now (new, its own
    from an earlier try, or an expired one taken over), else ``(False, the holder's claim)``."""
    value = _value(run_id, dag_id, now, ttl)
    desc = (description or "phoenix-fleet release version claim")[:1024]
    try:
        ssm.put_parameter(Name=parameter, Value=value, Type="String", Overwrite=False, Description=desc)
        return True, current_claim(ssm, parameter)
    except Exception as exc:
        if _error_code(exc) != "ParameterAlreadyExists":
            raise
    holder = current_claim(ssm, parameter)
    if holder is None:  # released between the two calls: try once more, conditionally
        try:
            ssm.put_parameter(Name=parameter, Value=value, Type="String", Overwrite=False, Description=desc)
            return True, current_claim(ssm, parameter)
        except Exception as exc:
            if _error_code(exc) != "ParameterAlreadyExists":
                raise
            return False, current_claim(ssm, parameter)
    if holder.held_by(run_id, dag_id):
        return True, holder
    if not holder.expired(now):
        return False, holder
    # compare-and-swap on the version number: ours only if our write is the very next version and still stands
    written = int(ssm.put_parameter(Name=parameter, Value=value, Type="String", Overwrite=True)["Version"])
    after = current_claim(ssm, parameter)
    if written == holder.number + 1 and after is not None and after.held_by(run_id, dag_id):
        return True, after
    return False, after


def release_claim(ssm: Any, parameter: str, *, run_id: str, dag_id: str) -> bool:
    """Delete the claim if it names this run. Returns True when it was deleted."""
    holder = current_claim(ssm, parameter)
    if holder is None or not holder.held_by(run_id, dag_id):
        return False
    try:
        ssm.delete_parameter(Name=parameter)
    except Exception as exc:
        if _error_code(exc) == "ParameterNotFound":
            return False
        raise
    return True
