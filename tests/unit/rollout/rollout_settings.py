"""Hypothesis settings for the rollout property tests.

Two registered profiles (not loaded globally, so other suites keep theirs):
- ``rollout-ci``, used when the ``CI`` environment variable is set: derandomized, no example database,
  so CI runs the same examples every time;
- ``rollout-dev`` otherwise: random examples, failures remembered in the local example database.
``ROLLOUT_EXAMPLES=<factor>`` scales the number of examples (e.g. 20 for a long local hunt);
``ROLLOUT_NO_SHRINK=1`` reports the first failing example as found (fast, for mutation checks).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings

_COMMON = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
    "print_blob": True,
}
settings.register_profile("rollout-ci", derandomize=True, database=None, **_COMMON)
settings.register_profile("rollout-dev", **_COMMON)

SCALE = float(os.environ.get("ROLLOUT_EXAMPLES", "1"))
PROFILE = "rollout-ci" if os.environ.get("CI") else "rollout-dev"


def rollout_settings(max_examples: int) -> settings:
    extra = {"phases": [Phase.explicit, Phase.reuse, Phase.generate]} if os.environ.get("ROLLOUT_NO_SHRINK") else {}
    return settings(settings.get_profile(PROFILE), max_examples=max(1, int(max_examples * SCALE)), **extra)
