"""After a rollout that did not finish: which groups go back to the launch-template version they had before apply.

``apply`` moves every group of the role to the release's launch-template version before the canary runs (the
recycle then replaces instances). When the run ends early (the approval rejected or unanswered, the canary or a
recycle failed, Terraform failed half-way), the groups it never rolled keep their old instances but launch the
release's image: any scale-out, health replacement or AZ rebalance there adds an instance of an image that was
rejected or never proven, and the group is split. So the version each group had before apply is recorded
(:class:`Pin`), and at the end of the run every group that still launches the release's image while none of its
instances runs it is pointed back.

Pure: :func:`decide` takes what apply recorded and what the group looks like now; the operator does the AWS calls.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Decision", "GroupNow", "Pin", "decide"]


@dataclass(frozen=True)
class Pin:
    """A group's launch template, as an explicit version number, and the image that version launches."""

    template: str  # the template's id (or its name when the group names it so)
    number: int
    image_id: str | None

    def to_json(self) -> dict[str, Any]:
        return {"template": self.template, "number": self.number, "image_id": self.image_id}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Pin:
        return cls(str(data["template"]), int(data["number"]), data.get("image_id") or None)

    def __str__(self) -> str:
        return f"{self.template}:{self.number} ({self.image_id or 'image unknown'})"


@dataclass(frozen=True)
class GroupNow:
    """One group as it is now: its rollout lock, what it launches (None: no template), its live instances' images."""

    asg: str
    region: str
    locked_by: str | None
    pin: Pin | None
    live_images: Mapping[str, int]


@dataclass(frozen=True)
class Decision:
    asg: str
    region: str
    restore_to: Pin | None  # None: leave the group as it is
    reason: str


def decide(group: GroupNow, before: Pin | None, release_image: str) -> Decision:
    """Point ``group`` back to ``before`` only when this run moved it and rolled none of it.

    Left alone, with the reason: no version recorded (apply never got to it); a group held by a rollout (its own
    record names the version to go back to: it resumes or rolls back, or waits for a human); a group whose template
    changed, or that launches anything but the release's image (someone else moved it); a group with instances on
    the release's image (rolled forward: not ours to undo); a group whose instances run neither image (pointing it
    anywhere would not match them: for a human).
    """

    def leave(reason: str) -> Decision:
        return Decision(group.asg, group.region, None, reason)

    if before is None:
        return leave("apply recorded no launch-template version for it: it was not moved by this run")
    now = group.pin
    if now is None:
        return leave("it launches no launch template now")
    if group.locked_by:
        return leave(f"held by rollout {group.locked_by}: its record names the version to go back to")
    if now.template != before.template:
        return leave(f"its launch template changed since apply ({before.template} -> {now.template}): not this "
                     "run's change")
    if now.number == before.number:
        return leave(f"still on version {now.number}: nothing to put back")
    if now.image_id != release_image:
        return leave(f"version {now.number} launches {now.image_id or 'an unknown image'}, not the release's "
                     f"{release_image}: not this run's change")
    on_release = group.live_images.get(release_image, 0)
    if on_release:
        return leave(f"{on_release} instance(s) run the release's image {release_image}: rolled forward, kept")
    others = sorted(i for i, n in group.live_images.items() if n)
    if others and before.image_id not in others:
        return leave(f"its instances run {', '.join(others)}, and version {before.number} launches "
                     f"{before.image_id or 'an unknown image'}: pointing it back would not match them either. Fix: "
                     "point the group at the version its instances run, by hand")
    return Decision(
        group.asg, group.region, before,
        f"never rolled to {release_image}: back to version {before.number} of {before.template}, which launches "
        f"{before.image_id or 'an unknown image'}"
        + (f", what its {sum(group.live_images.values())} instance(s) run" if others else ""),
    )
