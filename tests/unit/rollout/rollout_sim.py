"""A small AutoScalingGroup simulator for the planner's property tests (test code, not product code).

It plays both AWS and the operator:
- AWS: instances boot (Pending, Pending:Wait with lifecycle hooks, InService), pass or fail health
  (ASG health, target health, status checks) after random delays, drain when terminating; the ASG keeps
  Pending+InService at desired (launching from the launch template's image, scaling in unprotected
  instances), replaces ASG-Unhealthy instances unless ReplaceUnhealthy is suspended; ExitStandby raises
  desired by one; the outside world kills instances, changes desired and fires alarms on a schedule, and
  (``World.race``) changes desired right after an observation, before the operator writes.
- what the planner sees (``World.unknown``): some observations come back incomplete (a status check
  missing, a target group not found) and their health is *unknown*; the checks judge the true state.
- the operator: ``apply(action)`` persists ``action.record`` to the tags first, then does what the action
  says; ``crash`` modes drop the action, persist only the record, do only part of it, or lose the reply of
  a write that was made (the operator then makes it again, and AWS answers a repeated write as done).
  Before a capacity write it re-reads desired; when that moved since the observation it plans again.

Everything random comes from ``random.Random(seed)`` streams, so a run is reproducible from its seed.
Instance fates are drawn from a stream keyed by the instance's launch sequence number (and image), so two
runs that launch in the same order see the same fates.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from phoenix_fleet.rollout import (
    FORWARD,
    Action,
    Done,
    Fail,
    FleetState,
    Halt,
    Instance,
    Launch,
    Policy,
    PrepareInstances,
    Restore,
    RolloutRecord,
    SetLaunchTemplate,
    StartRollback,
    SuspendProcesses,
    Terminate,
    TerminateWarmed,
    Wait,
    WarmInstance,
    adopt_baseline,
    firing_alarms,
    healthy_ids,
    is_current,
    plan,
)

T0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
_TRACE = bool(__import__("os").environ.get("SIM_TRACE"))
TG = "arn:aws:elasticloadbalancing:us-east-1:111122223333:targetgroup/web/0123456789abcdef"
OLD, NEW, OTHER = "ami-0old", "ami-0new", "ami-0other"
ALARM = "web-5xx"


@dataclass
class Fate:
    """How a launched instance will behave."""

    boot: int  # seconds Pending (part of it in Pending:Wait when hooks are on)
    to_healthy: int  # seconds after InService until the target is healthy
    to_status_ok: int  # seconds after launch until status checks are ok
    fail: str | None = None  # None | "never" | "elb" | "asg" | "impaired" | "abandon" (World.abandon_after)
    fail_after: int = 0  # seconds after InService when it goes bad


@dataclass
class SimInstance:
    id: str
    image: str
    az: str
    launch: datetime
    fate: Fate
    protected: bool = False
    standby: bool = False
    exit_pending_until: datetime | None = None
    terminating_since: datetime | None = None
    terminated_by: str | None = None

    @property
    def in_service_at(self) -> datetime:
        return self.launch + timedelta(seconds=self.fate.boot)

    def goes_bad_at(self) -> datetime | None:
        if self.fate.fail in ("elb", "asg", "impaired"):
            return self.in_service_at + timedelta(seconds=self.fate.fail_after)
        return None


@dataclass
class Chaos:
    at: int  # seconds after start
    kind: str  # "kill" | "scale" | "alarm" | "sick"
    value: int = 0


@dataclass
class World:
    """Knobs of the simulated cloud."""

    seed: int = 0
    hooks: bool = False
    drain: int = 30
    replace_unhealthy_after: int = 60
    bad_images: frozenset[str] = frozenset()
    flake: float = 0.0  # chance that one new instance of a good image fails
    chaos: tuple[Chaos, ...] = ()
    boot_range: tuple[int, int] = (20, 150)
    launch_delay: int = 0  # seconds before the ASG acts on a capacity shortfall
    unknown: float = 0.0  # chance that an observation leaves some health unknown
    race: float = 0.0  # chance that desired changes from outside right after an observation
    #: a launch lifecycle hook nobody completes (heartbeat seconds): every instance launched from now on sits
    #: in Pending:Wait until its heartbeat times out, then the default result ABANDON terminates it and the
    #: ASG launches the next one (a stream of fresh instances that never turn healthy)
    abandon_after: int | None = None
    #: where the ASG launches: "fewest" (AWS: the AZ with the fewest instances, ties by name) or "first" (always
    #: the first AZ: moto's placement, or an AZ short of capacity sending every launch elsewhere)
    placement: str = "fewest"
    #: a warm pool of this many warmed instances (0: none), warmed on the old image before the rollout: AWS keeps
    #: it at its size from the current launch template, and every launch draws from it first
    warm_pool: int = 0


class SimAsg:
    def __init__(self, world: World, *, desired: int, min_size: int, max_size: int, lt_image: str,
                 instances: list[SimInstance], target_groups: tuple[str, ...] = (TG,),
                 zones: tuple[str, ...] = ()) -> None:
        self.world = world
        #: the group's AZs (AWS places each launch into the one with the fewest instances, ties by name)
        self.zones = tuple(sorted(set(zones) | {i.az for i in instances})) or ("us-east-1a", "us-east-1b")
        self.now = T0
        self.desired, self.min_size, self.max_size = desired, min_size, max_size
        self.lt_image = lt_image
        self.instances: dict[str, SimInstance] = {i.id: i for i in instances}
        self.gone: dict[str, SimInstance] = {}
        self.target_groups = target_groups
        self.suspended: set[str] = set()
        self.tags: dict[str, str] = {}
        self.alarm_until: datetime | None = None
        self.seq = 0
        self.chaos_rng = random.Random(f"chaos-{world.seed}")
        self.pending_chaos = sorted(world.chaos, key=lambda c: c.at)
        self.planner_terminated: list[tuple[str, str]] = []  # (id, image at the time)
        self.external_kills = 0
        self.abandoned = 0  # instances the lifecycle hook's heartbeat timeout abandoned (World.abandon_after)
        self.launch_due: datetime | None = None
        self.events = 0
        self.no_capacity_until: datetime | None = None
        self.mask_rng = random.Random(f"mask-{world.seed}")
        self.race_rng = random.Random(f"race-{world.seed}")
        #: the baseline the rollout must end on, tracked independently of the planner: the original desired,
        #: plus instances brought back from standby, and an outside change of desired taken as the new
        #: desired minus the surge our writes had added at that moment
        self.oracle_base = desired
        #: the warm pool: (id, image, warmed at); refilled from ``lt_image`` by ``_reconcile``
        self.warm: list[tuple[str, str, datetime]] = [
            (f"i-warm{k:03d}", OLD, T0 - timedelta(hours=1)) for k in range(world.warm_pool)]
        self.drawn: list[tuple[str, str]] = []  # (id, image) of the launches served from the pool
        self._reconcile()

    # -- fates -------------------------------------------------------------------------------------------
    def _fate(self, image: str) -> Fate:
        rng = random.Random(f"fate-{self.world.seed}-{self.seq}")
        lo, hi = self.world.boot_range
        fate = Fate(boot=rng.randint(lo, hi), to_healthy=rng.randint(0, 60), to_status_ok=rng.randint(20, 120))
        if self.world.abandon_after is not None:
            return Fate(boot=10**9, to_healthy=0, to_status_ok=fate.to_status_ok, fail="abandon")
        bad = image in self.world.bad_images or rng.random() < self.world.flake
        if bad:
            fate.fail = rng.choice(["never", "elb", "asg", "impaired"])
            fate.fail_after = rng.randint(0, 120)
        return fate

    def _launch(self, az: str | None = None) -> SimInstance:
        self.seq += 1
        azs = self.zones
        if az is None and self.world.placement == "first":
            az = azs[0]
        if az is None:
            per_az = Counter(i.az for i in self.instances.values() if self._counts(i))
            az = min(azs, key=lambda a: (per_az[a], a))
        if self.warm:  # AWS: a scale-out moves a warmed instance into the group first (with its own image)
            iid, image, _ = self.warm.pop(0)
            self.drawn.append((iid, image))
        else:
            iid, image = f"i-{self.seq:05d}", self.lt_image
        inst = SimInstance(id=iid, image=image, az=az, launch=self.now, fate=self._fate(image))
        self.instances[inst.id] = inst
        return inst

    # -- AWS behaviour -----------------------------------------------------------------------------------
    def _counts(self, i: SimInstance) -> bool:
        return not i.standby and i.terminating_since is None

    def _terminate(self, i: SimInstance, by: str) -> None:
        if i.terminating_since is None:
            i.terminating_since = self.now
            i.terminated_by = by

    def _reconcile(self) -> None:
        live = [i for i in self.instances.values() if self._counts(i)]
        if len(live) < self.desired and "Launch" not in self.suspended:
            due = self.now + timedelta(seconds=self.world.launch_delay)
            if self.no_capacity_until is not None:
                due = max(due, self.no_capacity_until)
            if self.launch_due is None:
                self.launch_due = due
            if self.launch_due <= self.now:
                self.launch_due = None
                for _ in range(self.desired - len(live)):
                    self._launch()
        else:
            self.launch_due = None
        if len(live) > self.desired and "Terminate" not in self.suspended:
            per_az = Counter(i.az for i in live)
            cands = [i for i in live if not i.protected]
            for _ in range(len(live) - self.desired):
                if not cands:
                    break
                victim = min(cands, key=lambda i: (-per_az[i.az], i.launch, i.id))
                cands.remove(victim)
                per_az[victim.az] -= 1
                self._terminate(victim, "asg")
        while len(self.warm) < self.world.warm_pool:  # the pool refills from the current launch template
            self.seq += 1
            self.warm.append((f"i-w{self.seq:05d}", self.lt_image, self.now))

    def _abandon_at(self, i: SimInstance) -> datetime:
        assert self.world.abandon_after is not None
        return i.launch + timedelta(seconds=self.world.abandon_after)

    def _next_event(self, until: datetime) -> datetime | None:
        times: list[datetime] = []
        for i in self.instances.values():
            if i.terminating_since is not None:
                times.append(i.terminating_since + timedelta(seconds=self.world.drain))
            elif i.fate.fail == "abandon":
                times.append(self._abandon_at(i))
            elif i.fate.fail == "asg" and "ReplaceUnhealthy" not in self.suspended and not i.standby:
                bad = i.goes_bad_at()
                assert bad is not None
                times.append(bad + timedelta(seconds=self.world.replace_unhealthy_after))
        if self.pending_chaos:
            times.append(T0 + timedelta(seconds=self.pending_chaos[0].at))
        if self.launch_due is not None:
            times.append(self.launch_due)
        future = [t for t in times if t <= until]
        if not future:
            return None
        self.events += 1
        assert self.events < 100_000, "the simulator is not making progress"
        return min(future)

    def advance_to(self, until: datetime) -> None:
        while True:
            t = self._next_event(until)
            if t is None:
                break
            self.now = max(self.now, t)
            for i in list(self.instances.values()):
                if i.terminating_since is not None and i.terminating_since + timedelta(seconds=self.world.drain) <= self.now:
                    self.gone[i.id] = self.instances.pop(i.id)
                elif i.fate.fail == "abandon" and i.terminating_since is None and self._abandon_at(i) <= self.now:
                    self._terminate(i, "hook")
                    self.abandoned += 1
                elif (i.fate.fail == "asg" and i.terminating_since is None and not i.standby
                      and "ReplaceUnhealthy" not in self.suspended):
                    bad = i.goes_bad_at()
                    assert bad is not None
                    if bad + timedelta(seconds=self.world.replace_unhealthy_after) <= self.now:
                        self._terminate(i, "asg")
            while self.pending_chaos and T0 + timedelta(seconds=self.pending_chaos[0].at) <= self.now:
                self._chaos(self.pending_chaos.pop(0))
            self._reconcile()
        self.now = max(self.now, until)
        self._reconcile()

    def _chaos(self, c: Chaos) -> None:
        rng = self.chaos_rng
        live = sorted((i for i in self.instances.values() if self._counts(i)), key=lambda i: i.id)
        if c.kind == "kill" and live:
            self._terminate(rng.choice(live), "external")
            self.external_kills += 1
        elif c.kind == "scale":
            self.outside_desired(self.desired + c.value)
        elif c.kind == "no-capacity":
            self.no_capacity_until = self.now + timedelta(seconds=abs(c.value) * 300)
        elif c.kind == "alarm":
            self.alarm_until = self.now + timedelta(seconds=max(120, abs(c.value) * 600))
        elif c.kind == "sick" and live:
            victim = rng.choice(live)
            victim.fate = Fate(boot=victim.fate.boot, to_healthy=victim.fate.to_healthy,
                               to_status_ok=victim.fate.to_status_ok, fail="elb",
                               fail_after=max(0, int((self.now - victim.in_service_at).total_seconds())))
        self._reconcile()

    def outside_desired(self, value: int) -> None:
        """Someone else sets desired (clamped to min/max, as AWS requires)."""
        new = min(self.max_size, max(self.min_size, value))
        if new != self.desired:
            if new < self.desired:  # a scale-in: the end is what was set
                self.oracle_base = new
            else:  # a scale-out counts the surge our writes had added
                self.oracle_base = max(new - max(0, self.desired - self.oracle_base), min(new, self.min_size))
            self.desired = new
            self._reconcile()  # the ASG acts on it at once (not inside our next action)

    def race_now(self) -> bool:
        """Maybe change desired from outside right now (between an observation and the operator's write)."""
        if not self.world.race or self.race_rng.random() >= self.world.race:
            return False
        self.outside_desired(self.desired + self.race_rng.choice([-2, -1, 1, 2]))
        return True

    def mask(self, state: FleetState) -> FleetState:
        """What an observation with tolerated API errors shows: some health unknown (never better or worse)."""
        rng = self.mask_rng
        if not self.world.unknown or rng.random() >= self.world.unknown:
            return state
        mode = rng.choice(["status", "status", "tg", "some-elb"])
        insts = []
        for i in state.instances:
            if mode == "status" and rng.random() < 0.5:
                i = replace(i, status=None)
            elif mode == "tg" or (mode == "some-elb" and rng.random() < 0.3):
                i = replace(i, unknown=i.unknown | {"elb"}, target_health={})
            insts.append(i)
        return replace(state, instances=tuple(insts), observe_errors=(f"simulated API error ({mode})",))

    # -- observation -------------------------------------------------------------------------------------
    def _observe_instance(self, i: SimInstance) -> Instance:
        t, f = self.now, i.fate
        bad_at = i.goes_bad_at()
        is_bad = bad_at is not None and t >= bad_at
        th: dict[str, str] = {}
        if i.terminating_since is not None:
            hook = self.world.hooks and t < i.terminating_since + timedelta(seconds=self.world.drain / 2)
            lifecycle = "Terminating:Wait" if hook else "Terminating"
            th = {tg: "draining" for tg in self.target_groups}
        elif i.standby:
            lifecycle = "Standby"
        elif i.exit_pending_until is not None and t < i.exit_pending_until:
            lifecycle = "Pending"
        elif t < i.in_service_at:
            hooked = (self.world.hooks or f.fail == "abandon") and t >= i.launch + timedelta(seconds=5)
            lifecycle = "Pending:Wait" if hooked else "Pending"
        else:
            lifecycle = "InService"
            ready = t >= i.in_service_at + timedelta(seconds=f.to_healthy)
            if f.fail == "never":
                state = "initial"
            elif f.fail == "elb" and is_bad:
                state = "unhealthy"
            else:
                state = "healthy" if ready else "initial"
            th = {tg: state for tg in self.target_groups}
        status = "ok" if t >= i.launch + timedelta(seconds=f.to_status_ok) else "initializing"
        if f.fail == "impaired" and is_bad:
            status = "impaired"
        if f.fail == "never" and not self.target_groups:
            status = "initializing"
        asg_health = "Unhealthy" if f.fail == "asg" and is_bad else "Healthy"
        return Instance(instance_id=i.id, image_id=i.image, az=i.az, lifecycle=lifecycle,
                        launch_time=i.launch, asg_health=asg_health, target_health=th, status=status,
                        protected=i.protected)

    def observe(self) -> FleetState:
        alarms = frozenset({ALARM}) if self.alarm_until is not None and self.now < self.alarm_until else frozenset()
        return FleetState(
            asg_name="web-asg", desired=self.desired, min_size=self.min_size, max_size=self.max_size,
            instances=tuple(self._observe_instance(i) for i in sorted(self.instances.values(), key=lambda i: i.id)),
            now=self.now, target_group_arns=self.target_groups, health_check_type="ELB",
            alarms_in_alarm=alarms, suspended_processes=frozenset(self.suspended),
            launch_image_id=self.lt_image, availability_zones=self.zones,
            warm_pool_size=self.world.warm_pool if self.world.warm_pool else None,
            warm=tuple(WarmInstance(iid, image, "Warmed:Stopped", at) for iid, image, at in self.warm),
        )

    def record(self) -> RolloutRecord | None:
        return RolloutRecord.from_tags(self.tags)

    # -- the operator ------------------------------------------------------------------------------------
    def apply(self, action: Action, crash: str | None = None, cut: int = 0, *, again: bool = False) -> None:
        """Do what the operator does for `action`. crash: None | "drop" | "record-only" | "partial" | "lost"
        (made, its reply lost: the operator makes it again; ``again``: AWS answers what is already done as
        done, e.g. a terminate of an instance already terminating)."""
        if crash == "drop":
            return
        if crash == "lost":
            self.apply(action)
            self.apply(action, again=True)
            return
        if action.record is not None:
            self.tags = action.record.to_tags()
        if crash == "record-only":
            return
        partial = crash == "partial"
        if isinstance(action, Launch):
            assert action.new_max >= action.new_desired
            self.max_size = max(self.max_size, action.new_max)
            if partial:
                return
            assert self.min_size <= action.new_desired <= self.max_size
            self.desired = action.new_desired
        elif isinstance(action, Terminate):
            ids = action.instance_ids[: cut % max(1, len(action.instance_ids))] if partial else action.instance_ids
            for iid in ids:
                inst = self.instances.get(iid) or self.gone[iid]
                if again and (inst.terminating_since is not None or iid in self.gone):
                    continue  # AWS: ValidationError (already terminating / not found): done
                if inst.terminating_since is not None and inst.terminated_by != "planner":
                    continue  # the ASG (a scale-in from outside) got there first: AWS answers done
                assert inst.terminating_since is None, f"{iid} terminated twice"
                assert not inst.standby, f"{iid} terminated while in standby"
                self.planner_terminated.append((iid, inst.image))
                self._terminate(inst, "planner")
                if action.decrement_desired:
                    self.desired -= 1
                    assert self.desired >= self.min_size, "decrement below min size"
        elif isinstance(action, TerminateWarmed):
            ids = action.instance_ids[: cut % max(1, len(action.instance_ids))] if partial else action.instance_ids
            present = {w[0] for w in self.warm}
            for iid in ids:
                if iid not in present:
                    assert again, f"terminates {iid}, which is not in the warm pool"
                    continue  # AWS: ValidationError (gone): done
                self.planner_terminated.append((iid, next(w[1] for w in self.warm if w[0] == iid)))
            self.warm = [w for w in self.warm if w[0] not in ids]
        elif isinstance(action, PrepareInstances):
            if action.new_max is not None:
                self.max_size = max(self.max_size, action.new_max)
            exits = action.exit_standby[: cut % max(1, len(action.exit_standby))] if partial else action.exit_standby
            for iid in exits:
                inst = self.instances[iid]
                if again and not inst.standby:
                    continue  # AWS: ValidationError (not in Standby): done
                assert inst.standby
                inst.standby = False
                inst.exit_pending_until = self.now + timedelta(seconds=10)
                self.desired += 1
                self.oracle_base += 1
                assert self.desired <= self.max_size, "ExitStandby beyond max size"
            if not partial:
                for iid in action.unprotect:
                    self.instances[iid].protected = False
        elif isinstance(action, SuspendProcesses):
            self.suspended |= set(action.processes)
        elif isinstance(action, SetLaunchTemplate):
            self.lt_image = action.image_id
        elif isinstance(action, StartRollback):
            if not partial:
                assert action.record is not None
                self.lt_image = action.record.target_image
        elif isinstance(action, Restore):
            assert action.min_size <= action.desired <= action.max_size
            self.min_size, self.max_size, self.desired = action.min_size, action.max_size, action.desired
            if not partial:
                self.suspended -= set(action.resume_processes)
        elif isinstance(action, Done):
            if not partial:
                self.tags = {}
        elif isinstance(action, Wait | Halt | Fail):
            pass
        else:  # pragma: no cover
            raise AssertionError(f"unexpected action {action}")
        self._reconcile()


# ----------------------------------------------------------------------------------------------------------
# driving the planner


@dataclass
class Run:
    actions: list[Action] = field(default_factory=list)
    final: Action | None = None
    steps: int = 0
    records: list[RolloutRecord] = field(default_factory=list)
    times: list[datetime] = field(default_factory=list)  # when each action was planned (sim time)


class InvariantError(AssertionError):
    pass


def _healthy(state: FleetState, record: RolloutRecord, policy: Policy) -> frozenset[str]:
    return healthy_ids(state, policy, alarms=record.phase == FORWARD)


def _balancing(state: FleetState, inst: Instance, action: Terminate) -> bool:
    """May a balancing step take this instance on the target out? Only from an AZ with the most live
    instances (within the batch's own earlier picks), taking a surplus (decrement) or, without, while the
    group's AZs differ by more than one."""
    counts = state.az_counts()
    top, low = max(counts.values()), min(counts.values())
    if counts.get(inst.az, 0) < top - (len(action.instance_ids) - 1):
        return False
    return action.decrement_desired or top - low > 1


def check_action(state: FleetState, record: RolloutRecord, policy: Policy, action: Action) -> None:
    """Invariants that hold for every action the planner returns, judged on the state it planned on."""
    policy = record.policy_for(policy)
    rec = adopt_baseline(state, record, policy)
    base = rec.base
    floor = policy.floor_for(base)
    batch = policy.batch_for(base)
    members = {i.instance_id: i for i in state.members}
    healthy = _healthy(state, rec, policy)
    surging = policy.strategy == "surge" and policy.max_surge > 0
    # a rollback removes outdated instances still launching at once (they are not healthy: no floor cost;
    # without decrement when they are no surplus: the ASG replaces them from the previous version)
    launching = isinstance(action, Terminate) and rec.phase == "rollback" and all(
        i in members and members[i].pending for i in action.instance_ids)
    if isinstance(action, Terminate):
        ids = action.instance_ids
        if len(set(ids)) != len(ids) or not ids:
            raise InvariantError(f"bad id list {ids}")
        if len(ids) > batch:
            raise InvariantError(f"terminates {len(ids)} > batch {batch}")
        for iid in ids:
            inst = members.get(iid)
            if inst is None or inst.terminating:
                raise InvariantError(f"terminates {iid} which is not a settled member")
            if inst.protected or inst.standby:
                raise InvariantError(f"terminates protected/standby {iid} without preparing it")
            if rec.phase == "failed":
                if iid in healthy:
                    raise InvariantError(f"halting terminates healthy {iid}")
            elif is_current(inst, state, rec, policy) and not _balancing(state, inst, action):
                raise InvariantError(f"terminates {iid} which is already on the target {rec.target_image}"
                                     f" (launched {inst.launch_time}, replace_before {rec.replace_before})")
        lost = len(set(ids) & healthy)
        if lost and len(healthy) - lost < floor:
            raise InvariantError(f"healthy {len(healthy)} - {lost} < floor {floor}")
        if action.decrement_desired:
            if len(ids) > state.desired - base:
                raise InvariantError(f"decrements {len(ids)} but surplus is {state.desired - base}")
        elif rec.phase == "failed" or (surging and not launching):
            raise InvariantError("terminate without decrement while surging/halting")
    if rec.phase == "forward" and firing_alarms(state, policy) and not isinstance(action, StartRollback | Halt):
        raise InvariantError(f"{action.kind} while {firing_alarms(state, policy)} in ALARM: must roll back or halt")
    if isinstance(action, Terminate | Launch) and rec.phase != "failed" and not launching:
        # the rules before any new batch: nothing in transition (terminations complete, launches in
        # service), the ASG at its desired capacity (capacity killed from outside is replaced first),
        # every instance on the target healthy (the batch proved itself), the soak over
        unsuspended = set(rec.suspended) - state.suspended_processes
        if unsuspended:
            raise InvariantError(f"{action.kind} while {unsuspended} are not suspended")
        if rec.phase == "forward" and firing_alarms(state, policy):
            raise InvariantError(f"{action.kind} while {firing_alarms(state, policy)} in ALARM")
        moving = [i.instance_id for i in state.members if i.in_transition]
        if moving:
            raise InvariantError(f"{action.kind} while {moving} are in transition")
        if len(state.live) != state.desired:
            raise InvariantError(f"{action.kind} with {len(state.live)} live for desired {state.desired}")
        current = [i for i in state.live if is_current(i, state, rec, policy)]
        sick = [i.instance_id for i in current if i.instance_id not in healthy]
        if sick:
            raise InvariantError(f"{action.kind} while new instances {sick} are not healthy")
        on_target = [i.launch_time for i in current]
        if isinstance(action, Terminate) and rec.phase == "forward" and policy.soak_seconds and on_target:
            soaked = rec.soak_from is not None and rec.soak_from > max(on_target)
            if not soaked or state.now < rec.soak_from + timedelta(seconds=policy.soak_seconds):  # type: ignore[operator]
                raise InvariantError(f"terminate before the soak of the newest batch (soak from {rec.soak_from})")
    if isinstance(action, Launch):
        # never fight the ASG: at most max_surge above what the ASG has now
        if action.new_desired > state.desired + policy.max_surge:
            raise InvariantError(f"launch to {action.new_desired} from observed desired {state.desired}")
    if isinstance(action, Restore) and action.desired > state.desired:
        raise InvariantError(f"restore raises desired {state.desired} -> {action.desired}")
    if isinstance(action, Launch):
        if not surging or rec.phase == "failed":
            raise InvariantError("launch without surge")
        if action.count > batch or action.new_desired != base + action.count or action.count > policy.max_surge:
            raise InvariantError(f"launch {action} beyond batch {batch}/surge {policy.max_surge} over {base}")
        if action.new_max < action.new_desired:
            raise InvariantError("new_max below new_desired")


def check_after(before: FleetState, after: FleetState, record: RolloutRecord, policy: Policy,
                action: Action) -> None:
    """Applying the action (same instant) never takes healthy capacity below the floor."""
    policy = record.policy_for(policy)
    rec = adopt_baseline(before, record, policy)
    floor = policy.floor_for(rec.base)
    hb = len(_healthy(before, rec, policy))
    ha = len(_healthy(after, rec, policy))
    if ha < min(floor, hb):
        raise InvariantError(f"{action.kind} dropped healthy {hb} -> {ha} below floor {floor}")


def check_oracle(sim: SimAsg, last: RolloutRecord, policy: Policy, final: Action) -> None:
    """Outside changes of desired were adopted, never undone: the end is at the baseline the simulator
    tracked independently (Done), or the rollout's baseline is it (Fail, which may keep a surplus)."""
    state = sim.observe()
    base = adopt_baseline(state, last, last.policy_for(policy)).base
    if base != sim.oracle_base:
        raise InvariantError(f"{final.kind} with baseline {base}, but outside changes set it to {sim.oracle_base}")
    if isinstance(final, Done) and state.desired != sim.oracle_base:
        raise InvariantError(f"Done at desired {state.desired}, outside changes set it to {sim.oracle_base}")


def check_final(sim: SimAsg, first: RolloutRecord, last: RolloutRecord, policy: Policy, final: Action) -> None:
    state = sim.observe()
    policy = first.policy_for(policy)
    live = state.live
    desired, min_size, max_size = state.desired, state.min_size, state.max_size
    if sim.suspended & set(first.suspended):
        raise InvariantError(f"processes left suspended: {sim.suspended & set(first.suspended)}")
    if isinstance(final, Done):
        target = last.target_image
        skipped = set(final.skipped)
        mixed = [i.instance_id for i in live if not is_current(i, state, last, policy) and i.instance_id not in skipped]
        if mixed:
            raise InvariantError(f"Done but {mixed} not on {target} (or launched before {last.replace_before})")
        if final.outcome == "completed":
            assert last.phase == "forward" and target == first.target_image
        else:
            assert last.phase == "rollback" and target == first.previous_image
            assert policy.on_failure == "rollback"
        rec = adopt_baseline(state, last, policy)
        if (desired, min_size, max_size) != rec.restore_capacity():
            raise InvariantError(f"Done at {desired}/{min_size}/{max_size}, baseline {rec.base}")
        if len(live) != desired:
            raise InvariantError(f"Done with {len(live)} live for desired {desired}")
        healthy = _healthy(state, last, policy)
        sick = [i.instance_id for i in live if is_current(i, state, last, policy) and i.instance_id not in healthy]
        if sick:
            raise InvariantError(f"Done while {sick} are not healthy")
        for iid in skipped:
            inst = state.by_id()[iid]
            assert not is_current(inst, state, last, policy) and (inst.protected or inst.standby)
        if state.warm_pool_size is not None:
            off = [w.instance_id for w in state.warm if not last.is_current(w.image_id, w.launch_time)]
            if off or len(state.warm) < state.warm_pool_size:
                raise InvariantError(f"Done with the warm pool not on {target}: {off} of {len(state.warm)}")
    elif isinstance(final, Fail):
        if final.fail_kind.value == "halted":
            assert policy.on_failure == "halt" or not first.previous_image, final
        if final.fail_kind.value == "rollback-failed":
            assert policy.on_failure == "rollback"
        rec = adopt_baseline(state, last, policy)
        _, mn, mx = rec.restore_capacity(desired)
        if (min_size, max_size) != (mn, mx) or desired < rec.base:
            raise InvariantError(f"Fail left {desired}/{min_size}/{max_size} (baseline {rec.base})")
        assert final.reason
    else:  # pragma: no cover
        raise InvariantError(f"ended on {final}")


def writes_capacity(action: Action) -> bool:
    """Does the operator write desired capacity for this action (absolutely, or by a decrement/ExitStandby)?"""
    return (
        isinstance(action, Launch | Restore)
        or (isinstance(action, Terminate) and action.decrement_desired)
        or (isinstance(action, PrepareInstances) and bool(action.exit_standby))
    )


def drive(sim: SimAsg, policy: Policy, record: RolloutRecord, *, max_steps: int = 4000, poll: int = 15,
          crashes: dict[int, tuple[str, int]] | None = None, restart_delay: int = 0,
          check: bool = True, oracle: bool = False) -> Run:
    """The operator loop: observe, plan, check, act, defer. ``crashes`` maps a step number to a crash mode
    and a cut; after a crash the in-memory loop state is dropped and the loop resumes from tags + AWS.
    The planner sees ``sim.mask(observation)`` (some health unknown, World.unknown); every check judges the
    true state. ``oracle``: the end capacity must be the baseline the simulator tracked on its own (runs
    without crashes: a crash between recording a write and making it leaves that reading ambiguous)."""
    sim.tags = record.to_tags()
    run = Run()
    first = record
    crashes = crashes or {}
    interval = poll
    last_done: Action | None = None
    for step in range(max_steps):
        run.steps = step + 1
        state = sim.observe()
        seen = sim.mask(state)
        rec = sim.record()
        assert rec is not None, "the record vanished before the rollout ended"
        action = plan(seen, rec, policy)
        assert plan(seen, rec, policy) == action, "plan is not deterministic"
        if check:
            check_action(state, rec, policy, action)
        run.actions.append(action)
        run.times.append(state.now)
        if isinstance(action, Done | Fail):
            sim.apply(action)
            run.final = action
            if check:
                check_final(sim, first, rec, policy, action)
                if oracle:
                    check_oracle(sim, rec, policy, action)
            return run
        # the outside world may move desired right now; the operator re-reads desired before a capacity
        # write and, when it moved, writes nothing and plans again (its record is not persisted either)
        raced = sim.race_now()
        if raced and writes_capacity(action):
            # what the operator keeps of this step when it writes nothing: what the observation settled
            settled = adopt_baseline(state, rec, rec.policy_for(policy))
            if settled != rec:
                sim.tags = settled.to_tags()
        if _TRACE:
            print(f"{step} t={int((sim.now - T0).total_seconds())} d={state.desired}->{sim.desired} "
                  f"base={rec.base} w={rec.desired_written} oracle={sim.oracle_base} raced={raced} "
                  f"{action.kind} {getattr(action, 'instance_ids', '')} {getattr(action, 'new_desired', '')} "
                  f"rec={action.record.base if action.record else '-'}/{action.record.desired_written if action.record else '-'}")
        if raced and writes_capacity(action):
            continue
        mode = crashes.get(step)
        sim.apply(action, crash=mode[0] if mode else None, cut=mode[1] if mode else 0)
        if check and mode is None and not raced:  # (a scale-in from outside is not our doing)
            check_after(state, sim.observe(), rec, policy, action)
        if mode is not None:
            sim.advance_to(sim.now + timedelta(seconds=restart_delay))
            continue
        last_done = action
        if isinstance(action, Wait):
            # a trigger polls with an adaptive interval: it backs off while the same wait goes on
            same = last_done is not None and action.same_wait(last_done)
            interval = min(600, interval * 2) if same else poll
            step_to = action.until if action.condition.timer else min(action.until, sim.now + timedelta(seconds=interval))
            sim.advance_to(max(step_to, sim.now + timedelta(seconds=1)))
        else:
            interval = poll
            sim.advance_to(sim.now + timedelta(seconds=1))
    raise InvariantError(f"no terminal action after {max_steps} steps; last: {run.actions[-3:]}")


# ----------------------------------------------------------------------------------------------------------
# building fleets


def make_fleet(world: World, *, n: int, azs: int, on_target: int = 0, other: int = 0, protected: int = 0,
               standby: int = 0, unhealthy_old: int = 0, min_size: int | None = None,
               max_extra: int = 0, lt_image: str = NEW) -> SimAsg:
    """`n` in-service instances (`on_target` already on NEW, `other` on a third image, the rest on OLD),
    plus `standby` extra instances in Standby on OLD. Launched an hour before T0, healthy."""
    zones = [f"us-east-1{c}" for c in "abc"[:azs]]
    insts = []
    for k in range(n + standby):
        image = NEW if k < on_target else OTHER if k < on_target + other else OLD
        fate = Fate(boot=30, to_healthy=10, to_status_ok=60)
        if k >= n - unhealthy_old and k < n and image != NEW:
            fate = Fate(boot=30, to_healthy=10, to_status_ok=60, fail="elb", fail_after=0)
        insts.append(SimInstance(
            id=f"i-init{k:03d}", image=image, az=zones[k % len(zones)],
            launch=T0 - timedelta(hours=1, seconds=k), fate=fate,
            protected=(n - protected <= k < n), standby=k >= n,
        ))
    lo = n if min_size is None else min(min_size, n)
    return SimAsg(world, desired=n, min_size=lo, max_size=n + max_extra, lt_image=lt_image, instances=insts,
                  zones=tuple(zones))


def begin(sim: SimAsg, policy: Policy, *, previous: str | None = OLD, rollout_id: str = "r-test",
          replace_before: datetime | None = None) -> RolloutRecord:
    return RolloutRecord.begin(
        rollout_id, sim.observe(), policy, target_image=NEW, previous_image=previous,
        target_lt="lt-0123456789abcdef0:8", previous_lt="lt-0123456789abcdef0:7",
        target_label="2026.11.30-1", previous_label="2026.11.23-1", replace_before=replace_before,
    )
