"""Benchmark: the rolling recycle against its physical bound and against one-at-a-time, in the same run.

    uv run python bench/rollout/run.py                      # 40 instances, L=2 s boot, W=1 s health checks
    uv run python bench/rollout/run.py --size 40 --boot 4 --warmup 2 --batch 10
    uv run python bench/rollout/run.py --skip-baseline      # skip the slow one-at-a-time run
    uv run python bench/rollout/run.py --skip-baseline --repeat 5 --profile   # + where each run's time goes

Setup (not measured): the sandbox server in **its own process** (``python -m sandbox serve``; ``--in-process`` serves
it from a thread of this one instead, sharing the GIL with the operator), a VPC, an ALB target group, launch
template ``web-lt`` v1 (old AMI) / v2 (new AMI) and an ASG of ``--size`` instances on v1, all InService and healthy
(``tests/unit/recycle/recycle_fleet.py``). Then the sandbox switches to **time-based** realism: an instance boots
for ``L = --boot`` seconds (``Pending``, target ``initial``), then its status checks and its target-group health
checks take ``W = --warmup`` seconds to turn ok/healthy. A batch therefore cannot take less than ``L + W``: the
physical bound of a rollout is ``batches x (L + W)``. The policy's ``warmup_seconds`` is W as well (it counts from
launch, so it never binds here). The sandbox's clocks move when something observes (the boot ends at the first
describe after L, and W counts from there), so a late poll costs twice here; AWS's clocks do not wait for us.

Measured (wall clock, ``time.monotonic``):

1. **phoenix, deferrable path** (``--repeat`` runs, median compared): ``AsgRecycleOperator`` (surge, ``--batch``
   per batch, max_surge = batch) driven by ``tests/helpers/airflow_run.run_task`` with ``inline_wait_seconds=0``:
   every wait defers; each trigger is rebuilt from ``serialize()`` and run on aiobotocore until its event, then
   the task resumes (the triggerer's work, minus Airflow's own scheduling). Printed: wall / (batches x (L + W)),
   goal <= 1.15; also the same wall plus 2.4 s per deferral (the defer -> trigger -> resume cost measured in a
   real Airflow, notes/airflow.md).
2. **phoenix, inline**: the same with the default ``inline_wait_seconds=20``: these waits are short, so they are
   polled in the worker and never pay that 2.4 s.
3. **baseline, one at a time (the seed's way)**: strategy ``replace``, batch 1: terminate one, let the ASG launch
   its replacement, wait until healthy, next.
4. **AWS calls per health poll**: counted with a botocore ``before-call`` hook on every client the triggers
   open (and cross-checked with the triggers' own counts), against 1 + ceil(N/100) + target groups; then one
   health poll on fleets of other sizes (describe-count mode), to show it does not grow with N beyond that.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import tests.airflow_env  # noqa: E402,F401 - Airflow settings of this project, before Airflow is imported

DEFER_COST = 2.4  # seconds, defer -> trigger fires -> resume, real Airflow (notes/airflow.md)


def _env(handle: Any) -> None:
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=handle.endpoint_url,
        AIRFLOW_CONN_AWS_DEFAULT=json.dumps(
            {"conn_type": "aws", "login": "testing", "password": "testing",
             "extra": {"endpoint_url": handle.endpoint_url, "region_name": "us-east-1"}}
        ),
    )
    os.environ.pop("AWS_PROFILE", None)


class RemoteSandbox:
    """The sandbox in its own process (``python -m sandbox serve``), driven over HTTP: the server's work does not
    share this process's GIL with the operator and the triggers (as with AWS, the cloud is elsewhere)."""

    def __init__(self, state_dir: str) -> None:
        import socket
        import subprocess

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.region_name = "us-east-1"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sandbox", "serve", "--dir", state_dir, "--port", str(self.port), "--profile",
             "tests", "--quiet"],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                self._http("info")
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("the sandbox server did not start") from None
                time.sleep(0.1)

    def _http(self, path: str, body: dict[str, Any] | None = None) -> Any:
        import urllib.request

        req = urllib.request.Request(
            f"{self.endpoint_url}/phoenix-sandbox/{path}",
            data=None if body is None else json.dumps(body).encode(),
            method="GET" if body is None else "POST",
            headers={"Content-Type": "application/json"},
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(req, timeout=30) as resp:
            return json.loads(resp.read() or b"null")

    def reset(self, *, config: bool = True) -> None:
        self._http("reset", {"config": config})

    def settle(self) -> Any:
        return self._http("settle", {})

    def update_config(self, changes: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        return self._http("config", {**(changes or {}), **kwargs})

    def profile(self, name: str) -> Any:
        return self._http("config", {"profile": name})

    def client(self, service: str, region_name: str | None = None, **kwargs: Any) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            service, region_name=region_name or self.region_name, endpoint_url=self.endpoint_url,
            aws_access_key_id="testing", aws_secret_access_key="testing",
            config=kwargs.get("config", Config(retries={"max_attempts": 1})),
        )

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except Exception:
            self.proc.kill()


class CallCounter:
    """Counts AWS operations on every client AsgHook opens, sync and async (botocore ``before-call``)."""

    def __init__(self) -> None:
        self.sync: dict[str, int] = {}
        self.trigger: dict[str, int] = {}

    def install(self) -> None:
        from phoenix_fleet.hooks.asg_hook import AsgHook

        counter = self
        original_client = AsgHook.client
        original_async = AsgHook.async_clients

        def client(self: Any, service: str) -> Any:
            fresh = service not in self._clients
            c = original_client(self, service)
            if fresh:
                c.meta.events.register("before-call", counter._note(counter.sync))
            return c

        @asynccontextmanager
        async def async_clients(self: Any, services: Any = ("autoscaling", "ec2", "elbv2", "cloudwatch")) -> Any:
            async with original_async(self, services) as clients:
                for c in clients.values():
                    c.meta.events.register("before-call", counter._note(counter.trigger))
                yield clients

        AsgHook.client = client  # type: ignore[method-assign]
        AsgHook.async_clients = async_clients  # type: ignore[method-assign]

    @staticmethod
    def _note(into: dict[str, int]) -> Any:
        def note(model: Any = None, **_: Any) -> None:
            into[model.name] = into.get(model.name, 0) + 1

        return note

    def reset(self) -> None:
        self.sync.clear()
        self.trigger.clear()


def fleet(handle: Any, size: int, boot: float, warmup: float) -> Any:
    """A settled fleet of ``size`` on v1, every instance healthy; then the sandbox switches to seconds."""
    from phoenix_fleet.hooks.asg_hook import AsgHook
    from phoenix_fleet.rollout import Policy, fleet_healthy

    from tests.unit.recycle import recycle_fleet as F

    handle.reset(config=True)
    handle.profile("tests")
    f = F.build_fleet(handle, desired=size, max_size=size + 1)
    handle.settle()
    hook = AsgHook(aws_conn_id="aws_default", region_name="us-east-1")
    for _ in range(20):  # describe-count mode: observing moves every clock on
        if fleet_healthy(hook.observe(f.asg, Policy(warmup_seconds=0)).state, Policy(warmup_seconds=0), f.old_ami)[0]:
            break
    else:
        raise RuntimeError("the fleet did not settle healthy")
    handle.update_config(
        instance_boot={"seconds": boot},
        instance_status_checks={"seconds": warmup},
        target_health_checks={"seconds": warmup},
    )
    return f


#: (monotonic start, monotonic end) of every trigger run by run_task (``--profile``)
TRIGGER_SPANS: list[tuple[float, float]] = []


def time_triggers() -> None:
    """Record when each trigger run by run_task starts and fires (``--profile``): the time between two is the
    operator's own steps, the time inside one the wait."""
    import tests.helpers.airflow_run as airflow_run

    first_event = airflow_run.first_event

    async def timed(trigger: Any, timeout: float) -> Any:
        start = time.monotonic()
        try:
            return await first_event(trigger, timeout)
        finally:
            TRIGGER_SPANS.append((start, time.monotonic()))

    airflow_run.first_event = timed  # type: ignore[assignment]


def phases(start: float, wall: float) -> str:
    """``start 0.86  waits 3.13 3.28 3.15 3.14  between 0.39 0.33 0.34  end 0.30`` (seconds): to the first wait,
    each wait (trigger start to its event), between two waits (the operator's steps), after the last."""
    spans = [(a - start, b - start) for a, b in TRIGGER_SPANS if a >= start]
    if not spans:
        return "no waits"
    waits = " ".join(f"{b - a:.2f}" for a, b in spans)
    between = " ".join(f"{spans[k + 1][0] - spans[k][1]:.2f}" for k in range(len(spans) - 1))
    return f"start {spans[0][0]:.2f}  waits {waits}  between {between}  end {wall - spans[-1][1]:.2f}"


def rollout(f: Any, policy: dict[str, Any], **kwargs: Any) -> tuple[float, dict[str, Any], list[dict[str, Any]]]:
    from phoenix_fleet.operators.recycle_operators import AsgRecycleOperator

    from tests.helpers.airflow_run import make_context, run_task

    op = AsgRecycleOperator(
        task_id="recycle", asg_name=f.asg, target_launch_template_version=2, region_name="us-east-1",
        policy=policy, **kwargs,
    )
    start = time.monotonic()
    run = run_task(op, make_context(), max_deferrals=1000, trigger_timeout=600)
    return time.monotonic() - start, run.result, run.deferrals


def check_converged(handle: Any, f: Any, size: int) -> None:
    from tests.unit.recycle import recycle_fleet as F

    images = F.fleet_images(handle, f.asg)
    g = F.group(handle, f.asg)
    assert set(images.values()) == {f.new_ami} and len(images) == size == g["DesiredCapacity"], (images, g)
    assert g["SuspendedProcesses"] == [] and g["MaxSize"] == size + 1


def poll_cost(handle: Any, counter: CallCounter, size: int) -> tuple[int, float]:
    """One AsgHealthyTrigger poll on a settled fleet of ``size`` (describe-count mode): (N, calls per poll)."""
    import asyncio
    from datetime import UTC, datetime, timedelta

    from phoenix_fleet.rollout import Policy
    from phoenix_fleet.triggers.rollout_triggers import AsgHealthyTrigger, policy_to_json

    from tests.helpers.airflow_run import first_event
    from tests.unit.recycle import recycle_fleet as F

    handle.reset(config=True)
    handle.profile("tests")
    f = F.build_fleet(handle, desired=size, max_size=size + 1)
    handle.settle()
    from phoenix_fleet.hooks.asg_hook import AsgHook

    known = AsgHook(aws_conn_id="aws_default", region_name="us-east-1").observe(f.asg, Policy(warmup_seconds=0))
    from phoenix_fleet.triggers.rollout_triggers import known_to_json

    counter.reset()
    trigger = AsgHealthyTrigger(
        asg_name=f.asg, image_id=f.new_ami,  # never true: it polls until the deadline
        policy=policy_to_json(Policy(warmup_seconds=0)), known=known_to_json(known.known),
        deadline=(datetime.now(UTC) + timedelta(seconds=1.0)).isoformat(), min_poll_interval=0.1, poll_interval=0.1,
        region_name="us-east-1",
    )
    event = asyncio.run(first_event(trigger, 60)).payload
    calls = sum(counter.trigger.values())
    assert calls == event["calls"], (calls, event)
    return size, calls / max(1, event["polls"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=40)
    parser.add_argument("--boot", type=float, default=2.0, help="L: seconds an instance boots")
    parser.add_argument("--warmup", type=float, default=1.0, help="W: seconds until status/target checks pass")
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3, help="deferrable runs (the median is compared)")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--poll-sizes", default="40,250,1000", help="fleet sizes for the calls-per-poll check")
    parser.add_argument("--profile", action="store_true",
                        help="per deferrable run, seconds to the first wait, in each wait, between waits, after the last")
    parser.add_argument("--in-process", action="store_true",
                        help="serve the sandbox from a thread of this process (shares the GIL with the operator)")
    args = parser.parse_args(argv)

    import tempfile

    tmp = tempfile.TemporaryDirectory(prefix="phoenix-bench-")
    if args.in_process:
        from sandbox.realism import RealismConfig
        from sandbox.server import start_in_thread

        handle = start_in_thread(RealismConfig.profile("tests"))
        handle.profile = lambda name: handle.set_config(RealismConfig.profile(name))
    else:
        handle = RemoteSandbox(tmp.name)
    _env(handle)
    counter = CallCounter()
    counter.install()
    if args.profile:
        time_triggers()
    L, W, N = args.boot, args.warmup, args.size
    tgs = 1
    lines: list[str] = []

    def out(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    try:
        policy = {"strategy": "surge", "batch_size": args.batch, "max_surge": args.batch, "warmup_seconds": math.ceil(W),
                  "min_healthy_percent": 100}
        fast = {"min_poll_interval": 0.05, "poll_interval": 5.0, "poll_backoff": 0.05}

        # warm-up (not measured): load botocore/aiobotocore models, Airflow, the first connection
        f = fleet(handle, 8, 0.2, 0.1)
        rollout(f, {**policy, "batch_size": 4, "max_surge": 4, "warmup_seconds": 0}, inline_wait_seconds=0, **fast)

        out(f"rollout of {N} instances, L={L:g}s boot, W={W:g}s health checks, surge batches of {args.batch}")
        out(f"{'run':<34} {'wall s':>7} {'batches':>7} {'bound s':>7} {'ratio':>6} {'defers':>6} {'polls':>5} "
            f"{'calls/poll':>10}")

        walls: list[float] = []
        per_poll = 0.0
        trigger_ops: dict[str, int] = {}
        batches = 0
        for k in range(args.repeat):
            f = fleet(handle, N, L, W)
            counter.reset()
            began = time.monotonic()
            wall, result, deferrals = rollout(f, policy, inline_wait_seconds=0, **fast)
            check_converged(handle, f, N)
            walls.append(wall)
            batches = result["batches"]
            bound = batches * (L + W)
            polls = sum(d["event"].get("polls", 0) for d in deferrals)
            calls = sum(counter.trigger.values())
            reported = sum(d["event"].get("calls", 0) for d in deferrals)
            assert calls == reported, (calls, reported)
            per_poll = calls / max(1, polls)
            trigger_ops = dict(sorted(counter.trigger.items()))
            out(f"{f'phoenix deferrable (run_task) #{k + 1}':<34} {wall:>7.2f} {batches:>7} {bound:>7.1f} "
                f"{wall / bound:>6.3f} {len(deferrals):>6} {polls:>5} {per_poll:>10.2f}")
            if args.profile:
                out(f"  seconds: {phases(began, wall)}  (load {os.getloadavg()[0]:.2f})")
        wall = statistics.median(walls)
        bound = batches * (L + W)
        out(f"{'phoenix deferrable, median':<34} {wall:>7.2f} {batches:>7} {bound:>7.1f} {wall / bound:>6.3f}"
            f"   goal <= 1.15")
        projected = wall + DEFER_COST * len(deferrals)
        out(f"{'  + 2.4 s per defer (real Airflow)':<34} {projected:>7.2f} {batches:>7} {bound:>7.1f} "
            f"{projected / bound:>6.3f}")

        f = fleet(handle, N, L, W)
        wall_inline, result, deferrals = rollout(f, policy, inline_wait_seconds=20, **fast)
        check_converged(handle, f, N)
        out(f"{'phoenix inline polls (default)':<34} {wall_inline:>7.2f} {result['batches']:>7} {bound:>7.1f} "
            f"{wall_inline / bound:>6.3f} {len(deferrals):>6}")

        if not args.skip_baseline:
            f = fleet(handle, N, L, W)
            one = {"strategy": "replace", "batch_size": 1, "min_healthy_percent": 95, "warmup_seconds": math.ceil(W)}
            wall_one, result, deferrals = rollout(f, one, inline_wait_seconds=20, **fast)
            check_converged(handle, f, N)
            bound_one = result["batches"] * (L + W)
            out(f"{'baseline one at a time (replace, 1)':<34} {wall_one:>7.2f} {result['batches']:>7} "
                f"{bound_one:>7.1f} {wall_one / bound_one:>6.3f} {len(deferrals):>6}")
            out(f"speed-up of phoenix (deferrable, run_task) over one at a time: {wall_one / wall:.1f}x")

        goal = 1 + math.ceil(N / 100) + tgs
        out()
        out(f"AWS calls per health poll during the rollout: {per_poll:.2f} (goal <= 1 + ceil({N}/100) + {tgs} = {goal})"
            f"; trigger calls by operation: {trigger_ops}")
        for size in [int(s) for s in args.poll_sizes.split(",") if s.strip()]:
            n, cost = poll_cost(handle, counter, size)
            out(f"  one health poll, N={n:>5}: {cost:.2f} calls (1 + ceil(N/100) + {tgs} = "
                f"{1 + math.ceil(n / 100) + tgs})")
    finally:
        handle.stop()
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
