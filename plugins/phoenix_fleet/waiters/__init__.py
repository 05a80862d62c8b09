"""Custom botocore waiter JSON files (one per service, e.g. ``ec2.json``, ``autoscaling.json``).

Hooks point ``waiter_path`` here; botocore has no AutoScaling waiters at all.
"""

from pathlib import Path

WAITERS_DIR = Path(__file__).parent


def waiter_path(service: str) -> Path:
    return WAITERS_DIR / f"{service}.json"
