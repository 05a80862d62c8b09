"""Release notes: the package diff between two images' package lists.

A package list is what the Packer build writes with the artifact: one ``name<TAB>version`` per line
(``dpkg-query -W -f='${Package}\\t${Version}\\n'``). The diff says what a weekly security release is
for: what was upgraded (old -> new), added, removed, and (rarely, worth a look) downgraded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from phoenix_fleet.release.debversion import compare


class PackageListError(ValueError):
    pass


def parse_package_list(text: str, source: str = "package list") -> dict[str, str]:
    packages: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split("\t") if "\t" in line else line.split()
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise PackageListError(
                f"{source} line {lineno}: {raw!r} is not 'name<TAB>version'. "
                "Fix: write it with dpkg-query -W -f='${Package}\\t${Version}\\n'"
            )
        name, version = parts
        # multi-arch lists can name a package twice (name:arch); keep the highest version
        if name in packages and compare(packages[name], version) >= 0:
            continue
        packages[name] = version
    return packages


@dataclass(frozen=True)
class PackageDiff:
    upgraded: list[tuple[str, str, str]] = field(default_factory=list)  # (name, old, new)
    downgraded: list[tuple[str, str, str]] = field(default_factory=list)
    added: list[tuple[str, str]] = field(default_factory=list)
    removed: list[tuple[str, str]] = field(default_factory=list)
    unchanged: int = 0

    @property
    def changed(self) -> int:
        return len(self.upgraded) + len(self.downgraded) + len(self.added) + len(self.removed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "upgraded": [{"name": n, "old": o, "new": v} for n, o, v in self.upgraded],
            "downgraded": [{"name": n, "old": o, "new": v} for n, o, v in self.downgraded],
            "added": [{"name": n, "version": v} for n, v in self.added],
            "removed": [{"name": n, "version": v} for n, v in self.removed],
            "unchanged": self.unchanged,
        }

    def summary(self, limit: int = 20) -> dict[str, Any]:
        """A bounded summary for the asset event: counts plus at most `limit` entries per list."""
        d = self.to_dict()
        out: dict[str, Any] = {"counts": {k: len(v) for k, v in d.items() if isinstance(v, list)}}
        for k in ("upgraded", "downgraded", "added", "removed"):
            out[k] = d[k][:limit]
            if len(d[k]) > limit:
                out[f"{k}_truncated"] = len(d[k]) - limit
        return out

    def to_markdown(self, title: str) -> str:
        lines = [f"# {title}", ""]
        lines.append(
            f"{len(self.upgraded)} upgraded, {len(self.added)} added, {len(self.removed)} removed, "
            f"{len(self.downgraded)} downgraded, {self.unchanged} unchanged."
        )
        for head, rows in (
            ("Upgraded", [f"- {n}: {o} -> {v}" for n, o, v in self.upgraded]),
            ("Downgraded", [f"- {n}: {o} -> {v}" for n, o, v in self.downgraded]),
            ("Added", [f"- {n} {v}" for n, v in self.added]),
            ("Removed", [f"- {n} {v}" for n, v in self.removed]),
        ):
            if rows:
                lines += ["", f"## {head}", *rows]
        return "\n".join(lines) + "\n"


def diff_packages(old: dict[str, str], new: dict[str, str]) -> PackageDiff:
    d = PackageDiff()
    unchanged = 0
    for name in sorted(old.keys() | new.keys()):
        if name not in new:
            d.removed.append((name, old[name]))
        elif name not in old:
            d.added.append((name, new[name]))
        else:
            c = compare(new[name], old[name])
            if c > 0:
                d.upgraded.append((name, old[name], new[name]))
            elif c < 0:
                d.downgraded.append((name, old[name], new[name]))
            else:
                unchanged += 1
    return PackageDiff(d.upgraded, d.downgraded, d.added, d.removed, unchanged)
