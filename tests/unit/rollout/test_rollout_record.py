"""The rollout record: tags round-trip, AWS tag limits, malformed tags, phase transitions."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from phoenix_fleet.rollout import FAILED, ROLLBACK, TAG_PREFIX, Policy, RecordError, RolloutRecord
from phoenix_fleet.rollout.rollout_record import MAX_KEY, MAX_VALUE, clean_text
from rollout_builders import old_fleet, record
from rollout_settings import rollout_settings
from rollout_sim import NEW, OLD, T0

SAFE = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 +-=._:/@"


def _rec(**kw: object) -> RolloutRecord:
    policy = Policy()
    return record(old_fleet(4), policy, **kw)


def test_tags_round_trip_and_read_well() -> None:
    rec = _rec(reason="alarm web-5xx in ALARM (x; y)", soak_from=T0 + timedelta(seconds=90), baseline=5)
    tags = rec.to_tags()
    assert tags[TAG_PREFIX + "id"] == "r-1"
    assert tags["phoenix:rollout:original"] == "desired=4 min=4 max=4"
    assert tags["phoenix:rollout:started"] == "2026-11-30T10:00:00Z"
    assert tags["phoenix:rollout:suspended"] == "AZRebalance AlarmNotification ScheduledActions"
    assert tags["phoenix:rollout:target-lt"] == "lt-0123456789abcdef0:8"
    assert RolloutRecord.from_tags(tags) == rec
    # the DescribeAutoScalingGroups form, with other tags around
    aws = [{"Key": k, "Value": v, "PropagateAtLaunch": False} for k, v in tags.items()]
    aws.append({"Key": "Name", "Value": "web", "PropagateAtLaunch": True})
    assert RolloutRecord.from_tags(aws) == rec
    assert set(tags) <= set(RolloutRecord.tag_keys())


def test_no_record_without_the_id_tag() -> None:
    assert RolloutRecord.from_tags({"Name": "web"}) is None
    assert RolloutRecord.from_tags([]) is None


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("original", "4/4/4", "desired=N min=N max=N"),
        ("started", "yesterday", "UTC time"),
        ("phase", "sideways", "phase"),
        ("baseline", "many", "malformed"),
        ("schema", "2", "schema"),
        ("target-lt", "lt-0abc:$Latest", "explicit version"),
        ("az-moves", "two", "phoenix:rollout:az-moves=.two. is not a count"),
    ],
)
def test_malformed_tags_are_refused_with_the_key(key: str, value: str, message: str) -> None:
    tags = _rec().to_tags()
    tags[TAG_PREFIX + key] = value
    with pytest.raises(RecordError, match=message.replace("$", r"\$")):
        RolloutRecord.from_tags(tags)


def test_missing_tag_is_named() -> None:
    tags = _rec().to_tags()
    del tags["phoenix:rollout:target"]
    with pytest.raises(RecordError, match="phoenix:rollout:target is missing"):
        RolloutRecord.from_tags(tags)


def test_launch_template_versions_must_be_explicit() -> None:
    for bad in ("lt-0abc:$Latest", "lt-0abc:$Default", "lt-0abc"):
        with pytest.raises(ValueError, match="explicit version"):
            _rec(previous_lt=bad)
    assert _rec(previous_lt="web-template:12").previous_lt == "web-template:12"


def test_free_text_is_cleaned_and_bounded() -> None:
    rec = _rec(reason="x" * 1000 + "\n\tmore", target_label="2026.11.30-1 (hotfix)\u00e9")
    tags = rec.to_tags()
    assert len(tags["phoenix:rollout:reason"]) == MAX_VALUE and tags["phoenix:rollout:reason"].endswith("...")
    assert tags["phoenix:rollout:target-label"] == "2026.11.30-1 (hotfix)"
    assert RolloutRecord.from_tags(tags) == rec
    assert clean_text("a\nb\x00c") == "a b c"


def test_identifiers_with_unsafe_characters_are_refused() -> None:
    with pytest.raises(ValueError, match="rollout_id"):
        _rec(rollout_id="run#1")
    with pytest.raises(ValueError, match="target_image"):
        _rec(target_image="ami-1" + "x" * 300)


def test_times_are_utc_seconds() -> None:
    rec = _rec(started_at=datetime(2026, 11, 30, 11, 0, 0, 123456, tzinfo=UTC).astimezone())
    assert rec.started_at == datetime(2026, 11, 30, 11, 0, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="timezone-aware"):
        _rec(started_at=datetime(2026, 11, 30))


def test_begin_snapshots_capacity_and_only_the_processes_it_suspends() -> None:
    state = old_fleet(6, min_size=2, max_size=10, suspended_processes=frozenset({"AZRebalance"}))
    policy = Policy(suspend_processes=("AZRebalance", "ScheduledActions"))
    rec = RolloutRecord.begin("r-9", state, policy, target_image=NEW, previous_image=OLD)
    assert (rec.original_desired, rec.original_min, rec.original_max, rec.base) == (6, 2, 10, 6)
    assert rec.suspended == ("ScheduledActions",)  # a human suspended AZRebalance: never ours to resume
    assert rec.phase == "forward" and rec.started_at == rec.phase_started_at == T0


def test_rollback_swaps_target_and_previous_and_restarts_the_deadline() -> None:
    rec = _rec()
    later = T0 + timedelta(minutes=30)
    back = rec.for_rollback(later, "i-1 unhealthy")
    assert back.phase == ROLLBACK and back.phase_started_at == later and back.started_at == T0
    assert (back.target_image, back.previous_image) == (OLD, NEW)
    assert (back.target_lt, back.previous_lt) == (rec.previous_lt, rec.target_lt)
    assert (back.target_label, back.previous_label) == (rec.previous_label, rec.target_label)
    assert back.deadline(Policy(deadline_minutes=60)) == later + timedelta(minutes=60)
    with pytest.raises(ValueError, match="no previous image"):
        _rec(previous_image=None).for_rollback(later, "x")
    halted = back.halted(later, "rollback-failed: i-2 impaired")
    assert halted.phase == FAILED and halted.reason == "rollback-failed: i-2 impaired"


def test_renewal_cutoff_round_trips_and_judges_instances() -> None:
    cutoff = T0 - timedelta(days=14)
    rec = _rec(previous_image=None, previous_lt=None, replace_before=cutoff)
    tags = rec.to_tags()
    assert tags["phoenix:rollout:replace-before"] == "2026-11-16T10:00:00Z"
    assert RolloutRecord.from_tags(tags) == rec
    assert not rec.is_current(NEW, cutoff - timedelta(seconds=1))  # on the target but too old
    assert rec.is_current(NEW, cutoff) and rec.is_current(NEW, T0)
    assert not rec.is_current(OLD, T0)  # another image is never current
    assert _rec().is_current(NEW, cutoff - timedelta(days=300))  # no cutoff: the image alone decides
    # a cutoff after the start would make the rollout's own launches outdated: it could never end
    with pytest.raises(ValueError, match="replace_before must not be later than started_at"):
        _rec(replace_before=T0 + timedelta(seconds=1))
    # the rollback undoes the image change only: back on the previous image, however old
    assert _rec(replace_before=cutoff).for_rollback(T0, "x").replace_before is None


def test_the_record_keeps_what_the_rollout_wrote_its_policy_and_its_token() -> None:
    state = old_fleet(4)
    policy = Policy(strategy="replace", batch_percent=25, min_healthy_percent=75, max_surge=0)
    rec = RolloutRecord.begin("r-9", state, policy, target_image=NEW, previous_image=OLD, token="0f" * 16)
    tags = rec.to_tags()
    assert tags["phoenix:rollout:desired"] == "4"
    assert tags["phoenix:rollout:policy"] == (
        "strategy=replace batch=25pct max-surge=0 min-healthy=75 deadline=60 on-failure=rollback")
    assert tags["phoenix:rollout:token"] == "0f" * 16
    assert RolloutRecord.from_tags(tags) == rec
    writing = rec.writing(4, 6)
    assert writing.to_tags()["phoenix:rollout:desired"] == "4 to 6"
    assert RolloutRecord.from_tags(writing.to_tags()) == writing
    stepwise = rec.writing(6, 4, stepwise=True)
    assert stepwise.to_tags()["phoenix:rollout:desired"] == "6 to 4 stepwise"
    assert RolloutRecord.from_tags(stepwise.to_tags()) == stepwise
    # the recorded core wins over a changed config; other fields (warmup, signals) follow the config
    changed = Policy(strategy="surge", batch_size=9, max_surge=3, warmup_seconds=5)
    assert rec.policy_for(changed) == replace(changed, strategy="replace", batch_size=None, batch_percent=25,
                                              max_surge=0, min_healthy_percent=75)
    assert replace(rec, policy=None).policy_for(changed) == changed  # a record of an older version
    for key, value, message in [("desired", "4..6", "'4 to 6'"), ("policy", "strategy=surge", "lacks"),
                                ("token", "a b$", "token")]:
        bad = dict(tags)
        bad[TAG_PREFIX + key] = value
        with pytest.raises(RecordError, match=message):
            RolloutRecord.from_tags(bad)


def test_the_terminal_outcome_marker_names_its_rollout() -> None:
    from phoenix_fleet.rollout import ENDED_TAG, ended_outcome, ended_value

    tags = {ENDED_TAG: ended_value("dag/run-1", "rolled_back")}
    assert tags[ENDED_TAG] == "rolled_back dag/run-1"
    assert ended_outcome(tags, "dag/run-1") == "rolled_back"
    assert ended_outcome(tags, "dag/run-2") is None and ended_outcome({}, "dag/run-1") is None
    long_id = "x" * 250
    assert len(ended_value(long_id, "forward")) <= MAX_VALUE
    assert ended_outcome({ENDED_TAG: ended_value(long_id, "forward")}, long_id) == "forward"
    assert ENDED_TAG not in RolloutRecord.tag_keys()  # it outlives the record (the lock)


def test_restore_capacity_widens_only_to_hold_the_baseline() -> None:
    rec = _rec(original_desired=4, original_min=2, original_max=6)
    assert rec.restore_capacity() == (4, 2, 6)
    assert replace(rec, baseline=9).restore_capacity() == (9, 2, 9)
    assert replace(rec, baseline=1).restore_capacity() == (1, 1, 6)


text = st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=0x2FF), max_size=400)
ident = st.text(alphabet=SAFE, min_size=1, max_size=MAX_VALUE).filter(lambda s: s.strip() == s and s)


@rollout_settings(max_examples=200)
@given(
    rid=ident, target=ident, previous=st.none() | ident, reason=st.none() | text, label=st.none() | text,
    desired=st.integers(0, 10_000), extra=st.integers(0, 10_000), baseline=st.integers(0, 20_000),
    started=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
    phase=st.sampled_from(["forward", "rollback", "failed"]),
    suspended=st.lists(st.sampled_from(["AZRebalance", "AlarmNotification", "ScheduledActions", "Launch"])),
    lt=st.none() | st.from_regex(r"lt-[0-9a-f]{17}:[1-9][0-9]{0,5}", fullmatch=True),
    written=st.none() | st.tuples(st.integers(0, 10_000), st.integers(0, 10_000)), stepwise=st.booleans(),
    policy=st.none() | st.builds(
        Policy, strategy=st.sampled_from(["surge", "replace", "instance-refresh"]),
        batch_size=st.none() | st.integers(1, 500), max_surge=st.integers(0, 500),
        min_healthy_percent=st.integers(0, 100), deadline_minutes=st.integers(1, 10_000),
        on_failure=st.sampled_from(["rollback", "halt"])),
    token=st.none() | st.from_regex(r"[0-9a-f]{32}", fullmatch=True),
    unknown=st.none() | st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                                     timezones=st.just(UTC)),
    az_moves=st.none() | st.integers(0, 10_000),
)
def test_any_record_round_trips_within_aws_limits(**kw: object) -> None:
    rec = RolloutRecord(
        rollout_id=kw["rid"], target_image=kw["target"], previous_image=kw["previous"],  # type: ignore[arg-type]
        original_desired=kw["desired"], original_min=0, original_max=kw["desired"] + kw["extra"],  # type: ignore[operator]
        baseline=kw["baseline"], started_at=kw["started"], phase=kw["phase"],  # type: ignore[arg-type]
        suspended=tuple(kw["suspended"]), reason=kw["reason"], target_label=kw["label"],  # type: ignore[arg-type]
        target_lt=kw["lt"], previous_lt=kw["lt"],  # type: ignore[arg-type]
        desired_written=kw["written"], desired_stepwise=kw["stepwise"],  # type: ignore[arg-type]
        policy=kw["policy"].core() if kw["policy"] else None,  # type: ignore[attr-defined]
        token=kw["token"], unknown_since=kw["unknown"], az_moves=kw["az_moves"],  # type: ignore[arg-type]
    )
    tags = rec.to_tags()
    assert all(len(k) <= MAX_KEY and len(v) <= MAX_VALUE for k, v in tags.items())
    assert all(k.startswith(TAG_PREFIX) for k in tags)
    assert RolloutRecord.from_tags(tags) == rec
