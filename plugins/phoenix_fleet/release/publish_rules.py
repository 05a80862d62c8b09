"""Pure publish rules: may this AMI be published, under which version, and does the version collide?

No AWS calls: the operators describe images and read SSM history, and hand plain dicts and lists here.

* :func:`check_publishable` -- an AMI is published only when it is ours (``OwnerId`` is our account), verified
  (``phoenix:verified=true``), of this role (``phoenix:role``, when tagged) and ``available``.
* :func:`resolve_version` -- the explicit version (run params) wins, else the version bake tagged on the AMI,
  else the next free ``YYYY.MM.DD-N`` for today (one past every version already seen that day).
* :func:`find_conflicts` -- a version is immutable: another AMI already holding it (in the SSM release log or as
  a verified/published image of the role) is a conflict; the same AMI again is an idempotent re-publish.
* :func:`previous_version` -- the newest published version older than this one (release notes diff against it).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from phoenix_fleet.release.versions import Version, VersionError, is_version, latest, next_version

TAG_ROLE = "phoenix:role"
TAG_VERSION = "phoenix:version"
TAG_VERIFIED = "phoenix:verified"
TAG_MANAGED_BY = "phoenix:managed-by"
TAG_PUBLISHED_AT = "phoenix:published-at"
TAG_PUBLISHED_BY = "phoenix:published-by"
TAG_COPY_OF = "phoenix:copy-of"
TAG_SOURCE_REGION = "phoenix:source-region"
TAG_BAKE_VERSION = "phoenix:bake-version"
TAG_RELEASE_NOTES = "phoenix:release-notes"
MANAGED_BY = "phoenix-fleet"


class PublishRefusedError(ValueError):
    """The AMI must not be published (foreign, unverified, wrong role, not available)."""


class VersionConflictError(ValueError):
    """The version is already held by another AMI (versions are immutable)."""


def tag_map(resource: Mapping[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags") or []}


def check_publishable(image: Mapping[str, Any], account_id: str, role: str) -> list[str]:
    """Every reason ``image`` (a DescribeImages entry) must not be published as ``role``; empty when it may."""
    ami = image.get("ImageId", "?")
    tags = tag_map(image)
    problems: list[str] = []
    owner = image.get("OwnerId")
    if owner != account_id:
        problems.append(
            f"{ami} is owned by {owner!r}, not by this account ({account_id}). Fix: publish only AMIs this "
            "account baked; never a shared or marketplace image"
        )
    verified = tags.get(TAG_VERIFIED)
    if verified != "true":
        reason = tags.get("phoenix:verified-reason")
        problems.append(
            f"{ami} is not verified ({TAG_VERIFIED}={verified!r}"
            + (f", reason: {reason}" if reason else "")
            + "). Fix: run verify on it (it tags phoenix:verified=true) or bake a new image"
        )
    tagged_role = tags.get(TAG_ROLE)
    if tagged_role is not None and tagged_role != role:
        problems.append(
            f"{ami} is an image of role {tagged_role!r} ({TAG_ROLE}), not {role!r}. Fix: publish it for its own role"
        )
    state = image.get("State")
    if state != "available":
        problems.append(f"{ami} is {state!r}, not 'available'. Fix: wait for the image (or re-bake a failed one)")
    return problems


def refuse_unless_publishable(image: Mapping[str, Any], account_id: str, role: str) -> None:
    problems = check_publishable(image, account_id, role)
    if problems:
        raise PublishRefusedError("refusing to publish: " + "; ".join(problems))


@dataclass(frozen=True)
class ResolvedVersion:
    version: Version
    source: str  # "params", "image tag" or "next free"


def resolve_version(
    explicit: str | None,
    tagged: str | None,
    existing: Iterable[str],
    today: dt.date,
    field: str = "params.version",
) -> ResolvedVersion:
    """The release version: explicit (validated) > the AMI's ``phoenix:version`` (if valid) > next free today."""
    if explicit not in (None, "", "None"):
        return ResolvedVersion(Version.parse(str(explicit), field=field), "params")
    if tagged and is_version(tagged):
        return ResolvedVersion(Version.parse(tagged), "image tag")
    return ResolvedVersion(next_version(existing, today), "next free")


@dataclass(frozen=True)
class Claim:
    """Evidence that ``ami_id`` holds a version: where it was seen (for the error message)."""

    ami_id: str
    where: str
    published: bool  # in the release log (SSM), not only a tagged image


def image_claims(images: Iterable[Mapping[str, Any]], version: str, ami_id: str) -> list[Claim]:
    """Claims from the role's images (DescribeImages entries): verified or published images tagged ``version``.

    A copy of ``ami_id`` (tagged ``phoenix:copy-of``) is not a rival. Unverified, failed or deregistered images
    never became a release and claim nothing.
    """
    out: list[Claim] = []
    for image in images:
        tags = tag_map(image)
        if tags.get(TAG_VERSION) != version or image.get("ImageId") == ami_id:
            continue
        if tags.get(TAG_COPY_OF) == ami_id:
            continue
        if image.get("State") in ("failed", "deregistered", "invalid", "error"):
            continue
        published = TAG_PUBLISHED_AT in tags
        if published or tags.get(TAG_VERIFIED) == "true":
            what = "published" if published else "verified"
            out.append(Claim(image["ImageId"], f"{what} image {image['ImageId']} tagged {TAG_VERSION}={version}", published))
    return out


def parameter_claims(
    history: Iterable[Mapping[str, Any]], label: str, parameter: str
) -> list[Claim]:
    """Claims from the SSM release log: every version of ``parameter`` labelled ``label`` (its value is the AMI)."""
    return [
        Claim(str(h["Value"]), f"SSM {parameter} version {h.get('Version')} (label {label})", True)
        for h in history
        if label in (h.get("Labels") or [])
    ]


def find_conflicts(claims: Iterable[Claim], ami_id: str) -> list[Claim]:
    return [c for c in claims if c.ami_id != ami_id]


def raise_on_conflicts(version: str, ami_id: str, claims: Iterable[Claim]) -> None:
    conflicts = find_conflicts(claims, ami_id)
    if conflicts:
        where = "; ".join(c.where for c in conflicts)
        raise VersionConflictError(
            f"version {version} is already taken by another AMI ({where}); refusing to publish {ami_id} under it. "
            "Versions are immutable. Fix: omit params.version to get the next free version, or give a new one"
        )


def previous_version(published: Iterable[str], version: Version) -> str | None:
    """The newest published version strictly older than ``version`` (None for a first release)."""
    older = [v for v in published if is_version(v) and Version.parse(v) < version]
    found = latest(older)
    return str(found) if found else None


def check_not_backwards(current_latest: str | None, version: Version) -> None:
    """Refuse to move "latest" to an older version than the one it names now (the same version is a re-publish)."""
    if not current_latest or not is_version(current_latest):
        return
    current = Version.parse(current_latest)
    if version < current:
        raise VersionConflictError(
            f"version {version} is older than the latest published version {current}; publishing it would move "
            "the latest pointer backwards. Fix: omit params.version to get the next free version (going back to "
            "an older image is a rollback: run the rollout toward that version instead)"
        )


CLIENT_TOKEN_MAX = 64  # EC2's limit for ClientToken


def copy_client_token(ami_id: str, dest_region: str, failed_copies: Iterable[str] = ()) -> str:
    """The ``CopyImage`` idempotency token for copying ``ami_id`` to ``dest_region``.

    The same inputs give the same token: a retry whose first answer was lost gets the copy already started
    (AWS answers a repeated token with the image the first call made). After a failed copy the token must
    change, or AWS answers with the failed copy again, even after it is deregistered: the failed copies' ids
    (what the retry deregistered) go into it. At most 64 characters (a digest past that).
    """
    import hashlib

    token = f"phoenix-{ami_id}-{dest_region}"
    failed = sorted(set(failed_copies))
    if len(failed) == 1:
        token += "-" + failed[0].removeprefix("ami-")
    elif failed:
        token += "-" + hashlib.sha256("|".join(failed).encode()).hexdigest()[:17]
    if len(token) > CLIENT_TOKEN_MAX:
        token = "phoenix-" + hashlib.sha256(token.encode()).hexdigest()[: CLIENT_TOKEN_MAX - len("phoenix-")]
    return token


def parse_bool(value: Any, field: str) -> bool:
    """A boolean from an operator argument that may have been rendered by Jinja into a string."""
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off", "", "none"):
        return False
    raise ValueError(f"{field}: {value!r} is not a boolean. Fix: use true or false")


__all__ = [
    "Claim",
    "PublishRefusedError",
    "ResolvedVersion",
    "VersionConflictError",
    "VersionError",
    "check_not_backwards",
    "check_publishable",
    "copy_client_token",
    "find_conflicts",
    "image_claims",
    "parameter_claims",
    "parse_bool",
    "previous_version",
    "raise_on_conflicts",
    "refuse_unless_publishable",
    "resolve_version",
    "tag_map",
]
