"""Release then rollout through a real Airflow, run the way users run it (issue 6).

api-server, scheduler, dag-processor and triggerer run as subprocesses (SQLite, LocalExecutor) against the
in-process sandbox cloud; the test only talks to Airflow through its public REST API:

1. trigger ``ami_release_worker`` with a conf and wait for it to succeed;
2. the Asset event it emits starts ``fleet_rollout_worker`` by itself: that run gets the release's version
   (the ``plan`` XCom) and succeeds, with no approval (the sandbox environment does not require one);
3. trigger ``fleet_rollout_worker`` by hand with ``require_approval``: its ``approval`` task waits in
   ``awaiting_input`` until the test answers ``Approve`` through the HITL REST endpoint; the run succeeds;
4. the worker ASG ends with all its instances on the new AMI, at desired capacity; then a rollout back to the
   seeded version is *rejected* once its canary replaced an instance: ``canary_rollback`` puts the group back
   (instances on the new AMI, processes resumed, capacity and lock restored) and the run fails;
5. one of its instances is aged 20 days (the sandbox's ``age``), an inventory report of the fleet is written,
   and an event on the inventory Asset (``POST /api/v2/assets/events``, extra ``path``: what fleet_inventory
   announces) starts ``fleet_max_age`` by itself: it renews exactly that instance, on the same AMI.

Component logs are in the test's tmp AIRFLOW_HOME (``<component>.log``); on failure their tails and the
failed tasks' logs are printed. Every wait is bounded; the whole test takes ~2-3 minutes on 2 cores.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from phoenix_fleet.config import load_fleet_config

from sandbox.airflow_env import airflow_env
from tests.e2e.real_airflow import RealAirflow, _q, fast_env, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

ROLE = "worker"
RELEASE = f"ami_release_{ROLE}"
ROLLOUT = f"fleet_rollout_{ROLE}"
ASG = "sandbox-worker-a"
MAX_AGE = "fleet_max_age"


@pytest.fixture
def worker_asg(seeded: dict[str, Any]) -> dict[str, Any]:
    """The seeded worker release running in one ASG (2 instances) tagged like the Terraform fleet
    (as in test_release_rollout.py)."""
    h = seeded["handle"]
    ec2, asg = h.client("ec2"), h.client("autoscaling")
    ami = seeded["roles"][ROLE]["ami_id"]
    subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]][:2]
    lt = ec2.create_launch_template(
        LaunchTemplateName=ASG,
        LaunchTemplateData={"ImageId": ami, "InstanceType": "t3.small", "MetadataOptions": {"HttpTokens": "required"}},
    )["LaunchTemplate"]
    asg.create_auto_scaling_group(
        AutoScalingGroupName=ASG, MinSize=1, MaxSize=4, DesiredCapacity=2,
        VPCZoneIdentifier=",".join(subnets),
        LaunchTemplate={"LaunchTemplateId": lt["LaunchTemplateId"], "Version": "$Default"},
        Tags=[{"Key": k, "Value": v, "PropagateAtLaunch": True}
              for k, v in {"phoenix:role": ROLE, "phoenix:env": "sandbox"}.items()],
    )
    h.settle()
    return {"asg": ASG, "old_ami": ami}


@pytest.fixture(scope="module")
def manual_release_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """include/fleet.yaml with no warmup and no weekly schedule for any role, shared by this module's Airflow.

    With ``catchup=False`` Airflow still runs the most recent missed cron slot as soon as a DAG is unpaused
    (CronTriggerTimetable always considers ``_align_to_prev(now)``), so unpausing ``ami_release_<role>``
    would start a scheduled release next to the runs these tests trigger (the hostile-conf table unpauses
    every DAG). Each release here is one a test triggers through REST.
    """
    import yaml

    from sandbox.airflow_env import fleet_config_with_warmup

    path = fleet_config_with_warmup(tmp_path_factory.mktemp("include"), 0)
    raw = yaml.safe_load(path.read_text())
    for role in raw["roles"].values():
        role["schedule"] = None
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def real_airflow(sandbox: Any, manual_release_config: Path, tmp_path_factory: pytest.TempPathFactory):
    """The four components, started once for this module's tests (each test resets and seeds the sandbox it
    talks to); stopped (process groups terminated, then killed) whatever happens."""
    home = tmp_path_factory.mktemp("airflow")
    port = free_port()
    env = airflow_env(sandbox.endpoint_url, home=home, api_port=port)
    env["PHOENIX_FLEET_CONFIG"] = str(manual_release_config)
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(__file__).resolve().parents[2] / "dags")
    af = RealAirflow(fast_env(env), home, port)
    try:
        af.start()
        yield af
    finally:
        af.stop()


def _runs_if_any(af: RealAirflow, dag_id: str) -> list[dict[str, Any]]:
    status, payload = af.request("GET", f"/api/v2/dags/{dag_id}/dagRuns?limit=100")
    return list(payload["dag_runs"]) if status == 200 else []


def _fleet(h: Any) -> tuple[dict[str, Any], dict[str, str]]:
    asg, ec2 = h.client("autoscaling"), h.client("ec2")
    group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[ASG])["AutoScalingGroups"][0]
    ids = [i["InstanceId"] for i in group["Instances"]]
    res = ec2.describe_instances(InstanceIds=ids)["Reservations"] if ids else []
    return group, {i["InstanceId"]: i["ImageId"] for r in res for i in r["Instances"]}


def _assert_fleet_on(h: Any, ami: str, version: str) -> None:
    group, images = _fleet(h)
    assert group["DesiredCapacity"] == 2 and len(images) == 2, (group["DesiredCapacity"], images)
    assert set(images.values()) == {ami}, f"fleet not entirely on {version} ({ami}): {images}"


def _inventory_report(h: Any, config: Path, out: Path) -> str:
    """Tonight's inventory report of the sandbox fleet, written as fleet_inventory writes it (its functions)."""
    from phoenix_fleet.config import load_fleet_config
    from phoenix_fleet.inventory.collect import collect_region
    from phoenix_fleet.inventory.report import build_report, render_all, write_local

    cfg = load_fleet_config(config)
    snap = collect_region(h.client("ec2"), h.client("autoscaling"), h.client("ssm"), "us-east-1",
                          ssm_prefix=cfg.ssm_prefix)
    report = build_report([snap], cfg)
    return write_local(report, str(out), render_all(report))["report.json"]


ALL_DAGS = [
    "ami_release_web", "ami_release_worker", "fleet_rollout_web", "fleet_rollout_worker",
    "fleet_inventory", "fleet_max_age", "ami_retention", "fleet_config_check",
]


@pytest.mark.timeout(900)  # includes starting this module's Airflow
def test_every_trigger_form_can_be_submitted_as_it_opens(seeded, real_airflow: RealAirflow):
    """Issue 14, item 1: each DAG's untouched trigger form in headless Chromium: no required mark, no red mark,
    Trigger enabled, and one click creates a run whose conf the DAG accepts. One screenshot per form is kept
    in .sandbox/forms/ (the form as it opens, every section shown)."""
    from jsonschema import Draft7Validator
    from phoenix_fleet.pipelines.release_plan import validate_release_params
    from phoenix_fleet.pipelines.rollout_plan import FIELDS as ROLLOUT_FIELDS
    from phoenix_fleet.pipelines.rollout_plan import policy_overrides

    from sandbox.airflow_env import sandbox_dir
    from tests.e2e.operator_surface import check_form, chromium

    af = real_airflow
    af.wait_api(timeout=120)
    af.wait_dags(ALL_DAGS, timeout=180)
    fleet = load_fleet_config(real_airflow.env["PHOENIX_FLEET_CONFIG"])
    shots = sandbox_dir() / "forms"
    problems: list[str] = []
    with chromium() as browser:
        for dag_id in ALL_DAGS:
            refuse = ("version", "2026-11-30") if dag_id == "ami_release_web" else None
            started = time.monotonic()
            # the worker's release and rollout forms have the web ones' Params: typed into once
            edit = dag_id not in ("ami_release_worker", "fleet_rollout_worker")
            form = check_form(browser, af.base, dag_id, shots, refuse=refuse, edit=edit)
            print(f"{dag_id}: sections {form['sections']}, screenshot {form['screenshot']} "
                  f"({time.monotonic() - started:.1f}s)", flush=True)
            if refuse:  # a bad value: what the person reads is the field and the fix, not a schema dump
                refused = form["refused"]
                print(f"{dag_id} with version=2026-11-30: HTTP {refused['status']}, shows {refused['shown']!r}")
                expected = ("params.version (Version): '2026-11-30' is not in the expected format. Fix: use "
                            "YYYY.MM.DD-N, e.g. 2026.11.30-1, or leave it empty for the next free version")
                assert refused["status"] == 400 and json.loads(refused["body"]) == {"detail": expected}, refused
                assert expected in refused["shown"], refused
            problems += [f"{dag_id}: {p}" for p in form["problems"]]
            if form["status"] is None:
                continue
            if form["status"] != 200:
                problems.append(f"{dag_id}: Trigger answered {form['status']}: {str(form['run'])[:500]}")
                continue
            run = af.run(dag_id, form["run"]["dag_run_id"])
            assert run["state"] == "queued" and run["conf"] == form["sent"], run  # the DAG is paused: it waits
            params = af.api("GET", f"/api/v2/dags/{dag_id}/details")["params"]
            assert set(form["sent"]) == set(params), (dag_id, form["sent"])
            defaults = {name: spec["value"] for name, spec in params.items()}
            assert form["sent"] == defaults, (dag_id, form["sent"], defaults)  # the untouched form: the defaults
            for name, value in form["sent"].items():
                if not Draft7Validator(params[name]["schema"]).is_valid(value):
                    problems.append(f"{dag_id}: the form sent {name}={value!r}, which its schema refuses")
            if dag_id.startswith("ami_release_"):
                validate_release_params(form["sent"], fleet.role(dag_id.split("_")[-1]), dag_id.split("_")[-1])
            if dag_id.startswith("fleet_rollout_"):
                assert set(form["sent"]) == set(ROLLOUT_FIELDS)
                policy_overrides(form["sent"], fleet.role(dag_id.split("_")[-1]).rollout)
            af.api("DELETE", f"/api/v2/dags/{dag_id}/dagRuns/{_q(run['dag_run_id'])}", ok=(204,))
    assert not problems, "\n".join(problems)
    assert {f"{d}.png" for d in ALL_DAGS} <= {p.name for p in shots.glob("*.png")}


def test_hostile_conf_is_refused_naming_the_field_and_changes_nothing(seeded, real_airflow: RealAirflow):
    """Issue 14, item 2: shell text, a path traversal, Jinja, 100 kB strings and wrong types in every field of
    every DAG, and unknown keys per DAG, through the REST API: each gets HTTP 400 with a short answer naming the
    field and the fix, or a run whose first task fails once naming the field; the sandbox (AMIs, launch-template
    versions, instances, ASGs, SSM parameters, S3 objects) is the same afterwards. See operator_surface.py."""
    from sandbox.airflow_env import sandbox_dir
    from tests.e2e.operator_surface import (
        UNKNOWN,
        expected_outcome,
        first_task,
        hostile_values,
        said_about,
        sandbox_state,
        wait_quiet,
    )

    af, h = real_airflow, seeded["handle"]
    af.wait_api(timeout=120)
    af.wait_dags(ALL_DAGS, timeout=180)
    regions = sorted({r for role in load_fleet_config(af.env["PHOENIX_FLEET_CONFIG"]).roles.values()
                      for r in role.regions})
    for dag_id in ALL_DAGS:
        af.unpause(dag_id)
    wait_quiet(af, ALL_DAGS)  # unpausing a scheduled DAG (inventory, retention) starts its latest slot's run
    before = sandbox_state(h, regions)

    problems: list[str] = []
    runs: list[tuple[str, str, str, str, Any]] = []  # dag, run id, field, expected outcome, the value
    answers: list[str] = []  # what each person got: kept with the screenshots
    cases = [
        (dag_id, field, case, value, *expected_outcome(dag_id, field, case))
        for dag_id in ALL_DAGS
        for field, spec in af.api("GET", f"/api/v2/dags/{dag_id}/details")["params"].items()
        for case, value in hostile_values(spec["schema"]).items()
    ]
    # the refusals first, while no task runs: SQLite (this test's metadata DB) locks under concurrent writers
    for dag_id, field, case, value, outcome, extra in sorted(cases, key=lambda c: c[4] != "400"):
        status, body = trigger(af, dag_id, {**extra, field: value})
        where = f"{dag_id} {field} <- {case}"
        if outcome == "400":
            detail = body.get("detail") if isinstance(body, dict) else body
            answers.append(f"{where}: HTTP {status} {detail}")
            if status != 400:
                problems.append(f"{where}: HTTP {status}, expected 400 ({str(body)[:300]})")
            elif not (str(detail).startswith(f"params.{field}") and "Fix:" in str(detail)
                      and len(json.dumps(body)) < 1000):
                problems.append(f"{where}: the 400 answer does not name the field and the fix in short: "
                                f"{json.dumps(body)[:400]} ({len(json.dumps(body))} bytes)")
        elif status != 200:
            problems.append(f"{where}: HTTP {status}, expected a run ({str(body)[:300]})")
        else:
            runs.append((dag_id, body["dag_run_id"], field, outcome, value))
    for dag_id in ALL_DAGS:
        status, body = trigger(af, dag_id, UNKNOWN)
        if status != 200:
            problems.append(f"{dag_id} unknown keys: HTTP {status} ({str(body)[:300]})")
        else:
            runs.append((dag_id, body["dag_run_id"], "__class__", "plan fails", None))
            runs.append((dag_id, body["dag_run_id"], "evil", "plan fails", None))
    print(f"{len(cases) + len(ALL_DAGS)} hostile triggers, {len(runs)} checks through a run", flush=True)

    for dag_id, run_id, field, outcome, value in runs:
        run = af.wait(f"{dag_id} {run_id}", lambda d=dag_id, r=run_id: _finished(af, d, r), timeout=240)
        task = first_task(dag_id)
        ti = af.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{_q(run_id)}/taskInstances/{task}")
        log = af.task_logs(dag_id, run_id, [task], lines=400)
        where = f"{dag_id} {run_id} {field}"
        if outcome == "plan fails":
            if run["state"] != "failed" or ti["state"] != "failed" or ti["try_number"] != 1:
                problems.append(f"{where}: run {run['state']}, {task} {ti['state']} try {ti['try_number']}; "
                                f"expected {task} to fail once\n{log[-2000:]}")
            elif not (said := said_about(log, field)) or "Fix:" not in said:
                problems.append(f"{where}: {task}'s log does not name params.{field} and the fix\n{log[-2000:]}")
            else:
                answers.append(f"{dag_id} {field} (run {run_id}): {task} failed once: {said}")
        else:  # shell text or a path as release notes: text, kept verbatim; the dry run changes nothing
            notes = af.xcom(dag_id, run_id, task, "operator_notes") if run["state"] == "success" else None
            if notes != value or af.xcom(dag_id, run_id, task, "dry_run") is not True:
                problems.append(f"{where}: expected a dry run whose plan keeps the notes verbatim: {run['state']}, "
                                f"{str(notes)[:300]}\n{log[-2000:]}")
    wait_quiet(af, ALL_DAGS)
    (sandbox_dir() / "forms").mkdir(parents=True, exist_ok=True)
    (sandbox_dir() / "forms" / "hostile-conf-answers.txt").write_text("\n".join(answers) + "\n")
    after = sandbox_state(h, regions)
    changed = {k: (before[k], after.get(k)) for k in before if before[k] != after.get(k)}
    assert not changed, f"the sandbox changed: {json.dumps(changed, indent=1)[:3000]}"
    assert not problems, "\n".join(problems)
    for dag_id in ALL_DAGS:  # as the other tests expect them
        af.api("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": True})


def trigger(af: RealAirflow, dag_id: str, conf: dict[str, Any]) -> tuple[int, Any]:
    """POST a run; again (at most twice, 2 s apart) when SQLite was locked (HTTP 500 "Database error": the
    api-server's write lost to a task's, this test's metadata DB is SQLite)."""
    for _ in range(3):
        status, body = af.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf})
        if status != 500 or "Database error" not in json.dumps(body):
            break
        time.sleep(2)
    return status, body


def _pause_handled(af: RealAirflow, run_id: str) -> bool:
    """The scheduler has handled the executor's report that the approval's paused process exited (it logs
    ``TaskInstance Finished`` for it): an answer from now on resumes the task without racing that report."""
    log = af.home / "scheduler.log"
    text = log.read_text(errors="replace") if log.exists() else ""
    return f"TaskInstance Finished: dag_id={ROLLOUT}, task_id=approval, run_id={run_id}," in text


def _finished(af: RealAirflow, dag_id: str, run_id: str) -> dict[str, Any] | None:
    run = af.run(dag_id, run_id)
    return run if run["state"] in ("success", "failed") else None


def test_fleet_config_check_checks_the_api_budget_pools(real_airflow: RealAirflow, manual_release_config: Path):
    """The harness created the pools from the fleet config (as ``make airflow`` does); fleet_config_check reads them
    through the REST API and fails, naming the pool, the field and the fix, when one is resized or deleted."""
    from phoenix_fleet.api_budget import pool_specs

    af = real_airflow
    wanted = {s.name: s.slots for s in pool_specs(load_fleet_config(manual_release_config))}
    assert wanted == {"phoenix_sandbox_eu-west-1": 8, "phoenix_sandbox_us-east-1": 8}
    af.wait_api()
    assert {k: v for k, v in af.pools().items() if k in wanted} == wanted
    dag = "fleet_config_check"
    af.wait_dags([dag])
    af.unpause(dag)
    try:
        ok = af.trigger(dag, {})
        af.wait_run(dag, ok, timeout=120)
        assert af.xcom(dag, ok, "pools") == wanted

        af.api("PATCH", "/api/v2/pools/phoenix_sandbox_eu-west-1",
               {"name": "phoenix_sandbox_eu-west-1", "slots": 3, "include_deferred": False})
        af.api("DELETE", "/api/v2/pools/phoenix_sandbox_us-east-1", ok=(200, 204))
        bad = af.trigger(dag, {})
        run = af.wait(f"{dag} {bad}", lambda: _finished(af, dag, bad), timeout=120)
        log = af.task_logs(dag, bad, ["pools"], lines=200)
        assert run["state"] == "failed" and af.task_state(dag, bad, "pools") == "failed", log[-2000:]
        assert "pool phoenix_sandbox_eu-west-1 has 3 slots, environments.sandbox.api_budget.pool_slots says 8" in log
        assert "pool phoenix_sandbox_us-east-1 does not exist" in log and "Fix: `airflow pools set" in log
    finally:
        af.api("PATCH", "/api/v2/pools/phoenix_sandbox_eu-west-1",
               {"name": "phoenix_sandbox_eu-west-1", "slots": 8, "include_deferred": False})
        if "phoenix_sandbox_us-east-1" not in af.pools():
            af.api("POST", "/api/v2/pools", {"name": "phoenix_sandbox_us-east-1", "slots": 8, "include_deferred": False},
                   ok=(200, 201))
        af.api("PATCH", f"/api/v2/dags/{dag}", {"is_paused": True})


def test_release_then_rollout_with_rest_approval(seeded, worker_asg, real_airflow: RealAirflow,
                                                 manual_release_config: Path, tmp_path: Path):
    h, af = seeded["handle"], real_airflow
    marks: dict[str, float] = {}
    runs: list[tuple[str, str]] = []
    t0 = time.monotonic()

    def mark(name: str) -> None:
        marks[name] = round(time.monotonic() - t0, 1)
        print(f"[{marks[name]:6.1f}s] {name}", flush=True)

    try:
        version_info = af.wait_api(timeout=120)
        mark(f"api-server up (Airflow {version_info['version']})")
        af.wait_dags([RELEASE, ROLLOUT], timeout=120)
        mark("DAGs parsed")
        earlier = {(d, r["dag_run_id"]) for d in (RELEASE, ROLLOUT, MAX_AGE) for r in _runs_if_any(af, d)}

        def new_runs(dag_id: str, run_type: str | None = None) -> list[dict[str, Any]]:
            """This test's runs (the module's other tests ran this Airflow first)."""
            return [r for r in af.runs(dag_id) if (dag_id, r["dag_run_id"]) not in earlier
                    and run_type in (None, r["run_type"])]

        af.unpause(RELEASE)
        af.unpause(ROLLOUT)

        # 1. the release, triggered through the REST API with a conf
        release_run = af.trigger(RELEASE, {"release_notes": "e2e through a real Airflow"})
        runs.append((RELEASE, release_run))
        af.wait_run(RELEASE, release_run, timeout=180)
        mark("release succeeded")
        release_states = af.task_states(RELEASE, release_run)
        assert release_states["publish"] == "success" and release_states["verify.terminate_canary"] == "success"
        # the API budget: the scheduler ran the AWS tasks in the environment's pool of the home region
        release_pools = {ti["task_id"]: ti["pool"] for ti in af.task_instances(RELEASE, release_run)}
        assert release_pools["bake"] == release_pools["publish"] == "phoenix_sandbox_us-east-1", release_pools
        assert release_pools["choose_source"] == "default_pool", release_pools
        ssm = h.client("ssm")
        new_ami = ssm.get_parameter(Name=f"/phoenix/images/{ROLE}/latest")["Parameter"]["Value"]
        version = ssm.get_parameter(Name=f"/phoenix/images/{ROLE}/latest-version")["Parameter"]["Value"]
        assert new_ami != worker_asg["old_ami"]
        assert af.xcom(RELEASE, release_run, "plan", "version") == version
        assert [r["dag_run_id"] for r in new_runs(RELEASE)] == [release_run]

        # 2. the Asset event starts the rollout by itself and hands it the version
        def asset_run() -> dict[str, Any] | None:
            found = new_runs(ROLLOUT, "asset_triggered")
            return found[0] if found else None

        auto = af.wait(f"the asset-triggered {ROLLOUT} run", asset_run, timeout=60)
        auto_run = auto["dag_run_id"]
        runs.append((ROLLOUT, auto_run))
        mark(f"asset-triggered rollout {auto_run} created")
        af.wait_run(ROLLOUT, auto_run, timeout=180)
        mark("asset-triggered rollout succeeded")
        assert af.xcom(ROLLOUT, auto_run, "plan", "version") == version
        auto_states = af.task_states(ROLLOUT, auto_run)
        assert auto_states["approval"] == "skipped" and auto_states["recycle[0]"] == "success", auto_states
        assert auto_states["summary"] == "success", auto_states
        _assert_fleet_on(h, new_ami, version)

        # 3. a manual rollout that asks for approval, answered through the HITL REST endpoint
        manual_run = af.trigger(ROLLOUT, {"require_approval": True, "target_version": "latest"})
        runs.append((ROLLOUT, manual_run))

        def awaiting() -> bool:
            states = af.task_states(ROLLOUT, manual_run)
            if {"failed", "up_for_retry", "upstream_failed"} & set(states.values()):
                raise AssertionError(af.failure_report(ROLLOUT, manual_run))
            return states.get("approval") == "awaiting_input"

        af.wait("the approval task to await input", awaiting, timeout=120)
        mark("approval awaiting input")
        # A human answers in seconds. Answered before the scheduler has handled the executor's report that the
        # paused process exited, Airflow 3.3 races: it queues the resumed try first, takes that report for it,
        # and fails the task (docs/e2e.md; under load that report came 5 s after the pause). So answer once the
        # scheduler has logged it, as a person would answer some time after the question appears.
        af.wait("the scheduler to handle the paused approval's exit", lambda: _pause_handled(af, manual_run),
                timeout=120, every=0.5)
        hitl = f"/api/v2/dags/{ROLLOUT}/dagRuns/{manual_run}/taskInstances/approval/-1/hitlDetails"
        detail = af.api("GET", hitl)
        assert detail["options"] == ["Approve", "Reject"] and detail["response_received"] is False, detail
        assert version in detail["body"] and ASG in detail["body"], detail["body"]
        answer = af.api("PATCH", hitl, {"chosen_options": ["Approve"], "params_input": {}})
        assert answer["chosen_options"] == ["Approve"], answer
        af.wait_run(ROLLOUT, manual_run, timeout=150)
        mark("approved rollout succeeded")
        manual_states = af.task_states(ROLLOUT, manual_run)
        assert manual_states["approval"] == "success" and manual_states["recycle[0]"] == "success", manual_states
        assert af.api("GET", hitl)["response_received"] is True
        assert af.xcom(ROLLOUT, manual_run, "plan", "version") == version

        # 4. the fleet: every worker instance on the new AMI, at desired capacity
        _assert_fleet_on(h, new_ami, version)
        mark("fleet on the new AMI")

        # 4b. a rollout back to the seeded version whose approval is rejected: its canary (one instance on the old
        # AMI, the group locked, processes suspended) is rolled back by canary_rollback, and nothing else runs
        old_version = seeded["roles"][ROLE]["version"]
        reject_run = af.trigger(ROLLOUT, {"require_approval": True, "target_version": old_version})
        runs.append((ROLLOUT, reject_run))

        def awaiting_reject() -> bool:
            states = af.task_states(ROLLOUT, reject_run)
            if {"failed", "up_for_retry", "upstream_failed"} & set(states.values()):
                raise AssertionError(af.failure_report(ROLLOUT, reject_run))
            return states.get("approval") == "awaiting_input"

        af.wait("the approval task to await input", awaiting_reject, timeout=120)
        group, images = _fleet(h)
        assert sorted(images.values()) == sorted([worker_asg["old_ami"], new_ami]), images  # the canary's batch
        assert group["SuspendedProcesses"] and any(t["Key"] == "phoenix:rollout:id" for t in group["Tags"])
        af.wait("the scheduler to handle the paused approval's exit", lambda: _pause_handled(af, reject_run),
                timeout=120, every=0.5)  # see above
        hitl = f"/api/v2/dags/{ROLLOUT}/dagRuns/{reject_run}/taskInstances/approval/-1/hitlDetails"
        af.api("PATCH", hitl, {"chosen_options": ["Reject"], "params_input": {}})

        def rejected() -> dict[str, Any] | None:
            run = af.run(ROLLOUT, reject_run)
            return run if run["state"] == "failed" else None

        af.wait(f"{ROLLOUT} {reject_run} to fail", rejected, timeout=150)
        mark("rejected rollout failed, its canary rolled back")
        reject_states = af.task_states(ROLLOUT, reject_run)
        assert reject_states["approval"] == "failed" and reject_states["canary_rollback"] == "success", reject_states
        assert reject_states["recycle"] == "upstream_failed", reject_states
        rolled_back = af.xcom(ROLLOUT, reject_run, "canary_rollback")
        assert rolled_back["outcome"] == "rolled_back" and "lock released" in rolled_back["message"], rolled_back
        group, _ = _fleet(h)
        assert group["SuspendedProcesses"] == [] and (group["MinSize"], group["MaxSize"]) == (1, 4), group
        assert not [t for t in group["Tags"] if t["Key"].startswith("phoenix:rollout:")], group["Tags"]
        _assert_fleet_on(h, new_ami, version)

        # 5. max age: an instance 20 days old, tonight's report, the inventory Asset event -> fleet_max_age
        _, images = _fleet(h)
        old, young = sorted(images)
        h.age_instances(instance_ids=[old], days=20)
        report = _inventory_report(h, manual_release_config, tmp_path / "reports")
        af.wait_dags([MAX_AGE], timeout=60)
        af.unpause(MAX_AGE)
        assets = af.api("GET", "/api/v2/assets?uri_pattern=x-phoenix://inventory/fleet")["assets"]
        assert [a["name"] for a in assets] == ["phoenix_fleet_inventory"], assets
        af.api("POST", "/api/v2/assets/events", {"asset_id": assets[0]["id"], "extra": {"path": report}})

        def max_age_run() -> dict[str, Any] | None:
            found = new_runs(MAX_AGE, "asset_triggered")
            return found[0] if found else None

        renewal = af.wait(f"the asset-triggered {MAX_AGE} run", max_age_run, timeout=60)["dag_run_id"]
        runs.append((MAX_AGE, renewal))
        af.wait_run(MAX_AGE, renewal, timeout=150)
        mark("fleet_max_age succeeded")
        assert af.task_state(MAX_AGE, renewal, "renew", 0) == "success"
        summary = af.xcom(MAX_AGE, renewal, "summary")
        assert summary["renewed"] == [ASG], summary
        assert summary["results"][0]["replaced"] == 1, summary
        group, images = _fleet(h)
        assert old not in images and young in images, images
        _assert_fleet_on(h, new_ami, version)
        mark("the old instance renewed on the same AMI")
    except BaseException:
        print(f"phase timings: {marks}")
        for dag_id, run_id in runs:
            print(af.failure_report(dag_id, run_id))
        print(af.tails(80))
        raise
