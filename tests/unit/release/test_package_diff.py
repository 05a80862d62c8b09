"""Release notes: Debian version ordering (checked against dpkg itself) and the package diff."""

import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phoenix_fleet.release.debversion import compare, split
from phoenix_fleet.release.package_diff import PackageListError, diff_packages, parse_package_list


@pytest.mark.parametrize(
    ("a", "b", "sign"),
    [
        ("1.0", "1.0", 0),
        ("1.0-1", "1.0-2", -1),
        ("1:1.0", "2.0", 1),  # epoch wins
        ("1.0~rc1", "1.0", -1),  # tilde sorts before the end
        ("1.0~~", "1.0~", -1),
        ("1.0a", "1.0", 1),
        ("1.0+deb12u1", "1.0", 1),
        ("3.0.11-1~deb12u2", "3.0.11-1", -1),
        ("2:9.0.1378-2+deb12u2", "2:9.0.1378-2", 1),
        ("1.10", "1.9", 1),
        ("1.001", "1.1", 0),
        ("0:1.0", "1.0", 0),
    ],
)
def test_compare_known_cases(a, b, sign):
    c = compare(a, b)
    assert (c > 0) - (c < 0) == sign


def test_split():
    assert split("2:9.0.1378-2+deb12u2") == (2, "9.0.1378", "2+deb12u2")
    assert split("1.2-3-4") == (0, "1.2-3", "4")
    assert split("5.1") == (0, "5.1", "")


_version = st.from_regex(r"\A([0-9]:)?[0-9][0-9a-z.+~]{0,6}(-[0-9a-z.+~]{1,4})?\Z")


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="dpkg is the oracle; Debian hosts and CI have it")
@settings(max_examples=150, deadline=None)
@given(_version, _version)
def test_compare_agrees_with_dpkg(a, b):
    lt = subprocess.run(["dpkg", "--compare-versions", a, "lt", b]).returncode == 0
    eq = subprocess.run(["dpkg", "--compare-versions", a, "eq", b]).returncode == 0
    c = compare(a, b)
    assert (c < 0) == lt and (c == 0) == eq, (a, b, c)


OLD = """\
# package list of web 2026.11.23-1
openssl\t3.0.11-1~deb12u1
libssl3\t3.0.11-1~deb12u1
nginx\t1.22.1-9
vim-tiny\t2:9.0.1378-2
tzdata\t2024a-0+deb12u1
telnet\t0.17+2.4-2
"""
NEW = """\
openssl\t3.0.15-1~deb12u1
libssl3\t3.0.15-1~deb12u1
nginx\t1.22.1-9+deb12u1
vim-tiny\t2:9.0.1378-2+deb12u2
tzdata\t2024a-0+deb12u1
unattended-upgrades\t2.9.1+nmu3
"""


def test_crafted_diff_with_epochs_and_removed():
    d = diff_packages(parse_package_list(OLD), parse_package_list(NEW))
    assert d.upgraded == [
        ("libssl3", "3.0.11-1~deb12u1", "3.0.15-1~deb12u1"),
        ("nginx", "1.22.1-9", "1.22.1-9+deb12u1"),
        ("openssl", "3.0.11-1~deb12u1", "3.0.15-1~deb12u1"),
        ("vim-tiny", "2:9.0.1378-2", "2:9.0.1378-2+deb12u2"),
    ]
    assert d.added == [("unattended-upgrades", "2.9.1+nmu3")]
    assert d.removed == [("telnet", "0.17+2.4-2")]
    assert d.downgraded == []
    assert d.unchanged == 1
    md = d.to_markdown("web 2026.11.30-1")
    assert "- openssl: 3.0.11-1~deb12u1 -> 3.0.15-1~deb12u1" in md and "## Removed\n- telnet" in md


def test_epoch_bump_is_an_upgrade_even_if_upstream_looks_older():
    d = diff_packages({"foo": "2.0-1"}, {"foo": "1:1.0-1"})
    assert d.upgraded == [("foo", "2.0-1", "1:1.0-1")]


def test_downgrade_is_reported():
    d = diff_packages({"foo": "1.1"}, {"foo": "1.0"})
    assert d.downgraded == [("foo", "1.1", "1.0")] and not d.upgraded


def test_summary_is_bounded():
    old = {f"p{i}": "1.0" for i in range(100)}
    new = {f"p{i}": "1.1" for i in range(100)}
    s = diff_packages(old, new).summary(limit=5)
    assert s["counts"]["upgraded"] == 100
    assert len(s["upgraded"]) == 5 and s["upgraded_truncated"] == 95


def test_bad_line_names_line_and_fix():
    with pytest.raises(PackageListError, match=r"packages.tsv line 2: .* Fix: write it with dpkg-query"):
        parse_package_list("a\t1\nbroken-line-without-version\n", "packages.tsv")


def test_multiarch_duplicates_keep_highest():
    assert parse_package_list("libc6\t2.36-9\nlibc6\t2.36-9+deb12u4\nlibc6\t2.36-9\n") == {"libc6": "2.36-9+deb12u4"}
