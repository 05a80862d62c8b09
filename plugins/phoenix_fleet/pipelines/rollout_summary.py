"""What a rollout run says about itself: the lines of its ``summary`` task and of its notification.

Pure (no Airflow, no AWS): the inputs are the recycle tasks' results (``AsgRecycleOperator`` summaries) and the
canary clean-up's result.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any


def skipped_text(result: Mapping[str, Any]) -> str | None:
    """``1 instance skipped (scale-in protected)``, ``3 instances skipped (2 scale-in protected, 1 in standby)``:
    the instances the policy left on their image (``protected: skip`` / ``standby: skip``); None when none."""
    reasons = dict(result.get("skipped_reasons") or {})
    for iid in result.get("skipped") or []:
        reasons.setdefault(str(iid), "skipped by policy")
    if not reasons:
        return None
    counts = Counter(reasons.values())
    why = next(iter(counts)) if len(counts) == 1 else ", ".join(f"{n} {r}" for r, n in sorted(counts.items()))
    return f"{len(reasons)} instance{'' if len(reasons) == 1 else 's'} skipped ({why})"


def asg_line(result: Mapping[str, Any]) -> str:
    """One line per recycled ASG: outcome, images, replaced, and what the policy skipped (with the ids)."""
    line = (f"{result.get('asg')}: {result.get('outcome')} {result.get('from_image')} -> {result.get('to_image')}, "
            f"{result.get('replaced')} instances replaced")
    skipped = skipped_text(result)
    if skipped:
        ids = " ".join(sorted(str(i) for i in result.get("skipped") or [])[:5])
        line += f"; {skipped}: {ids} (still on {result.get('from_image')})"
    return line


def canary_rollback_line(result: Mapping[str, Any] | None) -> str | None:
    """What the canary clean-up did after a rejected or unanswered approval (None: it did not run)."""
    if not result:
        return None
    return f"Canary {result.get('asg')}: {result.get('message')}"
