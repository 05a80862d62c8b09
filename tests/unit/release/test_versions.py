import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st
from phoenix_fleet.release.versions import Version, VersionError, latest, next_version, versions_behind

D = dt.date(2026, 11, 30)


def test_parse_and_format_round_trip():
    v = Version.parse("2026.11.30-12")
    assert (v.date, v.n) == (D, 12)
    assert str(v) == "2026.11.30-12"
    assert v.label == "v2026.11.30-12"


@pytest.mark.parametrize("bad", ["", "2026.11.30", "2026-11-30-1", "2026.13.01-1", "2026.02.30-1", "2026.11.30-0", "v2026.11.30-1"])
def test_bad_versions_name_field_and_fix(bad):
    with pytest.raises(VersionError, match=r"params.version: .* Fix: use YYYY.MM.DD-N"):
        Version.parse(bad, field="params.version")


def test_numeric_not_lexical_order():
    assert Version.parse("2026.11.30-10") > Version.parse("2026.11.30-9")
    assert Version.parse("2026.12.01-1") > Version.parse("2026.11.30-99")


def test_next_version_grows_within_a_day_and_restarts_next_day():
    assert str(next_version([], D)) == "2026.11.30-1"
    existing = ["2026.11.30-1", "2026.11.30-2", "2026.11.29-7", "garbage", "2026.11.30-9"]
    assert str(next_version(existing, D)) == "2026.11.30-10"
    assert str(next_version(existing, D + dt.timedelta(days=1))) == "2026.12.01-1"


@given(st.lists(st.integers(min_value=1, max_value=500), max_size=30))
def test_next_version_never_repeats(ns):
    existing = [f"2026.11.30-{n}" for n in ns]
    new = next_version(existing, D)
    assert str(new) not in existing
    assert all(new > Version.parse(e) for e in existing)


def test_latest_and_versions_behind():
    vs = ["2026.11.16-1", "2026.11.23-1", "2026.11.30-1", "2026.11.30-2"]
    assert str(latest(vs)) == "2026.11.30-2"
    assert versions_behind("2026.11.23-1", vs) == 2
    assert versions_behind("2026.11.30-2", vs) == 0
    assert versions_behind("not-ours", vs) is None
    assert latest([]) is None
