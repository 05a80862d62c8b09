"""Which groups go back to their launch-template version after a run that did not roll them (pure)."""

from __future__ import annotations

import pytest
from phoenix_fleet.rollout.template_pins import Decision, GroupNow, Pin, decide

OLD, NEW, OTHER = "ami-old", "ami-new", "ami-other"
BEFORE = Pin("lt-1", 3, OLD)
MOVED = Pin("lt-1", 4, NEW)


def group(pin: Pin | None = MOVED, live: dict[str, int] | None = None, locked: str | None = None) -> GroupNow:
    return GroupNow("web-a", "us-east-1", locked, pin, {OLD: 2} if live is None else live)


def test_a_group_moved_by_apply_and_never_rolled_goes_back() -> None:
    d = decide(group(), BEFORE, NEW)
    assert d.restore_to == BEFORE
    assert "never rolled to ami-new: back to version 3 of lt-1, which launches ami-old" in d.reason
    assert "what its 2 instance(s) run" in d.reason
    assert decide(group(live={}), BEFORE, NEW).restore_to == BEFORE  # scaled to zero: nothing runs, still back


@pytest.mark.parametrize(
    ("now", "before", "why"),
    [
        (group(), None, "apply recorded no launch-template version"),
        (group(pin=None), BEFORE, "launches no launch template"),
        (group(locked="fleet_rollout_web:manual__1"), BEFORE, "held by rollout fleet_rollout_web:manual__1"),
        (group(pin=Pin("lt-2", 4, NEW)), BEFORE, "its launch template changed since apply (lt-1 -> lt-2)"),
        (group(pin=BEFORE), BEFORE, "still on version 3: nothing to put back"),
        (group(pin=Pin("lt-1", 5, OTHER)), BEFORE, "launches ami-other, not the release's ami-new"),
        (group(live={OLD: 1, NEW: 3}), BEFORE, "3 instance(s) run the release's image ami-new: rolled forward"),
        (group(live={OTHER: 2}), BEFORE, "its instances run ami-other, and version 3 launches ami-old"),
    ],
)
def test_every_other_group_is_left_with_the_reason(now: GroupNow, before: Pin | None, why: str) -> None:
    d = decide(now, before, NEW)
    assert d == Decision("web-a", "us-east-1", None, d.reason)
    assert why in d.reason


def test_pins_travel_as_json() -> None:
    assert Pin.from_json(BEFORE.to_json()) == BEFORE
    assert Pin.from_json({"template": "lt-1", "number": "3", "image_id": ""}) == Pin("lt-1", 3, None)
