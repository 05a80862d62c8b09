"""Debian package version ordering (dpkg's algorithm), for release notes.

``[epoch:]upstream_version[-debian_revision]``; compared as dpkg does: epoch numerically, then the
upstream version and the revision with ``verrevcmp`` (``~`` sorts before anything, even the end).
"""

from __future__ import annotations

import functools
import re

_EPOCH_RE = re.compile(r"^(\d+):")


def split(version: str) -> tuple[int, str, str]:
    v = version.strip()
    epoch = 0
    m = _EPOCH_RE.match(v)
    if m:
        epoch, v = int(m.group(1)), v[m.end() :]
    upstream, sep, revision = v.rpartition("-")
    if not sep:
        upstream, revision = v, ""
    return epoch, upstream, revision


def _order(c: str) -> int:
    if c.isdigit():
        return 0
    if c.isalpha():
        return ord(c)
    if c == "~":
        return -1
    return ord(c) + 256


def _verrevcmp(a: str, b: str) -> int:
    i = j = 0
    while i < len(a) or j < len(b):
        first_diff = 0
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _order(a[i]) if i < len(a) else 0
            bc = _order(b[j]) if j < len(b) else 0
            if ac != bc:
                return ac - bc
            i += 1
            j += 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        while i < len(a) and a[i].isdigit() and j < len(b) and b[j].isdigit():
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if i < len(a) and a[i].isdigit():
            return 1
        if j < len(b) and b[j].isdigit():
            return -1
        if first_diff:
            return first_diff
    return 0


def compare(a: str, b: str) -> int:
    """<0, 0, >0 as dpkg --compare-versions a lt/eq/gt b."""
    ea, ua, ra = split(a)
    eb, ub, rb = split(b)
    if ea != eb:
        return ea - eb
    return _verrevcmp(ua, ub) or _verrevcmp(ra, rb)


sort_key = functools.cmp_to_key(compare)
