"""Dry run: the whole plan, simulated against an ideal ASG, without changing anything.

``describe_plan`` feeds the planner's own actions into a tiny idealised model of the ASG in which every
launch becomes healthy as soon as its warmup passes, terminations complete at once and nothing happens
from outside. The result is the sequence of steps the real rollout would take if all went well (plus the
honest end when something cannot go well, e.g. instances held by policy ``wait`` until the deadline).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from .fleet_state import FleetState, Instance, Lifecycle, WarmInstance
from .planner import plan, progress_line
from .rollout_actions import (
    Action,
    DelegateInstanceRefresh,
    Done,
    Fail,
    Launch,
    PrepareInstances,
    Restore,
    SetLaunchTemplate,
    StartRollback,
    SuspendProcesses,
    Terminate,
    TerminateWarmed,
    Wait,
)
from .rollout_policy import Policy
from .rollout_record import RolloutRecord


@dataclass(frozen=True)
class PlanStep:
    at: datetime
    action: Action
    line: str


def _healthy_new(state: FleetState, iid: str, image: str, az: str) -> Instance:
    return Instance(
        instance_id=iid,
        image_id=image,
        az=az,
        lifecycle=Lifecycle.IN_SERVICE,
        launch_time=state.now,
        target_health={tg: "healthy" for tg in state.target_group_arns},
        status="ok",
    )


class _IdealAsg:
    def __init__(self, state: FleetState, record: RolloutRecord) -> None:
        self.state = state
        self.record = record
        self.seq = 0

    @property
    def launch_image(self) -> str:
        return self.state.launch_image_id or self.record.target_image

    def _new(self, n: int) -> list[Instance]:
        s = self.state
        azs = list(s.zones) or ["az"]
        per_az = Counter(i.az for i in s.live)
        out = []
        for _ in range(n):
            self.seq += 1
            az = min(azs, key=lambda a: (per_az[a], a))
            per_az[az] += 1
            out.append(_healthy_new(s, f"i-planned{self.seq:04d}", self.launch_image, az))
        return out

    def settle(self) -> None:
        """Transitions complete, health follows each instance's own state, capacity matches desired."""
        s = self.state
        keep = []
        for i in s.instances:
            if i.gone or i.terminating:
                continue
            if i.pending or i.lifecycle in (Lifecycle.DETACHING, Lifecycle.QUARANTINED):
                i = replace(_healthy_new(s, i.instance_id, i.image_id, i.az), launch_time=i.launch_time)
            elif i.lifecycle == Lifecycle.ENTERING_STANDBY:
                i = replace(i, lifecycle=Lifecycle.STANDBY)
            keep.append(i)
        self.state = replace(s, instances=tuple(keep))
        self.fill()

    def fill(self) -> None:
        s = self.state
        live = [i for i in s.instances if i.counts_toward_desired]
        if len(live) < s.desired:
            self.state = replace(s, instances=s.instances + tuple(self._new(s.desired - len(live))))
        elif len(live) > s.desired:
            drop = {i.instance_id for i in sorted(live, key=lambda i: i.launch_time)[: len(live) - s.desired]
                    if not i.protected}
            self.state = replace(s, instances=tuple(i for i in s.instances if i.instance_id not in drop))

    def apply(self, action: Action) -> None:
        s = self.state
        if action.record is not None:
            self.record = action.record
        if isinstance(action, Launch):
            self.state = replace(s, desired=action.new_desired, max_size=max(s.max_size, action.new_max))
            self.fill()
        elif isinstance(action, Terminate):
            gone = set(action.instance_ids)
            desired = s.desired - len(gone) if action.decrement_desired else s.desired
            self.state = replace(s, desired=desired, instances=tuple(i for i in s.instances if i.instance_id not in gone))
            self.fill()
        elif isinstance(action, TerminateWarmed):  # the pool refills from the launch template, warmed at once
            gone = set(action.instance_ids)
            kept = tuple(w for w in s.warm if w.instance_id not in gone)
            new = []
            for _ in range(max(0, (s.warm_pool_size or 0) - len(kept))):
                self.seq += 1
                new.append(WarmInstance(f"i-warmed{self.seq:04d}", self.launch_image, "Warmed:Stopped", s.now))
            self.state = replace(s, warm=kept + tuple(new))
        elif isinstance(action, PrepareInstances):
            exits, unprotect = set(action.exit_standby), set(action.unprotect)
            insts = tuple(
                replace(
                    i,
                    lifecycle=Lifecycle.IN_SERVICE if i.instance_id in exits else i.lifecycle,
                    protected=i.protected and i.instance_id not in unprotect,
                )
                for i in s.instances
            )
            max_size = max(s.max_size, action.new_max or 0)
            self.state = replace(s, instances=insts, desired=s.desired + len(exits), max_size=max_size)
        elif isinstance(action, SuspendProcesses):
            self.state = replace(s, suspended_processes=s.suspended_processes | set(action.processes))
        elif isinstance(action, SetLaunchTemplate):
            self.state = replace(s, launch_image_id=action.image_id)
        elif isinstance(action, StartRollback):
            assert action.record is not None
            self.state = replace(s, launch_image_id=action.record.target_image)
        elif isinstance(action, Restore):
            self.state = replace(
                s,
                desired=action.desired,
                min_size=action.min_size,
                max_size=action.max_size,
                suspended_processes=s.suspended_processes - set(action.resume_processes),
            )
            self.fill()
        elif isinstance(action, Wait):
            self.settle()

    def advance(self, until: datetime) -> None:
        self.state = replace(self.state, now=max(until, self.state.now + timedelta(seconds=1)))


def describe_plan(
    state: FleetState, record: RolloutRecord, policy: Policy, *, max_steps: int = 2000
) -> list[PlanStep]:
    """Every step the rollout would take from `state` if every launch became healthy. Changes nothing.

    Wait steps advance the simulated clock to their ``until`` (warmup, soak, or a deadline when something
    outside the ASG has to change, e.g. instances held by policy ``wait``)."""
    asg = _IdealAsg(state, record)
    steps: list[PlanStep] = []
    for _ in range(max_steps):
        s, rec = asg.state, asg.record
        action = plan(s, rec, policy)
        steps.append(PlanStep(at=s.now, action=action, line=progress_line(s, rec, policy, action)))
        if isinstance(action, Done | Fail | DelegateInstanceRefresh):
            return steps
        asg.apply(action)
        if isinstance(action, Wait):
            if action.condition.timer or action.until <= asg.state.now:
                asg.advance(action.until)
            else:
                # the ideal world settles at once; only a wait that cannot end here runs to its horizon
                nxt = plan(asg.state, asg.record, policy)
                if isinstance(nxt, Wait) and nxt.same_wait(action):
                    asg.advance(action.until)
    raise RuntimeError(f"the dry run did not finish within {max_steps} steps")


def format_plan(steps: list[PlanStep]) -> str:
    """The dry run as text: one line per step, with the time offset from the first."""
    if not steps:
        return ""
    t0 = steps[0].at
    return "\n".join(f"+{int((st.at - t0).total_seconds()):>6}s  {st.line}" for st in steps)
