"""AZ balance at the end of a rollout (issue 18 item 7), against the sandbox with AWS-like placement
(``balance_azs``: each ASG launch goes to the AZ with the fewest instances), watched through the AWS API alone
after every write of the rollout: healthy in-service capacity against the floor, the AZ spread, desired.

The reproduction from the issue: a 3-AZ group of 3 (one per AZ) rolled with surge 1 at a 100 % floor ended
a:2 b:1 c:0 (the second surge launch landed in an AZ with nothing left to replace, and AZRebalance, suspended
for the rollout, would only have fixed it after the lock was gone). Now a final balancing step under the same
floor closes the gap before the rollout ends."""

from __future__ import annotations

from typing import Any

import recycle_fleet as F

from tests.helpers.airflow_run import make_context, run_task

ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")


def test_a_surge_at_a_full_floor_ends_with_the_az_spread_it_started_with(sandbox_clean: Any) -> None:
    assert sandbox_clean.config.balance_azs  # the tests profile's placement: the AZ with the fewest instances
    f = F.build_fleet(sandbox_clean, desired=3, azs="abc")
    assert F.az_counts(sandbox_clean, f.asg) == dict.fromkeys(ZONES, 1)
    watch: list[tuple[int, dict[str, int], int]] = []

    def look() -> None:  # from outside, after every write the rollout makes
        watch.append((F.healthy_in_service(sandbox_clean, f), F.az_counts(sandbox_clean, f.asg),
                      F.group(sandbox_clean, f.asg)["DesiredCapacity"]))

    op = F.operator(f, policy={"batch_size": 1, "max_surge": 1, "min_healthy_percent": 100}, deferrable=False)
    op.hook = F.scripted_hook(monitor=look)
    summary = run_task(op, make_context()).result
    assert summary["outcome"] == "forward", summary
    # three batches replaced the three instances; one more instance was moved between AZs at the end
    assert (summary["replaced"], summary["batches"], summary["az_balanced"]) == (3, 3, 1), summary
    assert min(healthy for healthy, _, _ in watch) >= 3  # never below the floor (100 % of 3)
    assert max(desired for _, _, desired in watch) == 4  # one surge at a time, balancing included
    # the spread it started with, every instance on the new image, desired, sizes and processes restored
    F.assert_converged(sandbox_clean, f, f.new_ami, 3, max_size=4)
    assert F.az_counts(sandbox_clean, f.asg) == dict.fromkeys(ZONES, 1)
    # the balancing step was needed: some moment of the rollout had an AZ with two and one with none
    assert any(max(z.get(a, 0) for a in ZONES) - min(z.get(a, 0) for a in ZONES) > 1 for _, z, _ in watch), watch
