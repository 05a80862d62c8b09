"""Parse-time benchmark: each DAG file against a trivial DAG file, measured in the same run.

Measured the way Airflow 3's DAG processor parses a file: a child forked from the processor manager, which has
already imported ``airflow.dag_processing.manager``/``processor`` (and with them the SDK, pydantic, yaml,
jinja2) and called ``gc.freeze()`` before forking (so a collection in the child never walks the parent's
objects). Each parse here is a fresh interpreter that does the same before the clock starts, then executes
the DAG file: what is timed is what the file itself costs on every re-parse (every 30 s by default): its
imports, the fleet config load and the DAG construction. Bytecode is cached (in a temporary
``PYTHONPYCACHEPREFIX``, after one unmeasured warm-up round) as in any installed deployment, whatever
``PYTHONDONTWRITEBYTECODE`` says in the calling shell.

    uv run python bench/parse/run.py [--rounds 7] [ami_release.py ...]
    uv run python bench/parse/run.py --roles 2,10,50 [--rounds 5]

Prints, per DAG file, the median parse time, the DAGs it defines, the trivial file's time, and the ratio
(goal: <= 1.5).

``--roles``: the generator files (``ami_release.py``, ``fleet_rollout.py``: one DAG per role each) under a
generated fleet config of that many roles (copies of include/fleet.yaml's roles, alternating, each with its own
name, ASG tags and schedule; the parse cache warm, as in a running processor). Prints each file's median parse
time and the time **per DAG** at each size, and the ratio of the per-DAG time at the most roles to that at the
fewest (goal: <= 1.2, flat), and the whole file's time at the most roles against the DAG processor's
``dagbag_import_timeout`` (30 s by default; goal: under a tenth of it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"

TRIVIAL = '''
import pendulum
from airflow.sdk import DAG, task

with DAG("trivial", schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False,
         tags=["bench"], default_args={"owner": "bench", "retries": 1}):
    @task
    def hello():
        return 1
    hello()
'''

PROBE = r"""
import gc, json, sys, time, importlib.util
sys.path.insert(0, sys.argv[2])
import airflow.dag_processing.manager, airflow.dag_processing.processor  # the manager (the fork's parent)
import airflow.sdk, pendulum, structlog
from airflow.dag_processing.processor import _pre_import_airflow_modules
from airflow.sdk.definitions._internal.contextmanager import DagContext
# the manager imports the file's top-level airflow.* imports before it forks the parser (parsing_pre_import_modules)
_pre_import_airflow_modules(sys.argv[1], structlog.get_logger())
gc.freeze()  # DagFileProcessorManager.before_run() freezes the heap before forking parsers
DagContext.current_autoregister_module_name = "bench_dag_file"  # as the DagBag does: DAGs register themselves
t0 = time.perf_counter()
spec = importlib.util.spec_from_file_location("bench_dag_file", sys.argv[1])
mod = importlib.util.module_from_spec(spec)
sys.modules["bench_dag_file"] = mod
spec.loader.exec_module(mod)
seconds = time.perf_counter() - t0
dags = len(DagContext.autoregistered_dags)
print(json.dumps({"seconds": seconds, "dags": dags}))
"""


def parse_once(path: Path, env: dict[str, str]) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", PROBE, str(path), str(DAGS)], capture_output=True, text=True,
                         env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


GENERATORS = ("ami_release.py", "fleet_rollout.py")
GOAL_FLAT = 1.2
IMPORT_TIMEOUT_S = 30.0  # [core] dagbag_import_timeout's default
GOAL_TIMEOUT_SHARE = 0.1  # "well inside" the timeout: a tenth of it, room for a loaded processor


def fleet_config_with_roles(directory: Path, n: int) -> Path:
    """``directory/fleet.yaml``: include/fleet.yaml with ``n`` roles, copies of its own roles in turn (``web-007``
    is the web role under another name, selecting ASGs tagged with that name, released at another hour)."""
    import yaml

    raw = yaml.safe_load((REPO / "include" / "fleet.yaml").read_text())
    originals = list(raw["roles"].items())
    roles = {}
    for k in range(n):
        base_name, base = originals[k % len(originals)]
        role = json.loads(json.dumps(base))
        name = f"{base_name}-{k:03d}"
        role.setdefault("asgs", {})["tags"] = {"phoenix:role": name, "phoenix:env": role.get("env", "sandbox")}
        if role.get("schedule"):
            role["schedule"] = f"{k % 60} {k % 24} * * 1"
        roles[name] = role
    raw["roles"] = roles
    directory.mkdir(parents=True, exist_ok=True)
    for sub in ("packer", "terraform"):  # paths in the config are relative to its directory
        link = directory / sub
        if not link.is_symlink():
            link.symlink_to(REPO / "include" / sub)
    path = directory / "fleet.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def roles_main(sizes: list[int], rounds: int, env: dict[str, str], tmp: Path) -> int:
    files = [DAGS / name for name in GENERATORS]
    configs = {n: fleet_config_with_roles(tmp / f"roles-{n}", n) for n in sizes}
    envs = {n: {**env, "PHOENIX_FLEET_CONFIG": str(path)} for n, path in configs.items()}
    dags: dict[tuple[int, Path], int] = {}
    for n in sizes:  # warm-up: bytecode and each config's parse cache
        for f in files:
            dags[(n, f)] = int(parse_once(f, envs[n])["dags"])
            if dags[(n, f)] != n:
                raise SystemExit(f"{f.name} built {dags[(n, f)]} DAGs under {n} roles, expected {n}")
    times: dict[tuple[int, Path], list[float]] = {key: [] for key in dags}
    for r in range(rounds):  # interleaved, so machine load hits every size alike
        for n in sizes:
            for f in files:
                times[(n, f)].append(parse_once(f, envs[n])["seconds"])
        print(f"round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    print(f"load average: {os.getloadavg()} on {os.cpu_count()} CPUs; median of {rounds} rounds")
    print(f"{'file':<20} {'roles':>5} {'DAGs':>5} {'median ms':>10} {'ms per DAG':>11}")
    ok = True
    lo, hi = sizes[0], sizes[-1]
    per_dag: dict[tuple[int, Path], float] = {}
    for f in files:
        for n in sizes:
            med = statistics.median(times[(n, f)])
            per_dag[(n, f)] = med / dags[(n, f)]
            print(f"{f.name:<20} {n:>5} {dags[(n, f)]:>5} {med * 1000:>10.1f} {per_dag[(n, f)] * 1000:>11.2f}")
    for f in files:
        ratio = per_dag[(hi, f)] / per_dag[(lo, f)]
        whole = statistics.median(times[(hi, f)])
        flat = ratio <= GOAL_FLAT
        inside = whole < IMPORT_TIMEOUT_S * GOAL_TIMEOUT_SHARE
        ok &= flat and inside
        print(f"{f.name}: per-DAG time at {hi} roles / at {lo} roles = {ratio:.2f} (goal <= {GOAL_FLAT}: "
              f"{'ok' if flat else 'MISSED'}); the whole file at {hi} roles {whole:.2f} s = {whole / IMPORT_TIMEOUT_S:.1%} "
              f"of dagbag_import_timeout ({IMPORT_TIMEOUT_S:.0f} s; goal < {GOAL_TIMEOUT_SHARE:.0%}: "
              f"{'ok' if inside else 'MISSED'})")
    return 0 if ok else 1


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--roles", help="role counts for the generator files, e.g. 2,10,50")
    ap.add_argument("only", nargs="*", help="DAG file names to measure (default: every file in dags/)")
    args = ap.parse_args()
    os.environ.setdefault("PHOENIX_FLEET_CONFIG", str(REPO / "include" / "fleet.yaml"))
    os.environ.setdefault("AIRFLOW_HOME", str(REPO / ".sandbox" / "airflow-bench"))
    if args.roles:
        with tempfile.TemporaryDirectory() as tmp:
            env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
            env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
            env["PHOENIX_PARSE_CACHE_DIR"] = str(Path(tmp) / "parse-cache")
            return roles_main(sorted(int(x) for x in args.roles.split(",")), args.rounds, env, Path(tmp))
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        env["PHOENIX_PARSE_CACHE_DIR"] = str(Path(tmp) / "parse-cache")  # filled by the warm-up round
        trivial = Path(tmp) / "trivial_dag.py"
        trivial.write_text(TRIVIAL)
        dag_files = sorted(p for p in DAGS.glob("*.py") if not p.name.startswith("_"))
        unknown = set(args.only) - {p.name for p in dag_files}
        if unknown:
            ap.error(f"not DAG files in {DAGS}: {', '.join(sorted(unknown))}")
        files = [trivial, *(p for p in dag_files if not args.only or p.name in args.only)]
        dags = {f: int(parse_once(f, env)["dags"]) for f in files}  # warm-up: writes the bytecode cache
        times: dict[Path, list[float]] = {f: [] for f in files}
        for _ in range(args.rounds):  # interleaved, so machine load hits every file alike
            for f in files:
                times[f].append(parse_once(f, env)["seconds"])
        base = statistics.median(times[trivial])
        print(f"{'file':<24} {'DAGs':>5} {'median ms':>10} {'ratio':>7}   (trivial DAG file: {base * 1000:.1f} ms, "
              f"{dags[trivial]} DAG)")
        worst = 0.0
        for f in files[1:]:
            med = statistics.median(times[f])
            ratio = med / base
            worst = max(worst, ratio)
            print(f"{f.name:<24} {dags[f]:>5} {med * 1000:>10.1f} {ratio:>7.2f}")
        print(f"worst ratio {worst:.2f} (goal <= 1.5)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
