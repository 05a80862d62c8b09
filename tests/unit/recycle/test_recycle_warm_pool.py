"""Warm pools are rolled (issue 18 item 5), against the sandbox's warm pools (warmed instances launched from the
group's current launch template, drawn by scale-outs before new launches, refilled when one is terminated),
watched through the AWS API alone after every write of the rollout: healthy in-service capacity against the floor,
the images of the members and of the warm pool, desired.

Without this step a rollout left the pool on the old image (AWS does not touch warmed instances when the launch
template moves), and the first scale-out after it brought the old image back."""

from __future__ import annotations

from typing import Any

import pytest
import recycle_fleet as F
from phoenix_fleet.operators.recycle_operators import RolloutFailed

from tests.helpers.airflow_run import make_context, run_task


def pool_images(sandbox: Any, f: F.Fleet) -> dict[str, str]:
    """warmed instance id -> EC2 ImageId (DescribeWarmPool, then DescribeInstances)."""
    autoscaling = sandbox.client("autoscaling", region_name=F.REGION)
    ids = [i["InstanceId"] for i in autoscaling.describe_warm_pool(AutoScalingGroupName=f.asg)["Instances"]]
    if not ids:
        return {}
    res = sandbox.client("ec2", region_name=F.REGION).describe_instances(InstanceIds=ids)["Reservations"]
    return {i["InstanceId"]: i["ImageId"] for r in res for i in r["Instances"]}


def pool_states(sandbox: Any, f: F.Fleet) -> set[str]:
    autoscaling = sandbox.client("autoscaling", region_name=F.REGION)
    return {i["LifecycleState"] for i in autoscaling.describe_warm_pool(AutoScalingGroupName=f.asg)["Instances"]}


def with_pool(sandbox: Any, **kw: Any) -> F.Fleet:
    f = F.build_fleet(sandbox, desired=3, **kw)  # max 4
    sandbox.client("autoscaling", region_name=F.REGION).put_warm_pool(
        AutoScalingGroupName=f.asg, MaxGroupPreparedCapacity=5, MinSize=2)  # kept at max(2, 5 - desired)
    sandbox.settle()
    assert set(pool_images(sandbox, f).values()) == {f.old_ami} and len(pool_images(sandbox, f)) == 2
    return f


def test_a_rollout_ends_with_the_warm_pool_on_the_new_image_and_scale_outs_bring_the_new_image(
    sandbox_clean: Any,
) -> None:
    f = with_pool(sandbox_clean)
    old_pool = set(pool_images(sandbox_clean, f))
    watch: list[tuple[int, int]] = []

    def look() -> None:  # from outside, after every write the rollout makes
        watch.append((F.healthy_in_service(sandbox_clean, f), F.group(sandbox_clean, f.asg)["DesiredCapacity"]))

    op = F.operator(f, policy={"batch_size": 1, "max_surge": 1, "min_healthy_percent": 100}, deferrable=False)
    op.hook = F.scripted_hook(monitor=look)
    summary = run_task(op, make_context()).result
    assert summary["outcome"] == "forward", summary
    assert "warm pool 2 on" in summary["message"], summary
    assert min(healthy for healthy, _ in watch) >= 3  # the floor (100 % of 3), warm pool step included
    # every member and every warmed instance on the new image; desired, sizes and processes restored
    F.assert_converged(sandbox_clean, f, f.new_ami, 3, max_size=4)
    sandbox_clean.settle()
    pool = pool_images(sandbox_clean, f)
    assert set(pool.values()) == {f.new_ami} and len(pool) == 2, pool
    assert not set(pool) & old_pool and pool_states(sandbox_clean, f) == {"Warmed:Stopped"}
    # the old warmed instances went first, through the ASG API: the batches' scale-outs, which draw from the pool,
    # brought the new image (three batches for three instances: none wasted on an old-image draw)
    terminated = F.terminations(op.hook)
    assert set(terminated[:2]) == old_pool, terminated
    assert (summary["replaced"], summary["batches"], summary["warm_replaced"]) == (3, 3, 2), summary
    # a scale-out after the rollout draws from the pool: the new image, not the old one
    autoscaling = sandbox_clean.client("autoscaling", region_name=F.REGION)
    autoscaling.set_desired_capacity(AutoScalingGroupName=f.asg, DesiredCapacity=4)
    images = F.fleet_images(sandbox_clean, f.asg)
    assert len(images) == 4 and set(images.values()) == {f.new_ami}, images
    assert set(images) & set(pool)  # it came from the pool


def test_a_rollback_brings_the_warm_pool_back_to_the_previous_image(sandbox_clean: Any) -> None:
    f = with_pool(sandbox_clean, bad_new=True)
    op = F.operator(f, policy={"batch_size": 1, "max_surge": 1}, deferrable=False)
    op.hook = F.scripted_hook()
    with pytest.raises(RolloutFailed, match="rolled back"):
        run_task(op, make_context())
    sandbox_clean.settle()
    F.assert_converged(sandbox_clean, f, f.old_ami, 3, max_size=4)
    pool = pool_images(sandbox_clean, f)
    assert set(pool.values()) == {f.old_ami} and len(pool) == 2, pool


def test_only_a_group_with_a_warm_pool_pays_for_observing_it(sandbox_clean: Any) -> None:
    import asyncio

    from phoenix_fleet.hooks.asg_hook import AsgHook
    from phoenix_fleet.rollout import Policy

    f = F.build_fleet(sandbox_clean, desired=3)
    policy = Policy(warmup_seconds=0)
    hook = AsgHook(aws_conn_id="aws_default", region_name=F.REGION)
    seen = F.record_calls(hook)
    hook.observe(f.asg, policy)
    plain = hook.observe(f.asg, policy)
    assert plain.calls == 3 and "DescribeWarmPool" not in seen  # ASG, status, target health: as before
    assert plain.state.warm_pool_size is None and plain.state.warm == ()
    sandbox_clean.client("autoscaling", region_name=F.REGION).put_warm_pool(
        AutoScalingGroupName=f.asg, MaxGroupPreparedCapacity=5, MinSize=2)
    sandbox_clean.settle()
    first = hook.observe(f.asg, policy)
    assert first.calls == 3 + 1 + 1  # + DescribeWarmPool, + DescribeInstances for the warmed instances seen first
    steady = hook.observe(f.asg, policy)
    assert steady.calls == 3 + 1  # their images are known: one call more per poll, only for this group
    assert steady.state.warm_pool_size == 2
    assert {(w.image_id, w.lifecycle) for w in steady.state.warm} == {(f.old_ami, "Warmed:Stopped")}
    assert len(steady.state.warm) == 2 and not {w.instance_id for w in steady.state.warm} & {
        i.instance_id for i in steady.state.instances}

    async def observe_async() -> Any:
        ahook = AsgHook(aws_conn_id="aws_default", region_name=F.REGION)
        async with ahook.async_clients() as clients:
            return await ahook.async_observe(clients, f.asg, policy, resolve_launch_template=True)

    aobs = asyncio.run(observe_async())
    assert (aobs.state.warm, aobs.state.warm_pool_size) == (steady.state.warm, steady.state.warm_pool_size)
