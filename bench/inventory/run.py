"""Benchmark: the fleet inventory report against a bare paginated listing of the same data, in the same run, at
growing fleet sizes.

    uv run python bench/inventory/run.py          # 1,000, 10,000 and 30,000 instances (ASGs of 20), 6 regions
    uv run python bench/inventory/run.py --sizes 10000 --regions us-east-1,eu-west-1,us-west-2 --rounds 3
    uv run python bench/inventory/run.py --sizes 600 --rounds 1       # a quick look

Setup (not measured): one sandbox server (``sandbox.server.start_in_thread``, realism profile ``plain``) in this
process, grown over HTTP by ``sandbox.scale_fleet.grow_fleet`` to each size in turn (only what is missing is
added): per region, 6 release AMIs for each of 2 roles, the SSM latest pointers, one launch template per ASG
(3 versions; a third of the ASGs on ``$Default`` at the latest, a third on an older ``$Default``, a third pinned
to version 1), 20 instances per ASG; 5 % of the instances backdated 20 days through moto's in-process backend (AWS
has no API to set LaunchTime) and a tenth of the ASGs with a newer template default after launch.

Measured at each size, in a **child process** talking HTTP to the server (so client and server do not share a
GIL, and the child's peak RSS is the collector's and the report's own):

* ``bare``: the listings of the same data at the same page sizes, pages iterated and counted, nothing kept:
  DescribeInstances, DescribeAutoScalingGroups, DescribeLaunchTemplateVersions ($Default and $Latest in one listing),
  DescribeImages (Owners=self), GetParametersByPath;
* ``report``: ``collect_region`` for every region + ``build_report`` + JSON, CSV and HTML rendered and written
  to a temporary directory (what the report task does, minus the S3 upload);
* the XComs the DAG's tasks would store (each region snapshot, the report's summary), through the XCom backend a
  deployment configures (``phoenix_fleet.xcom_storage.backend_env``: Airflow's object-storage backend on the
  sandbox's bucket): the bytes of each row the metadata DB would keep.

Rounds alternate bare and report after a warm-up of the bare listing; the medians are compared. Goals at every
size: report/bare <= 1.3, peak RSS (VmHWM of the child) < 1 GB, AWS calls at most 5 % above the minimum number of
pages at the APIs' largest page sizes (in all and for each API: ``minimum_pages``), the largest XCom row <= 64 kB. The cost per instance (time, memory, XCom
payload) is printed for every size, so growth shows.
"""

from __future__ import annotations

import argparse
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

REGIONS = ("us-east-1", "eu-west-1", "us-west-2", "eu-central-1", "ap-southeast-2", "ap-northeast-1")
SIZES = (1_000, 10_000, 30_000)
PER_ASG = 20
PREFIX = "/phoenix/images"
GOAL_RATIO = 1.3
GOAL_RSS_MB = 1024
GOAL_CALLS = 1.05


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
            (ec2, "describe_launch_template_versions", "LaunchTemplateVersions", MAX_PAGE_SIZES["lt_versions"], {"Versions": ["$Default", "$Latest"]}),
            (ec2, "describe_images", "Images", MAX_PAGE_SIZES["images"], {"Owners": ["self"], "IncludeDeprecated": True, "IncludeDisabled": True}),
            (ssm, "get_parameters_by_path", "Parameters", MAX_PAGE_SIZES["parameters"], {"Path": PREFIX, "Recursive": True}),
        ]
        for client, op, key, size, kwargs in listings:
            for page in client.get_paginator(op).paginate(PaginationConfig={"PageSize": size}, **kwargs):
                calls += 1
                items += len(page.get(key) or [])
    return {"calls": calls, "items": items}


def full_report(clients: dict[str, tuple[Any, Any, Any]], out_dir: str, keep: dict[str, Any] | None = None) -> dict[str, Any]:
    from phoenix_fleet.inventory.collect import collect_region, minimum_pages
    from phoenix_fleet.inventory.report import build_report, render_all, summary, write_local

    snaps = [collect_region(*c, region, ssm_prefix=PREFIX) for region, c in clients.items()]
    t = time.perf_counter()
    report = build_report(snaps)  # roles from the ASGs' phoenix:role tags, max age 14 days
    files = render_all(report)
    write_local(report, out_dir, files)
    build_seconds = time.perf_counter() - t
    if keep is not None:  # the task outputs, for the XCom measurement
        keep.update(snapshots=snaps, summary=summary(report))
    return {
        "build_seconds": build_seconds,
        "calls": sum(sum(s["stats"]["calls"].values()) for s in snaps),
        "min_pages": sum(sum(minimum_pages(s).values()) for s in snaps),
        "calls_by_op": _sum_dicts(s["stats"]["calls"] for s in snaps),
        "min_pages_by_op": _sum_dicts(minimum_pages(s) for s in snaps),
        "totals": report["totals"],
        "bytes": {k: len(v) for k, v in files.items()},
        "notes": [n for s in snaps for n in s["stats"]["notes"]],
    }


def xcom_rows(outputs: dict[str, Any]) -> dict[str, Any]:
    """The metadata-DB rows fleet_inventory's tasks would leave: each value through the configured XCom backend's
    ``serialize_value`` (the call the task SDK makes in ``XCom.set``), as JSON."""
    from airflow.sdk.execution_time.xcom import XCom

    values = [(f"collect[{i}]", i, snap) for i, snap in enumerate(outputs["snapshots"])]
    values.append(("report", -1, outputs["summary"]))
    rows, raw = {}, {}
    for name, map_index, value in values:
        task = name.split("[")[0]
        raw[name] = len(json.dumps(value))
        stored = XCom.serialize_value(value, key="return_value", dag_id="fleet_inventory", run_id="bench", task_id=task, map_index=map_index)
        rows[name] = len(json.dumps(stored))
    return {"backend": f"{XCom.__module__}.{XCom.__name__}", "rows": rows, "raw": raw}


def _sum_dicts(ds: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in ds:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return dict(sorted(out.items()))


def _proc_status_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process from /proc, in MB. Unlike ru_maxrss, VmHWM starts over at
    exec, so the parent's memory (moto with 30,000 instances) does not leak into the child's figure."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(args: argparse.Namespace) -> None:
    # imports and clients first, so the memory baseline holds what any worker already has
    import phoenix_fleet.inventory.report  # noqa: F401
    from phoenix_fleet.inventory.report_html import render_html  # noqa: F401

    clients = {r: _clients(args.endpoint, r) for r in args.regions.split(",")}
    out = tempfile.mkdtemp(prefix="phoenix-bench-")
    base = _proc_status_mb("VmRSS")
    t = time.perf_counter()
    bare_listing(clients)  # warm-up: connections, botocore models, moto caches
    print(f"  warm-up (bare listing): {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
    bare_t, report_t, build_t = [], [], []
    info: dict[str, Any] = {}
    bare_info: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    for n in range(args.rounds):
        # alternate which goes first, so a drift in machine load favours neither
        for kind in ("bare", "report") if n % 2 == 0 else ("report", "bare"):
            t = time.perf_counter()
            if kind == "bare":
                bare_info = bare_listing(clients)
                bare_t.append(time.perf_counter() - t)
            else:
                outputs.clear()
                info = full_report(clients, out, outputs)
                report_t.append(time.perf_counter() - t)
                build_t.append(info["build_seconds"])
        print(f"  round {n + 1}: bare {bare_t[-1]:.2f} s, report {report_t[-1]:.2f} s", file=sys.stderr, flush=True)
    peak = _proc_status_mb("VmHWM")  # before the XCom step, which holds the JSON of one value at a time
    xcoms = xcom_rows(outputs)
    result = {"bare": bare_t, "report": report_t, "bare_info": bare_info, "build": build_t, "baseline_rss_mb": base,
              "peak_rss_mb": peak, "xcom": xcoms, **info}
    print(json.dumps(result))


# ------------------------------------------------------------------------------------------ parent


def measure(handle: Any, regions: list[str], rounds: int) -> dict[str, Any]:
    from sandbox.airflow_env import aws_connection_uri, xcom_backend_env

    home = tempfile.mkdtemp(prefix="phoenix-bench-airflow-")
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "AIRFLOW_HOME": home,
           "AIRFLOW_CONN_AWS_DEFAULT": aws_connection_uri(handle.endpoint_url), **xcom_backend_env()}
    cmd = [sys.executable, __file__, "--endpoint", handle.endpoint_url, "--regions", ",".join(regions), "--rounds", str(rounds), "--child"]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env, timeout=14400)
    if proc.returncode != 0:
        raise SystemExit("bench child failed (its stderr is above)")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def report_size(n: int, made: dict[str, Any], m: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
    bare, report = statistics.median(m["bare"]), statistics.median(m["report"])
    ratio = report / bare
    calls_ratio = m["calls"] / m["min_pages"]
    # per API too: a listing the sandbox pages in fewer calls than AWS would (moto pages DescribeInstances by
    # reservation, AWS by instance) must not hide another API's excess in the total
    per_op = {op: m["calls_by_op"].get(op, 0) / n for op, n in m["min_pages_by_op"].items() if n}
    worst_op, worst = max(per_op.items(), key=lambda kv: kv[1])
    largest_name, largest = max(m["xcom"]["rows"].items(), key=lambda kv: kv[1])
    raw_largest = max(m["xcom"]["raw"].values())
    t = m["totals"]
    instances = t["instances"]
    ok = {
        "ratio": ratio <= GOAL_RATIO,
        "rss": m["peak_rss_mb"] < GOAL_RSS_MB,
        "calls": calls_ratio <= GOAL_CALLS and worst <= GOAL_CALLS,
        "xcom": largest <= 64 * 1024,
    }
    mark = lambda good: "ok" if good else "MISSED"  # noqa: E731
    print(f"\n=== {instances} instances, {t['asgs']} ASGs, {made['regions']} regions (setup: {made['setup_seconds']} s) ===")
    print(f"bare listing    : median {bare:7.2f} s  {[f'{x:.2f}' for x in m['bare']]}  ({m['bare_info']['calls']} calls, {m['bare_info']['items']} items)")
    print(f"inventory report: median {report:7.2f} s  {[f'{x:.2f}' for x in m['report']]}")
    print(f"ratio report/bare: {ratio:.2f} (goal <= {GOAL_RATIO}: {mark(ok['ratio'])}); of which build_report + JSON/CSV/HTML "
          f"rendered and written: median {statistics.median(m['build']):.2f} s (the rest is the sweep)")
    print(f"AWS calls: {m['calls']} made, {m['min_pages']} minimum pages at AWS's largest page sizes (ratio {calls_ratio:.2f}; "
          f"worst API {worst_op} {worst:.2f}; goal <= {GOAL_CALLS} in all and for each API: {mark(ok['calls'])})")
    for op in sorted(set(m["calls_by_op"]) | set(m["min_pages_by_op"])):
        print(f"  {op:42s} made {m['calls_by_op'].get(op, 0):5d}  minimum {m['min_pages_by_op'].get(op, 0):5d}")
    print(f"peak RSS (child: warm-up, bare and report rounds; VmHWM): {m['peak_rss_mb']:.0f} MB (after imports and "
          f"clients {m['baseline_rss_mb']:.0f} MB; goal < {GOAL_RSS_MB} MB: {mark(ok['rss'])})")
    print(f"XComs ({m['xcom']['backend']}): largest row {largest} bytes ({largest_name}; goal <= 65536: {mark(ok['xcom'])}); "
          f"largest value {raw_largest / 1e6:.2f} MB, {sum(m['xcom']['raw'].values()) / 1e6:.1f} MB in all (in object storage)")
    print(f"report: {t['stale']} stale, {t['behind_latest']} behind latest, {t['behind_launch_template']} behind their "
          f"template, {t['asgs_drifted']} ASGs drifted; files {', '.join(f'{k} {v / 1e6:.1f} MB' for k, v in m['bytes'].items())}")
    if m["notes"]:
        print("notes:", *m["notes"], sep="\n  ")
    per = {
        "instances": instances,
        "report_ms": 1000 * report / instances,
        "bare_ms": 1000 * bare / instances,
        "build_ms": 1000 * statistics.median(m["build"]) / instances,
        "rss_kb": 1024 * (m["peak_rss_mb"] - m["baseline_rss_mb"]) / instances,
        "xcom_payload_b": sum(m["xcom"]["raw"].values()) / instances,
        "ratio": ratio,
    }
    return all(ok.values()), per


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default=",".join(map(str, SIZES)), help="instances at each step, e.g. 1000,10000,30000")
    p.add_argument("--per-asg", type=int, default=PER_ASG)
    p.add_argument("--regions", default=",".join(REGIONS))
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--endpoint", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return 0

    from sandbox.realism import RealismConfig
    from sandbox.scale_fleet import grow_fleet
    from sandbox.seed import ARTIFACTS_BUCKET
    from sandbox.server import start_in_thread

    regions = args.regions.split(",")
    sizes = sorted(int(x) for x in args.sizes.split(","))
    print(f"load average at start: {os.getloadavg()} on {os.cpu_count()} CPUs", flush=True)
    handle = start_in_thread(RealismConfig.profile("plain"))
    all_ok, costs = True, []
    try:
        handle.client("s3").create_bucket(Bucket=ARTIFACTS_BUCKET)  # where XComs past the threshold go
        for n in sizes:
            asgs = max(1, n // args.per_asg)
            print(f"\nsetup: growing to {n} instances, {asgs} ASGs, regions {', '.join(regions)} ...", flush=True)
            made = grow_fleet(lambda service, region: handle.client(service, region_name=region), regions, asgs, args.per_asg)
            print(f"setup: +{made['instances_added']} instances ({made['stale_added']} backdated 20 days), "
                  f"+{made['asgs_added']} ASGs in {made['seconds']} s; load average {os.getloadavg()}", flush=True)
            m = measure(handle, regions, args.rounds)
            ok, per = report_size(n, {"regions": len(regions), "setup_seconds": made["seconds"]}, m)
            all_ok &= ok
            costs.append(per)
    finally:
        handle.stop()
    print(f"\n=== cost per instance (load average at the end: {os.getloadavg()}) ===")
    print(f"{'instances':>10} {'report ms':>10} {'bare ms':>8} {'build ms':>9} {'RSS kB':>7} {'XCom payload B':>15} {'ratio':>6}")
    for c in costs:
        print(f"{c['instances']:>10} {c['report_ms']:>10.2f} {c['bare_ms']:>8.2f} {c['build_ms']:>9.3f} {c['rss_kb']:>7.1f} "
              f"{c['xcom_payload_b']:>15.0f} {c['ratio']:>6.2f}")
    return 0 if all_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
