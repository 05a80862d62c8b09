"""The release version scheme: ``YYYY.MM.DD-N``.

N starts at 1 and grows within a day. A version is immutable: once published it is never reassigned
to another AMI. Versions sort by date, then N (``2026.11.30-10`` after ``2026.11.30-9``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass

VERSION_RE = re.compile(r"^(?P<y>\d{4})\.(?P<m>\d{2})\.(?P<d>\d{2})-(?P<n>[1-9]\d{0,3})$")


class VersionError(ValueError):
    pass


@dataclass(frozen=True, order=True)
class Version:
    date: dt.date
    n: int

    @classmethod
    def parse(cls, text: str, field: str = "version") -> Version:
        m = VERSION_RE.match(text or "")
        if not m:
            raise VersionError(
                f"{field}: {text!r} is not a release version. Fix: use YYYY.MM.DD-N, e.g. 2026.11.30-1"
            )
        try:
            day = dt.date(int(m["y"]), int(m["m"]), int(m["d"]))
        except ValueError:
            raise VersionError(f"{field}: {text!r} is not a real date. Fix: use YYYY.MM.DD-N") from None
        return cls(day, int(m["n"]))

    def __str__(self) -> str:
        return f"{self.date:%Y.%m.%d}-{self.n}"

    @property
    def label(self) -> str:
        """An SSM parameter label for this version (labels allow letters, digits, '.', '-', '_')."""
        return f"v{self}"


def is_version(text: str) -> bool:
    return bool(VERSION_RE.match(text or ""))


def next_version(existing: Iterable[str], today: dt.date) -> Version:
    """The next free version for `today`: one past the highest N already used that day.

    Unparseable entries in `existing` (foreign tags) are ignored.
    """
    used = [v.n for v in (_try(e) for e in existing) if v is not None and v.date == today]
    return Version(today, max(used, default=0) + 1)


def _try(text: str) -> Version | None:
    try:
        return Version.parse(text)
    except VersionError:
        return None


def latest(versions: Iterable[str]) -> Version | None:
    parsed = [v for v in (_try(e) for e in versions) if v is not None]
    return max(parsed, default=None)


def versions_behind(running: str | None, all_versions: Iterable[str]) -> int | None:
    """How many published versions are newer than `running` (None if `running` is not a version)."""
    r = _try(running or "")
    if r is None:
        return None
    return sum(1 for v in {_try(e) for e in all_versions} if v is not None and v > r)
