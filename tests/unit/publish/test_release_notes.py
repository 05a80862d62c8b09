"""Release notes from crafted package lists: epochs, tildes, removed and added packages, missing lists."""

from __future__ import annotations

import json

from phoenix_fleet.release.package_diff import diff_packages, parse_package_list
from phoenix_fleet.release.release_notes import (
    PackageListSource,
    build_release_notes,
    package_list_key,
    release_notes_keys,
)

OLD = """\
# web 2026.11.23-1
openssl\t3.0.11-1~deb12u1
libc6\t2.36-9+deb12u3
vim-tiny\t2:9.0.1378-2
tzdata\t2024a-0+deb12u1
telnet\t0.17+2.4-2
libfoo1:amd64\t1.0-1
libfoo1:i386\t1.0-1
python3-bar\t1:2.0-1
"""
NEW = """\
openssl\t3.0.15-1~deb12u1
libc6\t2.36-9+deb12u9
vim-tiny\t2:9.0.1378-2+deb12u2
tzdata\t2024a-0+deb12u1
libfoo1:amd64\t1.0-1
libfoo1:i386\t1.0-1
python3-bar\t3.0-1
unattended-upgrades\t2.9.1+nmu3
"""


def test_keys():
    assert package_list_key("web", "2026.11.30-1") == "images/web/2026.11.30-1/packages-web-2026.11.30-1.tsv"
    assert release_notes_keys("web", "2026.11.30-1") == (
        "images/web/2026.11.30-1/release-notes.md",
        "images/web/2026.11.30-1/release-notes.json",
    )


def test_epochs_tildes_removed_added():
    d = diff_packages(parse_package_list(OLD), parse_package_list(NEW))
    assert d.upgraded == [
        ("libc6", "2.36-9+deb12u3", "2.36-9+deb12u9"),
        ("openssl", "3.0.11-1~deb12u1", "3.0.15-1~deb12u1"),
        ("vim-tiny", "2:9.0.1378-2", "2:9.0.1378-2+deb12u2"),
    ]
    # an epoch outranks any upstream version: 1:2.0-1 -> 3.0-1 is a downgrade, and said so
    assert d.downgraded == [("python3-bar", "1:2.0-1", "3.0-1")]
    assert d.removed == [("telnet", "0.17+2.4-2")]
    assert d.added == [("unattended-upgrades", "2.9.1+nmu3")]
    assert d.unchanged == 3  # tzdata and both multi-arch libfoo1 entries


def test_notes_with_a_diff():
    notes = build_release_notes(
        "web",
        "2026.11.30-1",
        "ami-new",
        "2026.11.23-1",
        PackageListSource("s3://b/new.tsv", NEW),
        PackageListSource("s3://b/old.tsv", OLD),
    )
    md = notes.to_markdown()
    assert md.startswith("# Release notes: web 2026.11.30-1 (since 2026.11.23-1)\n")
    assert "3 upgraded, 1 added, 1 removed, 1 downgraded, 3 unchanged." in md
    assert "- vim-tiny: 2:9.0.1378-2 -> 2:9.0.1378-2+deb12u2" in md
    assert "## Removed\n- telnet 0.17+2.4-2" in md
    assert "## Downgraded\n- python3-bar: 1:2.0-1 -> 3.0-1" in md
    data = json.loads(notes.to_json())
    assert data["packages"] == 8 and data["previous_packages"] == 8
    assert data["diff"]["removed"] == [{"name": "telnet", "version": "0.17+2.4-2"}]
    s = notes.summary(limit=2)
    assert s["counts"] == {"upgraded": 3, "downgraded": 1, "added": 1, "removed": 1}
    assert len(s["upgraded"]) == 2 and s["upgraded_truncated"] == 1
    assert s["previous_version"] == "2026.11.23-1" and s["notes"] == []


def test_missing_previous_list_is_said_not_fatal():
    notes = build_release_notes(
        "web", "2026.11.30-1", "ami-new", "2026.11.23-1",
        PackageListSource("s3://b/new.tsv", NEW), PackageListSource("s3://b/old.tsv", None),
    )
    assert notes.diff is None and notes.package_count == 8
    assert "Missing: the package list of the previous version 2026.11.23-1 (s3://b/old.tsv) does not exist" in notes.notes[0]
    assert "> Missing:" in notes.to_markdown()
    assert notes.summary()["notes"] == notes.notes


def test_missing_current_list_and_first_release():
    notes = build_release_notes("web", "2026.11.30-1", "ami-new", None, PackageListSource("s3://b/new.tsv", None), None)
    assert notes.diff is None and notes.package_count is None
    assert any("this image's package list" in n for n in notes.notes)
    assert any("First release" in n for n in notes.notes)


def test_unreadable_list_is_reported():
    notes = build_release_notes(
        "web", "2026.11.30-1", "ami", "2026.11.23-1",
        PackageListSource("s3://b/new.tsv", "openssl 3.0 extra-column\n"), PackageListSource("s3://b/old.tsv", OLD),
    )
    assert notes.diff is None and "Unreadable" in notes.notes[0] and "line 1" in notes.notes[0]
