"""The rollout record: the few facts a rollout keeps in the ASG's own tags.

Everything else is derived from observation (EC2 ImageId, lifecycle states, health). A retried task or a
new worker reads the record back with ``RolloutRecord.from_tags`` and resumes where the last one stopped.

Tags (all keys start with ``phoenix:rollout:``, one fact per tag, so they read well in the console)::

    phoenix:rollout:id              the rollout id: the lock (another id = another rollout holds the ASG)
    phoenix:rollout:schema          format version of these tags ("1")
    phoenix:rollout:phase           forward | rollback | failed
    phoenix:rollout:target          AMI every instance must end on (in rollback: the previous AMI)
    phoenix:rollout:previous        AMI to roll back to (absent: nothing to roll back to)
    phoenix:rollout:target-lt       launch template version of the target, "lt-0abc...:7" (optional)
    phoenix:rollout:previous-lt     launch template version of the previous AMI (optional)
    phoenix:rollout:target-label    release label of the target, e.g. 2026.11.30-1 (optional)
    phoenix:rollout:previous-label  release label of the previous AMI (optional)
    phoenix:rollout:original        the capacity before the rollout: "desired=4 min=2 max=8"
    phoenix:rollout:baseline        the desired capacity the rollout maintains (original, or adopted)
    phoenix:rollout:started         when the rollout started, ISO 8601 UTC (2026-11-30T10:00:00Z)
    phoenix:rollout:phase-started   when the current phase started (deadlines count from here)
    phoenix:rollout:suspended       processes the rollout suspended (space separated; resumed at the end)
    phoenix:rollout:reason          why it rolled back / failed (optional, at most 256 characters)
    phoenix:rollout:soak-from       when the planner first saw the newest batch all healthy (optional)
    phoenix:rollout:replace-before  renewal (fleet_max_age): instances on the target launched before this
                                    time are replaced too (optional; absent: only other images are)
    phoenix:rollout:desired         the desired capacity the rollout itself last wrote: "6"; "4 to 6" for one
                                    write from 4 to 6 (4 or 6 are ours: it landed or not); "6 to 4 stepwise"
                                    for a batch of decrementing terminations (anything from 6 to 4 is ours);
                                    any other observed value is an outside change
    phoenix:rollout:policy          the policy core the rollout began with: "strategy=surge batch=2
                                    max-surge=2 min-healthy=100 deadline=60 on-failure=rollback" (used on
                                    every resume, whatever the fleet config says now)
    phoenix:rollout:token           a unique token written with the first record (the lock's compare-and-set)
    phoenix:rollout:unknown-since   when health first became unknown (an API error), while it is (optional)
    phoenix:rollout:az-moves        the AZ balancing at the end: how many instances had to change AZ when its
                                    last round launched (optional; a round that does not lower it is the last)

And, outside the record (it outlives the lock): ``phoenix:rollout-ended`` = "<outcome> <rollout id>", the
terminal outcome of the last rollout, written before its record is deleted so that the same rollout, run
again after a crash, ends the same way instead of starting over.

Keys are at most 128 characters and values at most 256. Identifiers (rollout id, AMIs, launch template
versions) use only the characters every AWS tagging API accepts (letters, digits, space and
``+ - = . _ : / @``); the free-text values (labels, reason) are printable ASCII on one line, which
AutoScaling tags accept. Set them with PropagateAtLaunch=False.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from .fleet_state import FleetState
from .rollout_policy import Policy, parse_core

TAG_PREFIX = "phoenix:rollout:"
SCHEMA = "1"
FORWARD = "forward"
ROLLBACK = "rollback"
FAILED = "failed"
PHASES = (FORWARD, ROLLBACK, FAILED)
MAX_KEY = 128
MAX_VALUE = 256

_SAFE = re.compile(r"^[A-Za-z0-9 +\-=._:/@]*$")
_TEXT = re.compile(r"^[\x20-\x7e]*$")
_UNPRINTABLE_RUN = re.compile(r"[^\x20-\x7e]+")
_CAPACITY = re.compile(r"^desired=(\d+) min=(\d+) max=(\d+)$")
_DESIRED = re.compile(r"^(\d+)(?: to (\d+)( stepwise)?)?$")
_TIME_FMT = "%Y-%m-%dT%H:%M:%SZ"


class RecordError(ValueError):
    """The rollout tags on the ASG are malformed (someone edited them, or another tool wrote them)."""


def tag(name: str) -> str:
    return TAG_PREFIX + name


def clean_text(text: str, limit: int = MAX_VALUE) -> str:
    """Free text made safe for a tag value: printable ASCII on one line, at most `limit` characters."""
    cleaned = " ".join(_UNPRINTABLE_RUN.sub(" ", text).split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 3].rstrip() + "..."


def _utc_seconds(t: datetime) -> datetime:
    if t.tzinfo is None:
        raise ValueError("rollout record times must be timezone-aware")
    return t.astimezone(UTC).replace(microsecond=0)


def _fmt_time(t: datetime) -> str:
    return t.strftime(_TIME_FMT)


def _parse_time(key: str, value: str) -> datetime:
    try:
        return datetime.strptime(value, _TIME_FMT).replace(tzinfo=UTC)
    except ValueError:
        raise RecordError(f"tag {key}={value!r} is not a UTC time like 2026-11-30T10:00:00Z") from None


def _fmt_desired(written: tuple[int, int], stepwise: bool) -> str:
    a, b = written
    return str(b) if a == b else f"{a} to {b}" + (" stepwise" if stepwise else "")


def _parse_desired(key: str, value: str) -> tuple[int, int, bool]:
    m = _DESIRED.match(value)
    if not m:
        raise RecordError(f"tag {key}={value!r} is not a capacity like '6', '4 to 6' or '6 to 4 stepwise'")
    b = int(m.group(2) or m.group(1))
    return int(m.group(1)), b, bool(m.group(3))


def _parse_count(key: str, value: str) -> int:
    if not value.isdigit():
        raise RecordError(f"tag {key}={value!r} is not a count like '2'")
    return int(value)


def _check_ref(name: str, value: str | None, *, required: bool = False) -> None:
    if value is None:
        if required:
            raise ValueError(f"{name} is required")
        return
    if not value or len(value) > MAX_VALUE or not _SAFE.match(value):
        raise ValueError(f"{name} {value!r} must be 1-{MAX_VALUE} characters of [A-Za-z0-9 +-=._:/@]")


@dataclass(frozen=True)
class RolloutRecord:
    """What a rollout must remember across workers. Build the first one with ``RolloutRecord.begin``."""

    rollout_id: str
    target_image: str
    previous_image: str | None
    original_desired: int
    original_min: int
    original_max: int
    started_at: datetime
    phase: str = FORWARD
    baseline: int | None = None  # None: the original desired
    phase_started_at: datetime | None = None  # None: started_at
    suspended: tuple[str, ...] = ()
    target_lt: str | None = None
    previous_lt: str | None = None
    target_label: str | None = None
    previous_label: str | None = None
    reason: str | None = None
    #: when the planner first observed every instance on the target healthy, after the newest of them
    #: launched; the soak runs from here. Valid only while it is later than the newest launch.
    soak_from: datetime | None = None
    #: renewal: an instance on the target launched before this time counts as outdated (max-age recycling
    #: renews instances without changing the image). Fixed at the start, so new launches are never outdated.
    replace_before: datetime | None = None
    #: the desired capacity the rollout itself last wrote, as (from, to): to = the value written, from = the
    #: value it replaced. Ours: from or to (one write: it landed or not), or anything between them when
    #: ``desired_stepwise`` (a batch of decrementing terminations, cut short by a crash). Any other observed
    #: value is an outside change (see planner.adopt_baseline). None: a record of an older version (the
    #: surge band is used).
    desired_written: tuple[int, int] | None = None
    desired_stepwise: bool = False
    #: Policy.core() of the policy the rollout began with (None: a record of an older version)
    policy: str | None = None
    #: the lock's unique token (compare-and-set: the whole record is read back after a settle)
    token: str | None = None
    #: when health first became unknown (an API error) and has stayed so; cleared once it is known again
    unknown_since: datetime | None = None
    #: the final AZ balancing (planner._balance): how many instances had to change AZ when its last round
    #: launched; a round that leaves as many (the group does not place launches into its emptiest AZ) is the last
    az_moves: int | None = None

    def __post_init__(self) -> None:
        _check_ref("rollout_id", self.rollout_id, required=True)
        if len(self.rollout_id) > MAX_VALUE:
            raise ValueError("rollout_id too long")
        _check_ref("target_image", self.target_image, required=True)
        _check_ref("previous_image", self.previous_image)
        for name in ("target_lt", "previous_lt"):
            ref = getattr(self, name)
            if ref is not None and ("$" in ref or not ref.rpartition(":")[2].isdigit()):
                raise ValueError(
                    f"{name} {ref!r} must name an explicit version as '<template id or name>:<number>' "
                    "(never $Latest/$Default: a rollback must target the previous version explicitly)"
                )
            _check_ref(name, ref)
        if self.phase not in PHASES:
            raise ValueError(f"phase {self.phase!r} not in {PHASES}")
        if not 0 <= self.original_min <= self.original_max or self.original_desired < 0:
            raise ValueError("original capacity is inconsistent")
        set_ = object.__setattr__
        set_(self, "started_at", _utc_seconds(self.started_at))
        set_(self, "phase_started_at", _utc_seconds(self.phase_started_at or self.started_at))
        for name in ("soak_from", "replace_before", "unknown_since"):
            if getattr(self, name) is not None:
                set_(self, name, _utc_seconds(getattr(self, name)))
        if self.replace_before is not None and self.replace_before > self.started_at:
            raise ValueError("replace_before must not be later than started_at (new launches would be outdated)")
        if self.desired_written is not None:
            a, b = (int(x) for x in self.desired_written)
            if a < 0 or b < 0:
                raise ValueError("desired_written must be >= 0")
            set_(self, "desired_written", (a, b))
            set_(self, "desired_stepwise", bool(self.desired_stepwise) and a != b)
        else:
            set_(self, "desired_stepwise", False)
        if self.policy is not None:
            parse_core(self.policy)
        _check_ref("token", self.token)
        if self.baseline is None:
            set_(self, "baseline", self.original_desired)
        elif self.baseline < 0:
            raise ValueError("baseline must be >= 0")
        if self.az_moves is not None and self.az_moves < 0:
            raise ValueError("az_moves must be >= 0")
        procs = tuple(sorted(set(self.suspended)))
        for p in procs:
            if not p or not p.isalnum():
                raise ValueError(f"suspended process {p!r} is not a process name")
        set_(self, "suspended", procs)
        for name in ("target_label", "previous_label", "reason"):
            value = getattr(self, name)
            if value is not None:
                set_(self, name, clean_text(value) or None)

    # -- construction ---------------------------------------------------------------------------------
    @classmethod
    def begin(
        cls,
        rollout_id: str,
        state: FleetState,
        policy: Policy,
        *,
        target_image: str,
        previous_image: str | None,
        target_lt: str | None = None,
        previous_lt: str | None = None,
        target_label: str | None = None,
        previous_label: str | None = None,
        replace_before: datetime | None = None,
        token: str | None = None,
    ) -> RolloutRecord:
        """The record of a new rollout: snapshot the capacity, note which processes *we* will suspend
        (those the policy names that are not already suspended, so that we never resume a process a human
        suspended), and keep the policy's core. Persist it (the lock) before acting. ``replace_before`` makes
        it a renewal: instances on the target launched before that time are replaced too. ``token``: the
        lock's unique token (the operator draws it)."""
        return cls(
            rollout_id=rollout_id,
            target_image=target_image,
            previous_image=previous_image,
            original_desired=state.desired,
            original_min=state.min_size,
            original_max=state.max_size,
            started_at=state.now,
            suspended=tuple(p for p in policy.suspend_processes if p not in state.suspended_processes),
            target_lt=target_lt,
            previous_lt=previous_lt,
            target_label=target_label,
            previous_label=previous_label,
            replace_before=replace_before,
            desired_written=(state.desired, state.desired),
            policy=policy.core(),
            token=token,
        )

    @property
    def base(self) -> int:
        """The desired capacity the rollout maintains (``baseline``, typed as int)."""
        assert self.baseline is not None
        return self.baseline

    @property
    def phase_start(self) -> datetime:
        assert self.phase_started_at is not None
        return self.phase_started_at

    def with_baseline(self, baseline: int) -> RolloutRecord:
        return replace(self, baseline=baseline)

    def writing(self, current: int, desired: int, *, stepwise: bool = False) -> RolloutRecord:
        """The record for a write that moves desired from ``current`` (observed) to ``desired`` (``stepwise``:
        by several calls, e.g. terminations with decrement, so that it may stop anywhere between)."""
        return replace(self, desired_written=(current, desired), desired_stepwise=stepwise and current != desired)

    def policy_for(self, policy: Policy) -> Policy:
        """``policy`` with the core the rollout began with (the recorded one wins over a changed config)."""
        return policy.with_core(self.policy) if self.policy else policy

    def for_rollback(self, now: datetime, reason: str) -> RolloutRecord:
        """The same rollout aimed back at the previous image: target and previous swap."""
        if not self.previous_image:
            raise ValueError("no previous image to roll back to")
        return replace(
            self,
            phase=ROLLBACK,
            target_image=self.previous_image,
            previous_image=self.target_image,
            target_lt=self.previous_lt,
            previous_lt=self.target_lt,
            target_label=self.previous_label,
            previous_label=self.target_label,
            phase_started_at=now,
            reason=reason,
            replace_before=None,  # back on the previous image, however old: the rollback only undoes
            az_moves=None,  # the rollback balances on its own
        )

    def halted(self, now: datetime, reason: str) -> RolloutRecord:
        """Phase failed: the planner drains surplus, restores capacity, then returns Fail(reason)."""
        return replace(self, phase=FAILED, phase_started_at=now, reason=reason)

    # -- derived ----------------------------------------------------------------------------------------
    def deadline(self, policy: Policy) -> datetime:
        """Each phase (forward, rollback) gets the policy's full deadline from its own start."""
        return self.phase_start + timedelta(minutes=policy.deadline_minutes)

    def restore_capacity(self, desired: int | None = None) -> tuple[int, int, int]:
        """(desired, min, max) to leave the ASG with: the baseline (or `desired`), inside the original
        min/max, widened only as far as needed to hold it."""
        d = self.base if desired is None else desired
        return d, min(self.original_min, d), max(self.original_max, d)

    def is_current(self, image_id: str, launch_time: datetime) -> bool:
        """An instance with this image and launch time needs no replacing: on the target and, in a renewal,
        launched at or after ``replace_before``."""
        if image_id != self.target_image:
            return False
        return self.replace_before is None or launch_time >= self.replace_before

    def label_of(self, image_id: str) -> str | None:
        if image_id == self.target_image:
            return self.target_label
        if image_id == self.previous_image:
            return self.previous_label
        return None

    # -- tags -------------------------------------------------------------------------------------------
    def to_tags(self) -> dict[str, str]:
        tags = {
            tag("id"): self.rollout_id,
            tag("schema"): SCHEMA,
            tag("phase"): self.phase,
            tag("target"): self.target_image,
            tag("original"): f"desired={self.original_desired} min={self.original_min} max={self.original_max}",
            tag("baseline"): str(self.base),
            tag("started"): _fmt_time(self.started_at),
            tag("phase-started"): _fmt_time(self.phase_start),
            tag("suspended"): " ".join(self.suspended),
        }
        optional = {
            "previous": self.previous_image,
            "target-lt": self.target_lt,
            "previous-lt": self.previous_lt,
            "target-label": self.target_label,
            "previous-label": self.previous_label,
            "reason": self.reason,
            "soak-from": _fmt_time(self.soak_from) if self.soak_from is not None else None,
            "replace-before": _fmt_time(self.replace_before) if self.replace_before is not None else None,
            "desired": (_fmt_desired(self.desired_written, self.desired_stepwise)
                        if self.desired_written is not None else None),
            "policy": self.policy,
            "token": self.token,
            "unknown-since": _fmt_time(self.unknown_since) if self.unknown_since is not None else None,
            "az-moves": str(self.az_moves) if self.az_moves is not None else None,
        }
        tags.update({tag(k): v for k, v in optional.items() if v is not None})
        free_text = {tag("target-label"), tag("previous-label"), tag("reason")}
        for k, v in tags.items():  # guaranteed by construction; checked so a change here cannot slip
            if len(k) > MAX_KEY or len(v) > MAX_VALUE or not (_TEXT if k in free_text else _SAFE).match(v):
                raise AssertionError(f"tag {k}={v!r} breaks AWS tag limits")
        return tags

    @staticmethod
    def tag_keys() -> tuple[str, ...]:
        """Every key a record may write: delete these when the rollout is done."""
        names = ("id", "schema", "phase", "target", "previous", "target-lt", "previous-lt", "target-label",
                 "previous-label", "original", "baseline", "started", "phase-started", "suspended", "reason",
                 "soak-from", "replace-before", "desired", "policy", "token", "unknown-since", "az-moves")
        return tuple(tag(n) for n in names)

    @classmethod
    def from_tags(cls, tags: Mapping[str, str] | Iterable[Mapping[str, Any]]) -> RolloutRecord | None:
        """The record in an ASG's tags, or None when no rollout holds it.

        Accepts a plain dict, or the ``Tags`` list of DescribeAutoScalingGroups (``[{"Key":..,"Value":..}]``).
        Raises RecordError when the tags are present but malformed.
        """
        if not isinstance(tags, Mapping):
            tags = {t["Key"]: t.get("Value", "") for t in tags}
        if tag("id") not in tags:
            return None

        def get(name: str) -> str:
            key = tag(name)
            if key not in tags:
                raise RecordError(f"rollout tags incomplete: {key} is missing")
            return tags[key]

        def opt(name: str) -> str | None:
            value = tags.get(tag(name))
            return value if value else None

        schema = tags.get(tag("schema"), SCHEMA)
        if schema != SCHEMA:
            raise RecordError(f"rollout tags use schema {schema!r}; this version reads {SCHEMA!r}")
        m = _CAPACITY.match(get("original"))
        if not m:
            raise RecordError(f"tag {tag('original')}={get('original')!r} is not 'desired=N min=N max=N'")
        try:
            baseline = int(get("baseline"))
            return cls(
                rollout_id=get("id"),
                phase=get("phase"),
                target_image=get("target"),
                previous_image=opt("previous"),
                target_lt=opt("target-lt"),
                previous_lt=opt("previous-lt"),
                target_label=opt("target-label"),
                previous_label=opt("previous-label"),
                original_desired=int(m.group(1)),
                original_min=int(m.group(2)),
                original_max=int(m.group(3)),
                baseline=baseline,
                started_at=_parse_time(tag("started"), get("started")),
                phase_started_at=_parse_time(tag("phase-started"), get("phase-started")),
                suspended=tuple(get("suspended").split()),
                reason=opt("reason"),
                soak_from=_parse_time(tag("soak-from"), sf) if (sf := opt("soak-from")) else None,
                replace_before=_parse_time(tag("replace-before"), rb) if (rb := opt("replace-before")) else None,
                desired_written=_parse_desired(tag("desired"), dw)[:2] if (dw := opt("desired")) else None,
                desired_stepwise=bool(dw and _parse_desired(tag("desired"), dw)[2]),
                policy=opt("policy"),
                token=opt("token"),
                unknown_since=_parse_time(tag("unknown-since"), us) if (us := opt("unknown-since")) else None,
                az_moves=_parse_count(tag("az-moves"), am) if (am := opt("az-moves")) else None,
            )
        except RecordError:
            raise
        except ValueError as e:
            raise RecordError(f"rollout tags are malformed: {e}") from None


# ------------------------------------------------------------------------------------------------------
# the terminal outcome, kept after the lock is released

ENDED_TAG = "phoenix:rollout-ended"


def ended_value(rollout_id: str, outcome: str) -> str:
    """The value of ``ENDED_TAG`` for a rollout that ended with ``outcome`` (``forward``, ``rolled_back``,
    ``failed``): ``"<outcome> <rollout id>"``, the id replaced by a digest when that would pass 256 characters."""
    import hashlib

    value = f"{outcome} {rollout_id}"
    if len(value) > MAX_VALUE:
        value = f"{outcome} sha1:{hashlib.sha1(rollout_id.encode()).hexdigest()}"
    return value


def ended_outcome(tags: Mapping[str, str], rollout_id: str) -> str | None:
    """The outcome ``ENDED_TAG`` records for ``rollout_id``, or None (no marker, or another rollout's)."""
    value = tags.get(ENDED_TAG)
    if not value:
        return None
    outcome = value.split(" ", 1)[0]
    return outcome if value == ended_value(rollout_id, outcome) else None
