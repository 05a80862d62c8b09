"""Parse-time benchmark: each DAG file against a trivial DAG file, measured in the same run.

Like Airflow 3's DAG processor, every parse happens in a fresh process that already imported Airflow
(the processor's parent has), so what is measured is what the file itself costs on every re-parse
(every 30 s by default): its imports, the fleet config load and the DAG construction.

    uv run python bench/parse/run.py [--rounds 7]

Prints, per DAG file, the median parse time, the trivial file's, and the ratio (goal: <= 1.5).
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
import json, sys, time, importlib.util
sys.path.insert(0, sys.argv[2])
import airflow.sdk, pendulum  # the DAG processor's parent has these already
t0 = time.perf_counter()
spec = importlib.util.spec_from_file_location("bench_dag_file", sys.argv[1])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
print(json.dumps({"seconds": time.perf_counter() - t0}))
"""


def parse_once(path: Path) -> float:
    out = subprocess.run([sys.executable, "-c", PROBE, str(path), str(DAGS)], capture_output=True, text=True,
                         env=os.environ.copy(), check=True)
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return data["seconds"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    os.environ.setdefault("PHOENIX_FLEET_CONFIG", str(REPO / "include" / "fleet.yaml"))
    os.environ.setdefault("AIRFLOW_HOME", str(REPO / ".sandbox" / "airflow-bench"))
    with tempfile.TemporaryDirectory() as tmp:
        trivial = Path(tmp) / "trivial_dag.py"
        trivial.write_text(TRIVIAL)
        files = [trivial, *sorted(p for p in DAGS.glob("*.py") if not p.name.startswith("_"))]
        times: dict[Path, list[float]] = {f: [] for f in files}
        for _ in range(args.rounds):  # interleaved, so machine load hits every file alike
            for f in files:
                times[f].append(parse_once(f))
        base = statistics.median(times[trivial])
        print(f"{'file':<24} {'median ms':>10} {'ratio':>7}   (trivial DAG file: {base * 1000:.1f} ms)")
        worst = 0.0
        for f in files[1:]:
            med = statistics.median(times[f])
            ratio = med / base
            worst = max(worst, ratio)
            print(f"{f.name:<24} {med * 1000:>10.1f} {ratio:>7.2f}")
        print(f"worst ratio {worst:.2f} (goal <= 1.5)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
