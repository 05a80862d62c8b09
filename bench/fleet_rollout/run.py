"""Benchmark: one role of many ASGs rolled by a real Airflow through one triggerer, against its physical bound,
the API budget and a plain-Airflow baseline (sensors in reschedule mode), in the same run.

    uv run python bench/fleet_rollout/run.py                        # 200 ASGs x 5 instances, 3 regions, 20 at a time
    uv run python bench/fleet_rollout/run.py --asgs 20 --concurrency 10 --skip-baseline   # a quick look

Setup (not measured): the sandbox server in its own process (``python -m sandbox serve``, realism ``plain``), with
per region the role's release AMIs (``sandbox.scale_fleet``: old and new, ``phoenix:verified``, the SSM pointers at
the new one), one launch template (v1 old AMI) and ``--asgs`` ASGs spread over ``--regions`` of ``--instances``
each, all InService on v1; then v2 (the new AMI) becomes the templates' default, which is what the native apply
does (the rollout's own apply then finds nothing to change). A real Airflow (``tests/e2e/real_airflow.py``:
api-server, scheduler with the LocalExecutor and ``--slots`` worker slots, dag-processor, triggerer; SQLite) is
started on a generated fleet config: one role ``fleet`` (native backend, surge ``--batch`` at a time,
``max_concurrent_asgs: --concurrency``, health signals asg + ec2_status). Then the sandbox switches to
**time-based** realism: an instance boots for ``L = --boot`` s, then its status checks take ``W = --warmup`` s.

Measured, for each run (phoenix: ``fleet_rollout_fleet`` triggered through REST, every wait deferred or polled
inline as the DAG does; baseline: ``bench_reschedule_rollout``, the same recycle code stepped by a sensor in
reschedule mode, ``baseline_dag.py``):

* **wall / bound**: bound = ceil(ASGs / concurrency) x batches x (L + W), one ASG's own bound per wave of
  ``--concurrency`` ASGs. Printed for the recycle phase (the end of the canary, or the start of the first recycle,
  to the last recycle's end) and for the whole run (trigger to success; it also holds plan, apply, check, the
  canary, the health gate and the summary). Goal for the recycle: <= 1.25;
* **AWS calls per second per region, by API**, counted at the sandbox server (``/phoenix-sandbox/calls``): peak
  (one-second windows) and mean over the run, all callers and the triggers' polls alone (aiobotocore calls to the
  services they poll: autoscaling, ec2, elbv2, cloudwatch), against the triggerer's configured budget
  (``environments.<env>.api_budget.calls_per_second``). S3 calls through aiobotocore are not the triggers' (they
  call no S3 API): s3fs under the object-storage XCom backend, in the processes that read and write XComs;
* **worker slots**: sampled every ``--sample`` s through REST (task instances running / deferred / up for
  reschedule), integrated to slot-seconds; the seconds the recycle tasks held a slot polling waits in the worker
  (their summaries' ``inline_wait_seconds``); goal zero;
* **CPU**: each component's process group (utime + stime, reaped children included) over the run, from /proc; the
  triggerer's share of all of it and of one core.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "plugins"))

ROLE = "fleet"
REGIONS = ("us-east-1", "eu-west-1", "us-west-2")
GOAL = 1.25
STATES = ("running", "deferred", "up_for_reschedule", "queued")
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# ------------------------------------------------------------------------------------------------ the sandbox


class Sandbox:
    """``python -m sandbox serve`` in its own process group, driven over HTTP."""

    def __init__(self, state_dir: str) -> None:
        from tests.e2e.real_airflow import free_port

        self.port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sandbox", "serve", "--dir", state_dir, "--port", str(self.port), "--profile",
             "plain", "--quiet"],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                self.http("info")
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("the sandbox server did not start") from None
                time.sleep(0.2)

    def http(self, path: str, body: dict[str, Any] | None = None, method: str | None = None) -> Any:
        req = urllib.request.Request(
            f"{self.endpoint_url}/phoenix-sandbox/{path}",
            data=None if body is None else json.dumps(body).encode(),
            method=method or ("GET" if body is None else "POST"), headers={"Content-Type": "application/json"},
        )
        with _OPENER.open(req, timeout=120) as resp:
            return json.loads(resp.read() or b"null")

    def client(self, service: str, region: str) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            service, region_name=region, endpoint_url=self.endpoint_url, aws_access_key_id="testing",
            aws_secret_access_key="testing", config=Config(retries={"max_attempts": 3, "mode": "standard"}),
        )

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def build_fleet(sb: Sandbox, regions: list[str], asgs: int, instances: int, batch: int) -> dict[str, Any]:
    """The role's ASGs, all InService on the old AMI, and every launch template's default on the new one.
    Returns ``{"targets": [...], "old": {region: ami}, "new": {region: ami}}``."""
    from sandbox.scale_fleet import VERSIONS, _release_images
    from sandbox.seed import ARTIFACTS_BUCKET

    sb.http("reset", {"config": True})
    sb.client("s3", regions[0]).create_bucket(Bucket=ARTIFACTS_BUCKET)  # XComs past the threshold go here
    out: dict[str, Any] = {"targets": [], "old": {}, "new": {}, "lts": {}}
    for r, region in enumerate(regions):
        ec2, autoscaling, ssm = (sb.client(s, region) for s in ("ec2", "autoscaling", "ssm"))
        amis = _release_images(ec2, ssm, [ROLE], "/phoenix/images")
        old, new = amis[(ROLE, VERSIONS[-2])], amis[(ROLE, VERSIONS[-1])]
        out["old"][region], out["new"][region] = old, new
        lt = ec2.create_launch_template(
            LaunchTemplateName=f"lt-{ROLE}-{region}",
            LaunchTemplateData={"ImageId": old, "InstanceType": "t3.small", "MetadataOptions": {"HttpTokens": "required"}},
        )["LaunchTemplate"]["LaunchTemplateId"]
        out["lts"][region] = lt
        count = asgs // len(regions) + (1 if r < asgs % len(regions) else 0)
        for k in range(count):
            name = f"{ROLE}-{region}-{k:04d}"
            autoscaling.create_auto_scaling_group(
                AutoScalingGroupName=name, LaunchTemplate={"LaunchTemplateId": lt, "Version": "$Default"},
                MinSize=instances, MaxSize=instances + batch, DesiredCapacity=instances,
                AvailabilityZones=[f"{region}a"],
                Tags=[{"Key": "phoenix:role", "Value": ROLE, "PropagateAtLaunch": True},
                      {"Key": "phoenix:env", "Value": "sandbox", "PropagateAtLaunch": True}],
            )
            out["targets"].append({"asg_name": name, "region_name": region, "target_image_id": new})
    sb.http("settle", {})
    for region, lt in out["lts"].items():  # what the native apply does: a version on the new AMI, the default
        ec2 = sb.client("ec2", region)
        v = ec2.create_launch_template_version(
            LaunchTemplateId=lt, SourceVersion="1", LaunchTemplateData={"ImageId": out["new"][region]},
        )["LaunchTemplateVersion"]["VersionNumber"]
        ec2.modify_launch_template(LaunchTemplateId=lt, DefaultVersion=str(v))
    return out


def fleet_images(sb: Sandbox, regions: list[str]) -> tuple[dict[str, int], int, int]:
    """(image -> instances InService, groups not at their desired, groups still locked)."""
    images: dict[str, int] = {}
    off = locked = 0
    for region in regions:
        ec2, autoscaling = sb.client("ec2", region), sb.client("autoscaling", region)
        ids = []
        for page in autoscaling.get_paginator("describe_auto_scaling_groups").paginate():
            for g in page["AutoScalingGroups"]:
                live = [i for i in g["Instances"] if i["LifecycleState"] == "InService"]
                off += len(live) != g["DesiredCapacity"]
                locked += any(t["Key"].startswith("phoenix:rollout:id") for t in g.get("Tags", []))
                ids += [i["InstanceId"] for i in live]
        for k in range(0, len(ids), 500):
            for res in ec2.describe_instances(InstanceIds=ids[k:k + 500])["Reservations"]:
                for i in res["Instances"]:
                    images[i["ImageId"]] = images.get(i["ImageId"], 0) + 1
    return images, off, locked


# ------------------------------------------------------------------------------------------------ Airflow


def fleet_config(directory: Path, regions: list[str], args: argparse.Namespace) -> Path:
    import yaml

    directory.mkdir(parents=True, exist_ok=True)
    for sub in ("packer", "terraform"):
        (directory / sub).symlink_to(REPO / "include" / sub)
    base = yaml.safe_load((REPO / "include" / "fleet.yaml").read_text())
    web = base["roles"]["web"]
    raw = {
        "version": 1,
        "artifacts_bucket": base["artifacts_bucket"],
        "ssm_prefix": base["ssm_prefix"],
        "environments": {"sandbox": base["environments"]["sandbox"]},
        "defaults": {"rollout": base["defaults"]["rollout"]},
        "roles": {
            ROLE: {
                "env": "sandbox", "image": web["image"], "regions": regions, "share_with_accounts": [],
                "asgs": {"tags": {"phoenix:role": ROLE, "phoenix:env": "sandbox"}},
                "terraform": {"backend": "native"},
                "rollout": {
                    "strategy": "surge", "batch_size": args.batch, "batch_percent": None, "max_surge": args.batch,
                    "min_healthy_percent": 100, "warmup_seconds": math.ceil(args.warmup),
                    "health_signals": ["asg", "ec2_status"], "deadline_minutes": 15,
                    "max_concurrent_asgs": args.concurrency, "run_timeout_hours": 24,
                    "inline_wait_seconds": args.inline_wait,
                },
            }
        },
    }
    path = directory / "fleet.yaml"
    path.write_text("# bench/fleet_rollout: one role of many ASGs\n" + yaml.safe_dump(raw))
    from phoenix_fleet.config import load_fleet_config

    load_fleet_config(path)  # fails here, naming the field, rather than in the DAG processor
    return path


def start_airflow(sb: Sandbox, home: Path, config: Path, args: argparse.Namespace) -> Any:
    from sandbox.airflow_env import airflow_env
    from tests.e2e.real_airflow import RealAirflow, fast_env, free_port

    dags = home / "dags"
    dags.mkdir(parents=True)
    shutil.copy(REPO / "dags" / "fleet_rollout.py", dags / "fleet_rollout.py")
    shutil.copy(Path(__file__).with_name("baseline_dag.py"), dags / "bench_reschedule_rollout.py")
    port = free_port()
    env = airflow_env(sb.endpoint_url, home=home, api_port=port)
    env["PHOENIX_FLEET_CONFIG"] = str(config)
    env = fast_env(env)
    env.update({
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__PARALLELISM": str(args.slots),
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(max(16, args.concurrency + 4)),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "PHOENIX_BENCH_BASELINE": json.dumps(
            {"role": ROLE, "concurrency": args.concurrency, "poke_interval": args.poke_interval}),
    })
    if args.as_before:  # what the harness did before: workers forked from the scheduler, no bytecode written
        for k in ("AIRFLOW__SCHEDULER__MP_START_METHOD", "AIRFLOW__CORE__MP_FORKSERVER_PRELOAD"):
            env.pop(k, None)
        if os.environ.get("PYTHONDONTWRITEBYTECODE"):
            env["PYTHONDONTWRITEBYTECODE"] = os.environ["PYTHONDONTWRITEBYTECODE"]
    if args.profile:  # the task processes record what each start cost (profile_hook/sitecustomize.py)
        Path(args.profile).mkdir(parents=True, exist_ok=True)
        hook = str(Path(__file__).with_name("profile_hook"))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (hook, env.get("PYTHONPATH", "")) if p)
        env["PHOENIX_BENCH_PROFILE_DIR"] = str(Path(args.profile).resolve())
        if args.cprofile:
            env["PHOENIX_BENCH_CPROFILE"] = "1"
    af = RealAirflow(env, home, port)
    af.start()
    af.wait_api(timeout=240)
    af.wait_dags([f"fleet_rollout_{ROLE}", "bench_reschedule_rollout"], timeout=300)
    return af


def all_task_instances(af: Any, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    from tests.e2e.real_airflow import _q

    out: list[dict[str, Any]] = []
    while True:
        page = af.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{_q(run_id)}/taskInstances?limit=100&offset={len(out)}")
        out += page["task_instances"]
        if len(out) >= page["total_entries"] or not page["task_instances"]:
            return out


def _ts(value: str | None) -> float | None:
    import datetime as dt

    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


class Sampler(threading.Thread):
    """Every ``every`` s: how many of the run's task instances are in each state (REST, ``total_entries``)."""

    def __init__(self, af: Any, dag_id: str, run_id: str, every: float) -> None:
        super().__init__(daemon=True)
        self.af, self.dag_id, self.run_id, self.every = af, dag_id, run_id, every
        self.samples: list[tuple[float, dict[str, int]]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        from tests.e2e.real_airflow import _q

        base = f"/api/v2/dags/{self.dag_id}/dagRuns/{_q(self.run_id)}/taskInstances?limit=1"
        while not self.halt.is_set():
            t = time.time()
            try:  # the recycle's task instances by state, and every task instance running (worker slots in use)
                counts = {s: int(self.af.api("GET", f"{base}&task_id=recycle&state={s}")["total_entries"])
                          for s in STATES}
                counts["slots"] = int(self.af.api("GET", f"{base}&state=running")["total_entries"])
                self.samples.append((t, counts))
            except Exception:  # noqa: BLE001 - a missed sample only
                pass
            self.halt.wait(max(0.0, self.every - (time.time() - t)))

    def integral(self, state: str) -> float:
        """state-seconds: sum of count x the interval to the next sample."""
        total = 0.0
        for (t0, c0), (t1, _c1) in zip(self.samples, self.samples[1:], strict=False):
            total += c0[state] * (t1 - t0)
        return total

    def peak(self, *states: str) -> int:
        return max((sum(c[s] for s in states) for _t, c in self.samples), default=0)


def group_cpu(pgid: int) -> float:
    """CPU seconds (user + system, reaped children included) of the live processes of a process group."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after the name: state ppid pgrp ...
            total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return total / tick


def cpu_snapshot(af: Any, sb: Sandbox) -> dict[str, float]:
    out = {name: group_cpu(proc.pid) for name, proc in af.procs.items()}
    out["sandbox"] = group_cpu(sb.proc.pid)
    return out


def wait(af: Any, dag_id: str, run_id: str, args: argparse.Namespace) -> str:
    """Until the run succeeds (``--until run``) or every recycle task instance succeeded (``--until recycle``);
    cheap polls (``total_entries`` only). Returns ``run``, ``recycle`` or ``timeout``; fails on a failed task."""
    from tests.e2e.real_airflow import _q

    base = f"/api/v2/dags/{dag_id}/dagRuns/{_q(run_id)}"
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        af.check_alive()
        run = af.api("GET", base)
        if run["state"] == "success":
            return "run"
        failed = af.api("GET", f"{base}/taskInstances?limit=1&state=failed&state=upstream_failed&state=up_for_retry")
        if run["state"] == "failed" or failed["total_entries"]:
            raise AssertionError(f"{dag_id} {run_id} is {run['state']}\n{af.failure_report(dag_id, run_id)}")
        if args.until == "recycle":
            rec = af.api("GET", f"{base}/taskInstances?limit=1&task_id=recycle")["total_entries"]
            ok = af.api("GET", f"{base}/taskInstances?limit=1&task_id=recycle&state=success")["total_entries"]
            if rec and ok == rec:
                return "recycle"
        time.sleep(5)
    return "timeout"


def measure(sb: Sandbox, af: Any, dag_id: str, conf: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Trigger ``dag_id``, wait for success while sampling, and gather what the run cost."""
    af.unpause(dag_id)
    sb.http("calls", {"enabled": True})
    cpu0 = cpu_snapshot(af, sb)
    t0 = time.time()
    run_id = af.trigger(dag_id, conf)
    sampler = Sampler(af, dag_id, run_id, args.sample)
    sampler.start()
    try:
        complete = wait(af, dag_id, run_id, args)
    finally:
        sampler.halt.set()
        sampler.join(10)
    t1 = time.time()
    cpu1 = cpu_snapshot(af, sb)
    calls = sb.http("calls")["calls"]
    sb.http("calls", method="DELETE")
    tis = all_task_instances(af, dag_id, run_id)
    rec = [ti for ti in tis if ti["task_id"] == "recycle"]
    canary = [ti for ti in tis if ti["task_id"] == "canary"]
    starts = [_ts(ti["start_date"]) for ti in rec if ti["start_date"]]
    ends = [_ts(ti["end_date"]) for ti in rec if ti["end_date"]]
    phase_start = _ts(canary[0]["end_date"]) if canary and canary[0]["end_date"] else min(s for s in starts if s)
    done = [ti for ti in rec if ti["state"] == "success"]
    phase_end = max((e for e in ends if e), default=t1) if len(done) == len(rec) else t1
    return {
        "run_id": run_id, "complete": complete, "done": len(done), "t0": t0, "t1": t1, "wall": t1 - t0,
        "recycle_wall": phase_end - phase_start,
        "calls": calls, "cpu": {k: cpu1[k] - cpu0.get(k, 0.0) for k in cpu1}, "sampler": sampler,
        "tis": tis, "recycle": rec, "canary": canary,
    }


# ------------------------------------------------------------------------------------------------ report


def print_calls(m: dict[str, Any], budget: float | None, out: Any) -> None:
    from phoenix_fleet.hooks.asg_hook import SERVICES

    from sandbox.call_log import call_rates

    every = call_rates(m["calls"], start=math.floor(m["t0"]), end=math.ceil(m["t1"]))
    # the triggers' polls: aiobotocore calls to the services they poll (s3fs, under the object-storage XCom
    # backend, is aiobotocore too, in the processes that read and write XComs: not the triggers')
    trig = call_rates(m["calls"], start=math.floor(m["t0"]), end=math.ceil(m["t1"]), client="async",
                      services=SERVICES)
    out(f"  AWS calls at the sandbox server over the run ({len(m['calls'])} in all; per region: peak calls in one "
        f"second / mean calls a second; 'triggerer' = aiobotocore calls to {', '.join(SERVICES)}; S3 calls through "
        "aiobotocore are s3fs under the object-storage XCom backend)")
    shown = (f"{budget:g} calls/s per region (environments.sandbox.api_budget.calls_per_second; the limiter allows "
             f"{budget:g} x w + 1 in any w seconds: at most {budget + 1:g} in a one-second window)"
             if budget else "not configured")
    out(f"  triggerer budget: {shown}")
    for region in sorted(every):
        a, t = every[region]["*"], trig.get(region, {}).get("*", {"count": 0, "peak": 0, "mean": 0.0})
        # the limiter grants at most rate x w + 1 calls in any window of w seconds: rate + 1 in a one-second window
        verdict = "" if not budget else ("within budget" if t["peak"] <= budget + 1 else "ABOVE budget")
        out(f"  {region:<12} all: {int(a['count']):>6} calls, peak {int(a['peak']):>4}/s, mean {a['mean']:6.2f}/s"
            f"   triggerer: {int(t['count']):>6} calls, peak {int(t['peak']):>4}/s, mean {t['mean']:6.2f}/s  {verdict}")
        for api, r in sorted(every[region].items(), key=lambda kv: -kv[1]["count"]):
            if api == "*":
                continue
            tr = trig.get(region, {}).get(api, {"count": 0, "peak": 0})
            out(f"      {api:<48} {int(r['count']):>6} calls, peak {int(r['peak']):>3}/s, mean {r['mean']:6.2f}/s"
                f"  (triggerer {int(tr['count'])}, peak {int(tr['peak'])}/s)")


def report(name: str, m: dict[str, Any], bound: float, args: argparse.Namespace, budget: float | None,
           out: Any, inline: float | None) -> None:
    s = m["sampler"]
    cpu = m["cpu"]
    total_cpu = sum(cpu.values())
    out(f"\n== {name}: {m['run_id']}")
    if m["complete"] == "run":
        out(f"  whole run (trigger to success): {m['wall']:.1f} s; whole run / bound {m['wall'] / bound:.2f}")
    else:
        out(f"  whole run: not measured (stopped {m['wall']:.1f} s after the trigger: {m['complete']})")
    n = len(m["recycle"])
    if m["done"] == n:
        out(f"  recycle phase ({n} mapped recycle tasks): {m['recycle_wall']:.1f} s; bound {bound:.0f} s; "
            f"ratio {m['recycle_wall'] / bound:.2f} (goal <= {GOAL})")
    else:
        out(f"  recycle phase INCOMPLETE: {m['done']} of {n} recycle tasks done in {m['recycle_wall']:.1f} s")
    out(f"  recycle task instances (sampled every {args.sample:g} s): peak {s.peak('running')} running, peak "
        f"{s.peak('deferred')} deferred, peak {s.peak('up_for_reschedule')} up for reschedule; ASGs in flight at "
        f"once (running + deferred + up for reschedule + queued): peak "
        f"{s.peak('running', 'deferred', 'up_for_reschedule', 'queued')} (asked {args.concurrency})")
    out(f"  worker slots: peak {s.peak('slots')} of {args.slots} in use; slot-seconds in use {s.integral('slots'):.0f} "
        f"of {args.slots * m['wall']:.0f} (recycle {s.integral('running'):.0f}); recycle task-seconds deferred "
        f"{s.integral('deferred'):.0f}, up for reschedule {s.integral('up_for_reschedule'):.0f}")
    if inline is not None:
        out(f"  worker slots held while waiting: {inline:.1f} slot-seconds polling inline (recycle summaries' "
            "inline_wait_seconds; goal 0)")
    out("  CPU seconds over the run: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(cpu.items()))
        + f"; total {total_cpu:.0f} of {os.cpu_count() * m['wall']:.0f} available")
    trig = cpu.get("triggerer", 0.0)
    out(f"  triggerer CPU: {trig:.1f} s = {100 * trig / max(1e-9, total_cpu):.1f} % of all CPU used, "
        f"{100 * trig / m['wall']:.1f} % of one core")
    print_calls(m, budget, out)


def task_profiles(directory: str, dag_id: str, since: float) -> list[dict[str, Any]]:
    """The task processes' records (profile_hook/sitecustomize.py) of ``dag_id`` written after ``since``."""
    out = []
    for path in Path(directory).glob("*.json"):
        if path.stat().st_mtime < since:
            continue
        try:
            rec = json.loads(path.read_text())
        except ValueError:
            continue
        if rec.get("dag_id") == dag_id:
            out.append(rec)
    return out


def report_profile(m: dict[str, Any], recs: list[dict[str, Any]], out: Any) -> None:
    """CPU per task start: in the task process (startup = parse the DAG file and build the context; the rest = the
    operator and finishing), and the scheduler's (with the executor's supervisors) and api-server's per start."""
    if not recs:
        out("  task starts: no profile records")
        return
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in recs:
        kind = "resume" if r.get("next_method") else "begin"
        groups.setdefault(f"{r.get('task_id')} ({kind})", []).append(r)
    out(f"  task starts: {len(recs)} task processes; CPU seconds each (user + system), mean [min-max]:")
    for name, rs in sorted(groups.items()):
        cpu = [float(r["user"]) + float(r["system"]) for r in rs]
        up = [float(r.get("startup_end_cpu", 0)) - float(r.get("startup_begin_cpu", 0)) for r in rs]
        pre = [float(r.get("startup_begin_cpu", 0)) for r in rs]
        out(f"    {name:<28} x{len(rs):>4}: {sum(cpu) / len(cpu):5.2f} [{min(cpu):.2f}-{max(cpu):.2f}] "
            f"(before startup {sum(pre) / len(pre):.2f}, startup {sum(up) / len(up):.2f}, "
            f"run+finalize {(sum(cpu) - sum(up) - sum(pre)) / len(cpu):.2f}); wall "
            f"{sum(float(r['wall']) for r in rs) / len(rs):.2f} s, max RSS {max(int(r['maxrss_kb']) for r in rs) // 1024} MB")
    tasks = sum(float(r["user"]) + float(r["system"]) for r in recs)
    sched = m["cpu"].get("scheduler", 0.0) - tasks
    out(f"  per task start: task process {tasks / len(recs):.2f} s, scheduler + executor supervisors "
        f"{sched / len(recs):.2f} s, api-server {m['cpu'].get('api-server', 0.0) / len(recs):.2f} s, sandbox "
        f"{m['cpu'].get('sandbox', 0.0) / len(recs):.2f} s")


def summaries(af: Any, dag_id: str, m: dict[str, Any]) -> list[dict[str, Any]]:
    from tests.e2e.real_airflow import _q

    out = []
    for ti in [*m["canary"], *m["recycle"]]:
        path = (f"/api/v2/dags/{dag_id}/dagRuns/{_q(m['run_id'])}/taskInstances/{ti['task_id']}/xcomEntries/"
                f"return_value?map_index={ti['map_index']}&deserialize=true")
        status, payload = af.request("GET", path)
        if status == 200:
            value = payload.get("value")
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except ValueError:
                    pass
            if isinstance(value, dict):
                out.append(value)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--asgs", type=int, default=200)
    p.add_argument("--regions", default=",".join(REGIONS))
    p.add_argument("--instances", type=int, default=5, help="instances per ASG")
    p.add_argument("--concurrency", type=int, default=20, help="ASGs at once (rollout.max_concurrent_asgs)")
    p.add_argument("--batch", type=int, default=3, help="instances per surge batch")
    p.add_argument("--boot", type=float, default=20.0, help="L: seconds an instance boots")
    p.add_argument("--warmup", type=float, default=10.0, help="W: seconds until its status checks pass")
    p.add_argument("--inline-wait", type=float, default=0.0,
                   help="the role's rollout.inline_wait_seconds (0: every wait deferred; the project default is 20)")
    p.add_argument("--slots", type=int, default=4, help="worker slots ([core] parallelism, LocalExecutor)")
    p.add_argument("--poke-interval", type=float, default=10.0, help="the baseline sensor's poke_interval")
    p.add_argument("--sample", type=float, default=5.0, help="seconds between task-state samples")
    p.add_argument("--timeout", type=float, default=3600.0, help="longest wait for one run")
    p.add_argument("--skip-baseline", action="store_true")
    p.add_argument("--until", choices=("run", "recycle"), default="run",
                   help="stop measuring when the run succeeded, or when every recycle task did (skips the health "
                   "gate's and the summary's time)")
    p.add_argument("--keep", action="store_true", help="keep the Airflow home (logs) and print where")
    p.add_argument("--profile", metavar="DIR", help="record every task process's CPU (and, with --cprofile, a "
                   "cProfile) in DIR (profile_hook/sitecustomize.py) and print the CPU per task start")
    p.add_argument("--as-before", action="store_true", help="run Airflow as the harness did before issue 16 item 4's "
                   "work: LocalExecutor workers forked from the scheduler (no phoenix_fleet.worker_preload) and, "
                   "when this shell sets PYTHONDONTWRITEBYTECODE, no bytecode written (to compare; the venv's own "
                   "bytecode is whatever make setup installed)")
    p.add_argument("--cprofile", action="store_true", help="with --profile: also cProfile each task process")
    args = p.parse_args(argv)
    regions = [r.strip() for r in args.regions.split(",") if r.strip()]

    lines: list[str] = []

    def out(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    batches = math.ceil(args.instances / args.batch)
    one_asg = batches * (args.boot + args.warmup)
    waves = math.ceil(args.asgs / args.concurrency)
    bound = waves * one_asg
    tmp = Path(tempfile.mkdtemp(prefix="phoenix-fleetbench-"))
    out(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    out(f"{args.asgs} ASGs x {args.instances} instances in {len(regions)} regions ({', '.join(regions)}), "
        f"{args.concurrency} ASGs at a time, surge batches of {args.batch}; L={args.boot:g}s boot, W={args.warmup:g}s "
        f"status checks; {args.slots} worker slots")
    out(f"bound = ceil({args.asgs}/{args.concurrency}) x {batches} batch(es) x (L + W) = {waves} x {one_asg:g} s = "
        f"{bound:g} s")
    sb = Sandbox(str(tmp / "sandbox"))
    af = None
    ok = True
    try:
        os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=regions[0])
        config = fleet_config(tmp / "include", regions, args)
        from phoenix_fleet.api_budget import calls_per_second_for
        from phoenix_fleet.config import load_fleet_config

        budget = calls_per_second_for(load_fleet_config(config), "aws_default")
        realism = {"instance_boot": {"seconds": args.boot}, "instance_status_checks": {"seconds": args.warmup},
                   "target_health_checks": {"seconds": args.warmup}}
        t = time.monotonic()
        fleet = build_fleet(sb, regions, args.asgs, args.instances, args.batch)
        out(f"setup: fleet of {len(fleet['targets'])} ASGs in {time.monotonic() - t:.0f} s")
        t = time.monotonic()
        af = start_airflow(sb, tmp / "airflow", config, args)
        out(f"setup: Airflow up and both DAGs parsed in {time.monotonic() - t:.0f} s")

        sb.http("config", realism)
        m = measure(sb, af, f"fleet_rollout_{ROLE}", {}, args)
        images, off, locked = fleet_images(sb, regions)
        new = set(fleet["new"].values())
        converged = set(images) <= new and off == 0 and locked == 0
        ok &= converged and m["complete"] != "timeout"
        out(f"\nphoenix: fleet after the run: {images} ({'all on the new AMIs' if converged else 'NOT converged'}; "
            f"{off} groups off desired, {locked} locked)")
        sums = summaries(af, f"fleet_rollout_{ROLE}", m)
        inline = sum(float(s.get("inline_wait_seconds", 0)) for s in sums)
        defers = sum(int(s.get("defers", 0)) for s in sums)
        out(f"phoenix: {len(sums)} recycle summaries read: {defers} deferrals, "
            f"{sum(int(s.get('inline_polls', 0)) for s in sums)} inline polls, "
            f"{sum(int(s.get('trigger_polls', 0)) for s in sums)} trigger polls")
        report("phoenix (fleet_rollout_fleet: deferrable)", m, bound, args, budget, out, inline)
        if args.profile:
            report_profile(m, task_profiles(args.profile, f"fleet_rollout_{ROLE}", m["t0"] - 1), out)
        phoenix = m

        if not args.skip_baseline:
            sb.http("config", {"profile": "plain"})
            t = time.monotonic()
            fleet = build_fleet(sb, regions, args.asgs, args.instances, args.batch)
            out(f"\nsetup: the same fleet again, in {time.monotonic() - t:.0f} s")
            sb.http("config", realism)
            b = measure(sb, af, "bench_reschedule_rollout", {"targets": fleet["targets"]}, args)
            images, off, locked = fleet_images(sb, regions)
            new = set(fleet["new"].values())
            converged = set(images) <= new and off == 0 and locked == 0
            ok &= converged and b["complete"] != "timeout"
            out(f"baseline: fleet after the run: {images} ({'all on the new AMIs' if converged else 'NOT converged'})")
            out(f"baseline: {len(b['recycle'])} sensors, poke_interval {args.poke_interval:g} s")
            report("baseline (sensor in reschedule mode)", b, bound, args, budget, out, None)
            if args.profile:
                report_profile(b, task_profiles(args.profile, "bench_reschedule_rollout", b["t0"] - 1), out)
            out("\n== phoenix vs baseline")
            out(f"  recycle phase: phoenix {phoenix['recycle_wall']:.1f} s, baseline {b['recycle_wall']:.1f} s: "
                f"baseline / phoenix = {b['recycle_wall'] / phoenix['recycle_wall']:.2f}")
            out(f"  whole run: phoenix {phoenix['wall']:.1f} s, baseline {b['wall']:.1f} s")
            pc, bc = sum(phoenix["cpu"].values()), sum(b["cpu"].values())
            out(f"  CPU seconds: phoenix {pc:.0f}, baseline {bc:.0f}: baseline / phoenix = {bc / max(1e-9, pc):.2f}")
            out(f"  AWS calls: phoenix {len(phoenix['calls'])}, baseline {len(b['calls'])}: baseline / phoenix = "
                f"{len(b['calls']) / max(1, len(phoenix['calls'])):.2f}")
        out(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        if af is not None:
            af.stop()
        sb.stop()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
