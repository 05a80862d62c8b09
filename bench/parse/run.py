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

Prints, per DAG file, the median parse time, the DAGs it defines, the trivial file's time, and the ratio
(goal: <= 1.5).
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


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("only", nargs="*", help="DAG file names to measure (default: every file in dags/)")
    args = ap.parse_args()
    os.environ.setdefault("PHOENIX_FLEET_CONFIG", str(REPO / "include" / "fleet.yaml"))
    os.environ.setdefault("AIRFLOW_HOME", str(REPO / ".sandbox" / "airflow-bench"))
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
