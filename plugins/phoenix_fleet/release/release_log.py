"""The release log: one record per release in S3, next to the release notes; SSM labels on the newest only.

Pure: key names, the record's shape, and which SSM labels to drop. The publish operator reads and writes the
records through :class:`~phoenix_fleet.hooks.image_hook.ImageHook`.

::

    s3://<artifacts_bucket>/images/<role>/<version>/release.json     the record (this module)
    s3://<artifacts_bucket>/images/<role>/<version>/release-notes.md  release notes (release_notes.py)
    s3://<artifacts_bucket>/images/<role>/<version>/rollout.json     the rollout's claim on the version

Why not SSM alone: SSM keeps 100 versions of a parameter and will not drop a *labelled* version, so a log made of
one labelled ``latest`` version per release stops growing at its 101st release (``PutParameter`` fails with
``ParameterMaxVersionLimitExceeded`` for good). The records grow without bound; the ``latest`` parameter keeps
its label (``latest:v<version>``) on the newest :data:`SSM_LABELLED_RELEASES` releases only.

A record moves ``staged`` (publish has written what it will move, and what each pointer held before) ->
``published`` (every pointer moved) or ``rolled-back`` (a move failed; the moved pointers were put back). A
``published`` record is the release: version -> AMI per region, immutable.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from phoenix_fleet.release.versions import is_version

STAGED = "staged"
PUBLISHED = "published"
ROLLED_BACK = "rolled-back"
STATES = (STAGED, PUBLISHED, ROLLED_BACK)

SSM_LABELLED_RELEASES = 20
"""How many of the newest releases keep their SSM label (``latest:v<version>``); older ones are in the log only."""

SSM_MAX_VERSIONS = 100
"""SSM Parameter Store keeps this many versions of a parameter; it drops the oldest only if it has no label."""

RECORD_FILE = "release.json"
ROLLOUT_CLAIM_FILE = "rollout.json"
_LABEL_RE = re.compile(r"^v\d{4}\.\d{2}\.\d{2}-[1-9]\d*$")


class ReleaseLogError(ValueError):
    """A release record in S3 is not what publish writes (hand-edited or damaged)."""


def role_prefix(role: str) -> str:
    return f"images/{role}/"


def record_key(role: str, version: str) -> str:
    return f"{role_prefix(role)}{version}/{RECORD_FILE}"


def rollout_claim_key(role: str, version: str) -> str:
    return f"{role_prefix(role)}{version}/{ROLLOUT_CLAIM_FILE}"


def versions_in_keys(keys: Iterable[str], role: str) -> list[str]:
    """The versions that have a record among ``keys`` (an S3 listing under :func:`role_prefix`)."""
    prefix = role_prefix(role)
    out = []
    for key in keys:
        if not key.startswith(prefix) or not key.endswith("/" + RECORD_FILE):
            continue
        version = key[len(prefix) : -len(RECORD_FILE) - 1]
        if is_version(version):
            out.append(version)
    return out


def is_release_label(label: str) -> bool:
    """A label publish writes (``v2026.11.30-1``), as opposed to someone else's."""
    return bool(_LABEL_RE.match(label or ""))


@dataclass
class ReleaseRecord:
    """One release: which AMI each region's ``latest`` points at for this version, and how it got there."""

    role: str
    version: str
    amis: dict[str, str]
    home_region: str
    state: str = STAGED
    previous_version: str | None = None
    release_notes_uri: str | None = None
    staged_at: str | None = None
    staged_by: str | None = None
    published_at: str | None = None
    published_by: str | None = None
    #: per region, per parameter leaf (``latest``, ``latest-version``): what it held before this publish
    #: (``{"value", "version"}``), or None when it did not exist. What a rollback restores.
    pointers_before: dict[str, dict[str, dict[str, Any] | None]] = field(default_factory=dict)
    error: str | None = None
    #: ``publish``, or ``ssm-labels`` for a release published before the log existed (rebuilt from SSM labels)
    source: str = "publish"

    @property
    def regions(self) -> list[str]:
        return list(self.amis)

    @property
    def published(self) -> bool:
        return self.state == PUBLISHED

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, where: str = "release record") -> ReleaseRecord:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ReleaseLogError(f"{where} is not JSON ({e}). Fix: restore it from the bucket's versions") from None
        if not isinstance(data, Mapping):
            raise ReleaseLogError(f"{where} is not a JSON object. Fix: restore it from the bucket's versions")
        known = set(cls.__dataclass_fields__)
        missing = [k for k in ("role", "version", "amis", "home_region") if k not in data]
        if missing:
            raise ReleaseLogError(f"{where} lacks {missing}. Fix: restore it from the bucket's versions")
        amis = data["amis"]
        if not isinstance(amis, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) and v.startswith("ami-") for k, v in amis.items()
        ):
            raise ReleaseLogError(f"{where}: amis must map regions to AMI ids, got {amis!r}")
        state = data.get("state", STAGED)
        if state not in STATES:
            raise ReleaseLogError(f"{where}: state {state!r} is not one of {list(STATES)}")
        return cls(**{k: v for k, v in data.items() if k in known})


def labels_to_drop(
    history: Iterable[Mapping[str, Any]], keep: int, adding: int = 0
) -> list[tuple[int, list[str]]]:
    """Which release labels to remove from a parameter so that at most ``keep`` versions carry one.

    ``history`` is the parameter's GetParameterHistory (any order); ``adding`` is how many labelled versions the
    caller is about to add. Returns ``[(version_number, [labels])]``, oldest first. Only publish's own labels
    (``v<version>``) are ever dropped; :func:`limit_blocker` names a foreign label that would still block.
    """
    labelled = sorted(
        (
            (int(h["Version"]), [lab for lab in h.get("Labels") or [] if is_release_label(lab)])
            for h in history
        ),
        key=lambda x: x[0],
    )
    labelled = [(n, labs) for n, labs in labelled if labs]
    allowed = max(0, keep - adding)
    return labelled[: max(0, len(labelled) - allowed)]


def limit_blocker(history: Iterable[Mapping[str, Any]], dropping: Iterable[tuple[int, list[str]]] = ()) -> str | None:
    """Why the next PutParameter would fail with ``ParameterMaxVersionLimitExceeded``, or None.

    SSM drops the oldest version to make room for the 101st only if that version has no label; ``dropping`` are
    the labels about to be removed (:func:`labels_to_drop`).
    """
    entries = sorted(history, key=lambda h: int(h["Version"]))
    if len(entries) < SSM_MAX_VERSIONS:
        return None
    oldest = entries[0]
    gone = {lab for n, labs in dropping if n == int(oldest["Version"]) for lab in labs}
    left = [lab for lab in oldest.get("Labels") or [] if lab not in gone]
    if not left:
        return None
    return (
        f"{oldest.get('Name', 'the parameter')} has {len(entries)} versions and its oldest, version "
        f"{oldest['Version']}, carries the label(s) {left}: SSM cannot drop it, so the next PutParameter fails "
        "(ParameterMaxVersionLimitExceeded)"
    )


__all__ = [
    "PUBLISHED",
    "ROLLED_BACK",
    "SSM_LABELLED_RELEASES",
    "SSM_MAX_VERSIONS",
    "STAGED",
    "ReleaseLogError",
    "ReleaseRecord",
    "is_release_label",
    "labels_to_drop",
    "limit_blocker",
    "record_key",
    "role_prefix",
    "rollout_claim_key",
    "versions_in_keys",
]
