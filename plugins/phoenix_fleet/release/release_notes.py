"""Release notes of a published image: the package diff against the previous version, as Markdown and JSON.

Where things live in the artifacts bucket (bake uploads the package list, publish writes the notes)::

    images/<role>/<version>/packages-<role>-<version>.tsv     name<TAB>version per line (bake)
    images/<role>/<version>/release-notes.md                  (publish)
    images/<role>/<version>/release-notes.json                (publish)

A missing package list never fails a publish: the notes say what is missing and carry no diff.

The operator's notes (the release form's ``release_notes``, at most ``form_params.NOTES_MAX`` characters) are part
of them: whole in the Markdown and the JSON; :func:`clip_notes` cuts them to ``OPERATOR_NOTES_SUMMARY_MAX``
characters where space is bounded (the asset event's extra, XCom, the SSM release log entry).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from phoenix_fleet.release.package_diff import (
    PackageDiff,
    PackageListError,
    diff_packages,
    parse_package_list,
)

SUMMARY_LIMIT = 10
"""Entries per list (upgraded, added, removed, downgraded) in the bounded summary of the asset event."""
OPERATOR_NOTES_SUMMARY_MAX = 1000
"""Characters of the operator's notes in the bounded summary (the release notes in S3 keep them whole)."""


def clip_notes(text: str | None, limit: int = OPERATOR_NOTES_SUMMARY_MAX) -> str:
    """``text`` stripped, cut to ``limit`` characters with a marker saying where the whole text is."""
    text = (text or "").strip()
    if len(text) <= limit:
        return text
    marker = f" [... {len(text) - limit} more characters in the release notes in S3]"
    return text[: max(limit - len(marker), 0)].rstrip() + marker


def image_prefix(role: str, version: str) -> str:
    return f"images/{role}/{version}/"


def package_list_key(role: str, version: str) -> str:
    return f"{image_prefix(role, version)}packages-{role}-{version}.tsv"


def release_notes_keys(role: str, version: str) -> tuple[str, str]:
    """(Markdown key, JSON key) of the release notes."""
    return f"{image_prefix(role, version)}release-notes.md", f"{image_prefix(role, version)}release-notes.json"


@dataclass(frozen=True)
class PackageListSource:
    """One package list as found (or not) in S3: ``text`` is None when the object does not exist."""

    uri: str
    text: str | None


@dataclass
class ReleaseNotes:
    role: str
    version: str
    ami_id: str
    previous_version: str | None
    diff: PackageDiff | None
    notes: list[str] = field(default_factory=list)  # what is missing or odd, in words
    package_count: int | None = None
    previous_package_count: int | None = None
    package_list_uri: str | None = None
    previous_package_list_uri: str | None = None
    operator_notes: str = ""  # what the operator wrote in the release form (plain text, verbatim)

    @property
    def title(self) -> str:
        prev = f" (since {self.previous_version})" if self.previous_version else ""
        return f"{self.role} {self.version}{prev}"

    def summary(self, limit: int = SUMMARY_LIMIT) -> dict[str, Any]:
        """Bounded: counts, at most ``limit`` entries per list, and the notes (for the asset event extra)."""
        out: dict[str, Any] = {
            "version": self.version,
            "previous_version": self.previous_version,
            "packages": self.package_count,
            "notes": self.notes[:5],
        }
        if self.diff is not None:
            out.update(self.diff.summary(limit))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "version": self.version,
            "ami_id": self.ami_id,
            "previous_version": self.previous_version,
            "package_list": self.package_list_uri,
            "previous_package_list": self.previous_package_list_uri,
            "packages": self.package_count,
            "previous_packages": self.previous_package_count,
            "notes": list(self.notes),
            "operator_notes": self.operator_notes,
            "diff": self.diff.to_dict() if self.diff is not None else None,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def to_markdown(self) -> str:
        head = [f"Image: `{self.ami_id}`."]
        if self.package_list_uri:
            head.append(f"Package list: `{self.package_list_uri}`.")
        if self.previous_package_list_uri:
            head.append(f"Previous package list: `{self.previous_package_list_uri}`.")
        lines = [f"# Release notes: {self.title}", "", *head]
        if self.package_count is not None:
            lines.append(f"{self.package_count} packages.")
        if self.operator_notes:
            # verbatim, as a fenced block: operator text, never read as Markdown (or anything else)
            fence = "~" * max([3, *(len(run) + 1 for run in re.findall(r"~+", self.operator_notes))])
            lines += ["", "## Operator's notes", "", fence, self.operator_notes, fence]
        if self.notes:
            lines += ["", *(f"> {n}" for n in self.notes)]
        if self.diff is not None:
            # the diff's own Markdown without its title line
            body = self.diff.to_markdown("-").split("\n", 1)[1].strip("\n")
            lines += ["", body]
        return "\n".join(lines) + "\n"


def build_release_notes(
    role: str,
    version: str,
    ami_id: str,
    previous_version: str | None,
    current: PackageListSource,
    previous: PackageListSource | None,
    operator_notes: str | None = None,
) -> ReleaseNotes:
    """The notes from the two package lists (either may be missing or unreadable: then they say so), with the
    operator's notes."""
    notes = ReleaseNotes(role, version, ami_id, previous_version, None, package_list_uri=current.uri,
                         operator_notes=(operator_notes or "").strip())
    new = _parse(current, "this image's package list", notes)
    if new is not None:
        notes.package_count = len(new)
    if previous_version is None:
        notes.notes.append("First release of this role: there is no previous version to compare with.")
        return notes
    if previous is None:
        notes.notes.append(f"No package list was looked up for the previous version {previous_version}.")
        return notes
    notes.previous_package_list_uri = previous.uri
    old = _parse(previous, f"the package list of the previous version {previous_version}", notes)
    if old is not None:
        notes.previous_package_count = len(old)
    if new is not None and old is not None:
        notes.diff = diff_packages(old, new)
    return notes


def _parse(source: PackageListSource, what: str, notes: ReleaseNotes) -> dict[str, str] | None:
    if source.text is None:
        notes.notes.append(f"Missing: {what} ({source.uri}) does not exist, so there is no package diff.")
        return None
    try:
        return parse_package_list(source.text, source=source.uri)
    except PackageListError as e:
        notes.notes.append(f"Unreadable: {what}: {e}")
        return None
