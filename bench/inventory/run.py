"""Benchmark: the fleet inventory report against a bare paginated listing of the same data, in the same run.

    uv run python bench/inventory/run.py                 # 10,000 instances, 500 ASGs, 3 regions
    uv run python bench/inventory/run.py --instances 600 --asgs 30 --rounds 1   # a quick look

Setup (not measured): one sandbox server (``sandbox.server.start_in_thread``, realism profile ``plain``) in this
process, filled over HTTP with boto3: per region, 6 release AMIs for each of 2 roles, the SSM latest pointers, one
launch template per ASG (3 versions; a third of the ASGs on ``$Default`` at the latest, a third on an older
``$Default``, a third pinned to version 1), 20 instances per ASG; then 5 % of the instances are backdated 20 days
through moto's in-process backend (AWS has no API to set LaunchTime) and a tenth of the ASGs get a newer template
default after launch (instances behind their template).

Measured, in a **child process** talking HTTP to the server (so client and server do not share a GIL, and the
child's peak RSS is the collector's and the report's own):

* ``bare``: the listings of the same data at the same page sizes, pages iterated and counted, nothing kept:
  DescribeInstances, DescribeAutoScalingGroups, DescribeLaunchTemplateVersions ($Default, $Latest),
  DescribeImages (Owners=self), GetParametersByPath;
* ``report``: ``collect_region`` for every region + ``build_report`` + JSON, CSV and HTML rendered and written
  to a temporary directory (what the report task does, minus the S3 upload).

Rounds alternate bare and report after one warm-up of each; the medians are compared. Goals: report/bare <= 1.5,
peak RSS < 1 GB. Also printed: AWS calls made against the minimum number of pages at the APIs' largest page sizes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

REGIONS = ("us-east-1", "eu-west-1", "us-west-2")
ROLES = ("web", "worker")
VERSIONS = [f"2026.{m:02d}.{d:02d}-1" for m, d in ((10, 12), (10, 19), (10, 26), (11, 2), (11, 9), (11, 16))]
PREFIX = "/phoenix/images"
NOW = dt.datetime.now(dt.UTC)


# ------------------------------------------------------------------------------------------ setup


def _tags(d: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in d.items()]


def seed(handle: Any, instances: int, asgs: int, regions: tuple[str, ...]) -> dict[str, Any]:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ec2.models import ec2_backends

    per_asg = max(1, instances // asgs)
    made = {"instances": 0, "asgs": 0, "stale": 0, "regions": list(regions)}
    t0 = time.perf_counter()
    for r_index, region in enumerate(regions):
        ec2 = handle.client("ec2", region_name=region)
        autoscaling = handle.client("autoscaling", region_name=region)
        ssm = handle.client("ssm", region_name=region)
        amazon = sorted(ec2.describe_images(Owners=["amazon"])["Images"], key=lambda i: i["ImageId"])[0]["ImageId"]
        builder = ec2.run_instances(ImageId=amazon, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
        amis: dict[tuple[str, str], str] = {}
        for role in ROLES:
            for v in VERSIONS:
                name = f"phoenix-{role}-{v}"
                ami = ec2.create_image(InstanceId=builder, Name=name)["ImageId"]
                ec2.create_tags(
                    Resources=[ami],
                    Tags=_tags({"Name": name, "phoenix:role": role, "phoenix:version": v, "phoenix:verified": "true"}),
                )
                amis[(role, v)] = ami
            ssm.put_parameter(Name=f"{PREFIX}/{role}/latest", Value=amis[(role, VERSIONS[-1])], Type="String", Overwrite=True)
            ssm.put_parameter(Name=f"{PREFIX}/{role}/latest-version", Value=VERSIONS[-1], Type="String", Overwrite=True)
        ec2.terminate_instances(InstanceIds=[builder])

        n_here = asgs // len(regions) + (1 if r_index < asgs % len(regions) else 0)
        bumped = []
        for k in range(n_here):
            role = ROLES[k % 2]
            name = f"{role}-{region}-{k:04d}"
            data = [{"ImageId": amis[(role, v)], "InstanceType": "t3.small"} for v in VERSIONS[-3:]]
            lt = ec2.create_launch_template(LaunchTemplateName=f"lt-{name}", LaunchTemplateData=data[0])["LaunchTemplate"][
                "LaunchTemplateId"
            ]
            for d in data[1:]:
                ec2.create_launch_template_version(LaunchTemplateId=lt, LaunchTemplateData=d)
            kind = k % 3
            ec2.modify_launch_template(LaunchTemplateId=lt, DefaultVersion="3" if kind == 0 else "2")
            version = "$Default" if kind < 2 else "1"
            autoscaling.create_auto_scaling_group(
                AutoScalingGroupName=name,
                LaunchTemplate={"LaunchTemplateId": lt, "Version": version},
                MinSize=0,
                MaxSize=per_asg * 2,
                DesiredCapacity=per_asg,
                AvailabilityZones=[f"{region}a"],
                Tags=[{"Key": "phoenix:role", "Value": role, "PropagateAtLaunch": True}],
            )
            if k % 10 == 1:
                bumped.append(lt)
            made["asgs"] += 1
        for lt in bumped:  # instances now behind their launch template
            ec2.modify_launch_template(LaunchTemplateId=lt, DefaultVersion="3")
        backend = ec2_backends[DEFAULT_ACCOUNT_ID][region]
        live = [i for i in backend.all_instances() if i.state == "running"]
        made["instances"] += len(live)
        for n, inst in enumerate(sorted(live, key=lambda i: i.id)):
            days = 20 if n % 20 == 0 else 1 + n % 10
            inst.launch_time = (NOW - dt.timedelta(days=days)).replace(tzinfo=None)
            made["stale"] += days == 20
    made["seconds"] = round(time.perf_counter() - t0, 1)
    return made


# ------------------------------------------------------------------------------------------ child: measurements


def _clients(endpoint: str, region: str) -> tuple[Any, Any, Any]:
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=region)
    cfg = Config(retries={"max_attempts": 2, "mode": "standard"}, read_timeout=600, max_pool_connections=4)
    return tuple(session.client(s, endpoint_url=endpoint, config=cfg) for s in ("ec2", "autoscaling", "ssm"))  # type: ignore[return-value]


def bare_listing(clients: dict[str, tuple[Any, Any, Any]]) -> dict[str, int]:
    """The same data, the same page sizes, nothing kept: pages and items counted."""
    from phoenix_fleet.inventory.collect import LIVE_STATES, MAX_PAGE_SIZES

    calls = items = 0
    for ec2, autoscaling, ssm in clients.values():
        listings = [
            (ec2, "describe_instances", "Reservations", MAX_PAGE_SIZES["instances"], {"Filters": [{"Name": "instance-state-name", "Values": list(LIVE_STATES)}]}),
            (autoscaling, "describe_auto_scaling_groups", "AutoScalingGroups", MAX_PAGE_SIZES["asgs"], {}),
            (ec2, "describe_launch_template_versions", "LaunchTemplateVersions", MAX_PAGE_SIZES["lt_versions"], {"Versions": ["$Default"]}),
            (ec2, "describe_launch_template_versions", "LaunchTemplateVersions", MAX_PAGE_SIZES["lt_versions"], {"Versions": ["$Latest"]}),
            (ec2, "describe_images", "Images", MAX_PAGE_SIZES["images"], {"Owners": ["self"], "IncludeDeprecated": True, "IncludeDisabled": True}),
            (ssm, "get_parameters_by_path", "Parameters", MAX_PAGE_SIZES["parameters"], {"Path": PREFIX, "Recursive": True}),
        ]
        for client, op, key, size, kwargs in listings:
            for page in client.get_paginator(op).paginate(PaginationConfig={"PageSize": size}, **kwargs):
                calls += 1
                items += len(page.get(key) or [])
    return {"calls": calls, "items": items}


def full_report(clients: dict[str, tuple[Any, Any, Any]], out_dir: str) -> dict[str, Any]:
    from phoenix_fleet.inventory.collect import collect_region, minimum_pages
    from phoenix_fleet.inventory.report import build_report, render_all, write_local

    snaps = [collect_region(*c, region, ssm_prefix=PREFIX) for region, c in clients.items()]
    t = time.perf_counter()
    report = build_report(snaps)  # roles from the ASGs' phoenix:role tags, max age 14 days
    files = render_all(report)
    write_local(report, out_dir, files)
    build_seconds = time.perf_counter() - t
    return {
        "build_seconds": build_seconds,
        "snapshot_bytes": len(json.dumps(snaps)),
        "calls": sum(sum(s["stats"]["calls"].values()) for s in snaps),
        "min_pages": sum(sum(minimum_pages(s).values()) for s in snaps),
        "calls_by_op": _sum_dicts(s["stats"]["calls"] for s in snaps),
        "min_pages_by_op": _sum_dicts(minimum_pages(s) for s in snaps),
        "totals": report["totals"],
        "bytes": {k: len(v) for k, v in files.items()},
        "notes": [n for s in snaps for n in s["stats"]["notes"]],
    }


def _sum_dicts(ds: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in ds:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return dict(sorted(out.items()))


def _proc_status_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process from /proc, in MB. Unlike ru_maxrss, VmHWM starts over at
    exec, so the parent's memory (moto with 10,000 instances) does not leak into the child's figure."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(args: argparse.Namespace) -> None:
    clients = {r: _clients(args.endpoint, r) for r in args.regions.split(",")}
    out = tempfile.mkdtemp(prefix="phoenix-bench-")
    result: dict[str, Any] = {}
    if args.child == "memory":
        # imports and clients first, so the baseline holds what any worker already has
        import phoenix_fleet.inventory.report  # noqa: F401
        from phoenix_fleet.inventory.report_html import render_html  # noqa: F401

        base = _proc_status_mb("VmRSS")
        t = time.perf_counter()
        info = full_report(clients, out)
        result = {
            "baseline_rss_mb": base,
            "peak_rss_mb": _proc_status_mb("VmHWM"),
            "seconds": time.perf_counter() - t,
            "totals": info["totals"],
        }
    else:
        t = time.perf_counter()
        bare_listing(clients)  # warm-up: connections, botocore models, moto caches
        full_report(clients, out)
        print(f"warm-up: {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
        bare_t, report_t, build_t = [], [], []
        info: dict[str, Any] = {}
        bare_info: dict[str, Any] = {}
        for n in range(args.rounds):
            # alternate which goes first, so a drift in machine load favours neither
            for kind in ("bare", "report") if n % 2 == 0 else ("report", "bare"):
                t = time.perf_counter()
                if kind == "bare":
                    bare_info = bare_listing(clients)
                    bare_t.append(time.perf_counter() - t)
                else:
                    info = full_report(clients, out)
                    report_t.append(time.perf_counter() - t)
                    build_t.append(info["build_seconds"])
            print(f"round {n + 1}: bare {bare_t[-1]:.2f} s, report {report_t[-1]:.2f} s", file=sys.stderr, flush=True)
        result = {"bare": bare_t, "report": report_t, "bare_info": bare_info, "build": build_t, **info}
    print(json.dumps(result))


# ------------------------------------------------------------------------------------------ parent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--instances", type=int, default=10_000)
    p.add_argument("--asgs", type=int, default=500)
    p.add_argument("--regions", default=",".join(REGIONS))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--child", choices=("timing", "memory"), help=argparse.SUPPRESS)
    p.add_argument("--endpoint", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return 0

    from sandbox.realism import RealismConfig
    from sandbox.server import start_in_thread

    regions = tuple(args.regions.split(","))
    handle = start_in_thread(RealismConfig.profile("plain"))
    try:
        print(f"setup: {args.instances} instances, {args.asgs} ASGs, regions {', '.join(regions)} ...", flush=True)
        made = seed(handle, args.instances, args.asgs, regions)
        print(f"setup: {made['instances']} instances ({made['stale']} backdated 20 days), {made['asgs']} ASGs in {made['seconds']} s", flush=True)
        env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost"}
        base_cmd = [sys.executable, __file__, "--endpoint", handle.endpoint_url, "--regions", args.regions, "--rounds", str(args.rounds)]

        def run(kind: str) -> dict[str, Any]:
            out = subprocess.run([*base_cmd, "--child", kind], stdout=subprocess.PIPE, text=True, env=env, timeout=7200)
            if out.returncode != 0:
                raise SystemExit(f"bench child {kind} failed (its stderr is above)")
            return json.loads(out.stdout.strip().splitlines()[-1])

        timing = run("timing")
        memory = run("memory")
    finally:
        handle.stop()

    bare, report = statistics.median(timing["bare"]), statistics.median(timing["report"])
    ratio = report / bare
    per_round = [r / b for r, b in zip(timing["report"], timing["bare"], strict=True)]
    print()
    print(f"bare listing   : median {bare:7.2f} s  {[f'{x:.2f}' for x in timing['bare']]}  ({timing['bare_info']['calls']} calls, {timing['bare_info']['items']} items)")
    print(f"inventory report: median {report:7.2f} s  {[f'{x:.2f}' for x in timing['report']]}")
    print(f"ratio report/bare: {ratio:.2f} (of the medians; per round {[f'{x:.2f}' for x in per_round]})  "
          f"(goal <= 1.5: {'ok' if ratio <= 1.5 else 'MISSED'})")
    print(f"  of which build_report + JSON/CSV/HTML rendered and written: median {statistics.median(timing['build']):.2f} s; "
          f"the rest is the sweep (HTTP + botocore parsing, as in the bare listing, plus the pinned template versions)")
    print(f"region snapshots (the XCom of the collect tasks): {timing['snapshot_bytes'] / 1e6:.1f} MB in all")
    print(f"AWS calls: {timing['calls']} made, {timing['min_pages']} minimum pages at AWS's largest page sizes "
          f"(ratio {timing['calls'] / timing['min_pages']:.2f})")
    for op in sorted(set(timing["calls_by_op"]) | set(timing["min_pages_by_op"])):
        print(f"  {op:42s} made {timing['calls_by_op'].get(op, 0):4d}  minimum {timing['min_pages_by_op'].get(op, 0):4d}")
    print(f"peak RSS (collector + report, child process, VmHWM): {memory['peak_rss_mb']:.0f} MB "
          f"(RSS after imports and clients {memory['baseline_rss_mb']:.0f} MB; goal < 1024 MB: "
          f"{'ok' if memory['peak_rss_mb'] < 1024 else 'MISSED'}); that run took {memory['seconds']:.1f} s")
    t = timing["totals"]
    print(f"report: {t['instances']} instances, {t['stale']} stale, {t['behind_latest']} behind latest, "
          f"{t['behind_launch_template']} behind their template, {t['asgs']} ASGs ({t['asgs_drifted']} drifted); "
          f"files {', '.join(f'{k} {v / 1e6:.1f} MB' for k, v in timing['bytes'].items())}")
    if timing["notes"]:
        print("notes:", *timing["notes"], sep="\n  ")
    return 0 if ratio <= 1.5 and memory["peak_rss_mb"] < 1024 else 1


if __name__ == "__main__":
    raise SystemExit(main())
