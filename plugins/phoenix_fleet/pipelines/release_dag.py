"""``ami_release_<role>``: bake → AMI available → verify → publish, one DAG per role."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pendulum
from airflow.sdk import DAG, Param, TaskGroup, task

from phoenix_fleet.form_params import (
    AMI_ID_PATTERN,
    AMI_NAME_PATTERN,
    AMI_OWNER_PATTERN,
    NAME_MAX,
    NO_JINJA_PATTERN,
    NOTES_MAX,
    REGION_PATTERN,
    VERSION_PATTERN,
    form_param,
    string_list,
)

if TYPE_CHECKING:
    from phoenix_fleet.dag_facts import RoleFacts

DOC = """
### ami_release_{role}: the weekly security-patch release of the **{role}** image

**What it does**

1. **plan**: validates the trigger form, resolves the version (`YYYY.MM.DD-N`, the next free one today
   unless given) and **claims** it atomically (SSM `{prefix}-claims/{role}/<version>`, created only if absent);
   terminates canaries of earlier runs that are past their bound; a dry run prints the plan and stops here.
2. **bake**: Packer builds the AMI from `include/{template}` (base AMI `{base_name}` owned by
   `{owners}`), with the testinfra image suite run during the build: a failed check fails the bake.
   A retry reuses an AMI already built for this version.
3. **ami_available**: waits (deferred, no worker slot) until the AMI is `available`; fails at once on `failed`.
4. **verify**: boots a canary from the AMI, waits for its status checks, runs the image test suite on
   it via SSM, tags the AMI `phoenix:verified=true|false`; the canary is always terminated (teardown).
5. **publish**: versions and tags the AMI, writes the release notes (package diff against the previous
   version), copies it to {regions}, shares it with {accounts}, moves `{prefix}/{role}/latest` and emits
   the Asset `x-phoenix://images/{role}`, which starts `fleet_rollout_{role}`.

**Afterwards** (teardown `settle_version_claim`): a run that did not publish releases its version claim.
The run's `dagrun_timeout` is sized from the stages' own limits (every task has one).

**Schedule**: `{schedule}` (UTC). One run at a time; no catch-up. A scheduled run that starts more than
`schedule_grace_hours` ({grace:g} h) after its slot (created by unpausing the DAG, or after a scheduler outage)
releases nothing: `plan` skips it and says so. Trigger by hand to release at another time.

**Trigger form** (Trigger DAG w/ config): `version` (empty: next free), `skip_bake` + `ami_id`
(release an existing AMI, verified first), `base_ami_name` + `base_ami_owners` (override the base
image; owners are required), `regions` (a subset, home region included: only those regions are copied to and
published, the event names them, the rollout rolls them; the others stay on their version), `dry_run`,
`release_notes` (operator's notes).

**Notifications**: a failure (what failed, the version, the run link, what to do) and, unless the environment's
`notify_on_success` is off, the published release go to the environment's SNS topic and Slack connection, and
always to the log (docs/notifications.md).

**Where to look**: the `plan` task log for the plan; `bake` for Packer's output; `run_image_tests`
for the checks; `release` for the release notes (also in `s3://{bucket}/images/{role}/<version>/`).
"""


def release_params() -> dict[str, Param]:
    """The trigger form (every field optional: the untouched form releases the next version of the role)."""
    what, source, publish, safety = "What to release", "Source image", "Publish", "Safety"
    return {
        "version": form_param(
            None, "YYYY.MM.DD-N, e.g. 2026.11.30-1. Empty: the next free version today.",
            title="Version", section=what, type="string", pattern=VERSION_PATTERN, maxLength=32,
            **{"x-fix": "use YYYY.MM.DD-N, e.g. 2026.11.30-1, or leave it empty for the next free version"},
        ),
        "skip_bake": form_param(
            False, "On: release the existing AMI below (it is verified first) instead of baking a new one.",
            title="Release an existing AMI (no bake)", section=what, type="boolean",
        ),
        "ami_id": form_param(
            None, "With 'Release an existing AMI': its id, ami- and 8-17 hex digits, owned by this account.",
            title="Existing AMI id", section=what, type="string", pattern=AMI_ID_PATTERN, maxLength=21,
            **{"x-fix": "use ami- followed by 8-17 hex digits, e.g. ami-0123456789abcdef0"},
        ),
        "base_ami_name": form_param(
            None, "Bake from another base image: its AMI name pattern, e.g. debian-12-amd64-*. "
            "Needs the owners below. Empty: the role's base image in include/fleet.yaml.",
            title="Base AMI name pattern", section=source, type="string", pattern=AMI_NAME_PATTERN,
            maxLength=NAME_MAX,
            **{"x-fix": "3-128 characters: letters, digits, ( ) [ ] space . / - ' @ _ and the wildcard *"},
        ),
        "base_ami_owners": form_param(
            None, "Owners of that base image, one per line: 12-digit account ids, 'self' or 'amazon'. "
            "Required with a base AMI name (a name alone can be squatted).",
            title="Base AMI owners", section=source,
            **string_list(AMI_OWNER_PATTERN, 12, 10, "one owner per line: a 12-digit account id, 'self' or 'amazon'"),
        ),
        "regions": form_param(
            None, "Publish only to these regions of the role, one per line (the home region included). "
            "Empty: all of the role's regions.",
            title="Regions", section=publish,
            **string_list(REGION_PATTERN, 32, 30, "one region per line, e.g. us-east-1"),
        ),
        "release_notes": form_param(
            None, f"Your notes for this release, at most {NOTES_MAX} characters: in the published release notes, the "
            "release log, the image's asset event, the rollout's summary and the notifications.",
            title="Release notes", section=publish, type="string", maxLength=NOTES_MAX, format="multiline",
            pattern=NO_JINJA_PATTERN,
            **{"x-fix": f"plain text of at most {NOTES_MAX} characters, without {{{{, {{% or {{#"},
        ),
        "dry_run": form_param(
            False, "On: print the release plan and change nothing.",
            title="Dry run (plan only)", section=safety, type="boolean",
        ),
    }


def build_release_dag(facts: RoleFacts) -> DAG:
    """The role's release DAG, from its parse-time facts (:func:`phoenix_fleet.dag_facts.fleet_dag_facts`)."""
    # operator modules are import-light (no AWS library at module level)
    from phoenix_fleet.api_budget import NO_BUDGET_POOL, pool_name
    from phoenix_fleet.operators.bake_operators import PackerBuildOperator
    from phoenix_fleet.operators.publish_operators import (
        CopyImageToRegionOperator,
        PublishReleaseOperator,
        ReleaseImageOperator,
        image_asset,
    )
    from phoenix_fleet.operators.verify_operators import (
        LaunchCanaryOperator,
        MarkVerifiedOperator,
        RunImageTestsOperator,
        TerminateCanaryOperator,
        WaitCanaryHealthyOperator,
    )
    from phoenix_fleet.pipelines.notify import dag_callbacks
    from phoenix_fleet.pipelines.run_budget import DEFAULT_TASK_LIMIT, longest_path, run_bound
    from phoenix_fleet.sensors.ami_sensors import AmiAvailableSensor

    role_name = facts["role"]
    home = facts["home_region"]
    # the API budget (docs/scale.md): every task calling AWS runs in the pool of the environment and home region
    # (default_args); the tasks that call no AWS API run in Airflow's default pool
    budget_pool = pool_name(facts["env"], home)
    # filled once every task exists (below): the run's bound (dagrun_timeout, also the version claim's lifetime)
    # and the canary's (launch_canary to terminate_canary), both sized from the tasks' own limits
    limits: dict[str, timedelta] = {}
    QUICK = timedelta(minutes=5)  # noqa: N806 - a constant of this builder
    doc = DOC.format(
        role=role_name, template=facts["packer_template"], base_name=facts["base_ami_name"],
        owners=", ".join(facts["base_ami_owners"]), regions=", ".join(facts["regions"]),
        accounts=", ".join(facts["share_with_accounts"]) or "no other account", prefix=facts["ssm_prefix"],
        schedule=facts["schedule"] or "manual only", bucket=facts["artifacts_bucket"],
        grace=facts["schedule_grace_hours"],
    )
    with DAG(
        dag_id=f"ami_release_{role_name}",
        schedule=facts["schedule"],
        start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,
        dagrun_timeout=timedelta(hours=4),  # replaced below by the bound computed from the stage limits
        tags=["phoenix-fleet", "release", f"role:{role_name}"],
        doc_md=doc,
        params=release_params(),
        **dag_callbacks("release", role_name),
        default_args={
            "owner": "platform",
            "retries": 2,
            "retry_delay": timedelta(minutes=1),
            "retry_exponential_backoff": True,
            "execution_timeout": DEFAULT_TASK_LIMIT,  # every task is bounded (bake sets its own)
            "region_name": home,
            "aws_conn_id": facts["aws_conn_id"],  # environments.<env>.aws_conn_id, for every AWS task
            "pool": budget_pool,
        },
    ) as dag:

        @task(multiple_outputs=True, retries=1, execution_timeout=QUICK * 2)
        def plan(params: dict[str, Any] | None = None, dag_run: Any = None) -> dict[str, Any]:
            from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

            from phoenix_fleet.aws_conn import require_aws_connection
            from phoenix_fleet.config import cached_fleet_config
            from phoenix_fleet.hooks.image_hook import ImageHook
            from phoenix_fleet.pipelines.release_plan import (
                ReleaseParamError,
                describe_plan,
                late_scheduled_run,
                plan_release,
            )

            slot = getattr(dag_run, "run_after", None) or getattr(dag_run, "data_interval_end", None)
            late = late_scheduled_run(
                getattr(dag_run, "run_type", None), slot, pendulum.now("UTC"),
                cached_fleet_config().role(role_name).schedule_grace_hours,
            )
            if late:
                raise AirflowSkipException(late)
            from phoenix_fleet.canaries import sweep_expired_canaries

            require_aws_connection(facts["aws_conn_id"], facts["aws_conn_field"])  # the whole run uses it
            hook = ImageHook(aws_conn_id=facts["aws_conn_id"], region_name=home)
            try:
                result = plan_release(
                    cached_fleet_config(), role_name, params or {}, hook,
                    run_id=getattr(dag_run, "run_id", None), dag_id=getattr(dag_run, "dag_id", None),
                    claim_ttl=limits["run"],
                )
            except ReleaseParamError as e:  # bad input: fail now, no retry, nothing changed
                raise AirflowFailException(str(e)) from None
            # canaries of runs that ended without their teardown (dagrun_timeout skips it; a killed worker)
            try:
                swept = sweep_expired_canaries(
                    hook.ec2(home), pendulum.now("UTC"), default_lifetime=limits["canary"], dry_run=result["dry_run"],
                    log=hook.log,
                )
                result["expired_canaries"] = [c["instance_id"] for c in swept]
            except Exception as e:  # the release goes on; the inventory report lists what is left
                hook.log.warning("Sweeping expired canaries in %s failed: %s", home, e)
                result["expired_canaries"] = None
            print(describe_plan(result))
            return result

        @task.branch(execution_timeout=QUICK, pool=NO_BUDGET_POOL)
        def choose_source(plan: dict[str, Any]) -> str | None:
            if plan["dry_run"]:
                print("dry run: nothing baked, verified or published")
                return None
            # skip_bake: straight to the join (bake is skipped; the existing AMI is verified below before release)
            return "image_under_test" if plan["skip_bake"] else "bake"

        @task(trigger_rule="none_failed_min_one_success", execution_timeout=QUICK, pool=NO_BUDGET_POOL)
        def image_under_test(plan: dict[str, Any], ti: Any = None) -> str:
            if plan["dry_run"]:
                from airflow.sdk.exceptions import AirflowSkipException

                raise AirflowSkipException("dry run")
            if plan["skip_bake"]:
                return str(plan["ami_id"])
            baked = ti.xcom_pull(task_ids="bake")
            if not baked or not baked.get("ami_id"):
                raise RuntimeError("bake returned no AMI id. Fix: see the bake task log")
            return str(baked["ami_id"])

        @task(execution_timeout=QUICK, pool=NO_BUDGET_POOL)
        def publish_regions(plan: dict[str, Any]) -> list[str]:
            return list(plan["regions"])

        @task(trigger_rule="all_done", retries=3, execution_timeout=QUICK * 2, multiple_outputs=False)
        def settle_version_claim(ti: Any = None, dag_run: Any = None) -> dict[str, Any]:
            """Teardown: a run that did not publish its version releases its claim; a published one keeps it."""
            from airflow.sdk.exceptions import AirflowSkipException

            from phoenix_fleet.config import cached_fleet_config
            from phoenix_fleet.hooks.image_hook import ImageHook
            from phoenix_fleet.pipelines.version_claims import release_claim

            claim = ti.xcom_pull(task_ids="plan", key="claim")
            version = ti.xcom_pull(task_ids="plan", key="version")
            if not claim:
                raise AirflowSkipException("this run claimed no version (dry run, skipped or failed plan)")
            hook = ImageHook(aws_conn_id=facts["aws_conn_id"], region_name=home)
            fleet = cached_fleet_config()
            evidence = hook.publication_evidence(
                fleet.artifacts_bucket, role_name, str(version), fleet.latest_version_parameter(role_name), home
            )
            if evidence:
                print(f"{version} was published ({evidence}): its claim {claim['parameter']} stays (versions are "
                      "immutable)")
                return {"version": version, "claim": claim["parameter"], "released": False}
            released = release_claim(
                hook.client("ssm", home), claim["parameter"], run_id=claim["run_id"], dag_id=claim["dag_id"],
            )
            print(
                f"{version} was not published: claim {claim['parameter']} "
                + ("released" if released else "already gone or held by another run (left alone)")
            )
            return {"version": version, "claim": claim["parameter"], "released": released}

        the_plan = plan()
        source = choose_source(the_plan)
        bake = PackerBuildOperator(
            task_id="bake",
            role=role_name,
            version=the_plan["version"],
            extra_vars=the_plan["packer_vars"],
            region_name=home,
            execution_timeout=timedelta(hours=2),
        )
        ami = image_under_test(the_plan)
        # branch and join: image_under_test runs after bake, or straight after the branch with skip_bake
        source >> [bake, ami]
        bake >> ami

        available = AmiAvailableSensor(task_id="ami_available", image_id=ami, region_name=home, timeout=3600)

        with TaskGroup("verify", tooltip="boot a canary from the AMI and run the image test suite on it"):
            # execution_timeout bounds the time on a worker; the waits are deferred, bounded by each `timeout`
            launch = LaunchCanaryOperator(
                task_id="launch_canary", image_id=ami, role=role_name, execution_timeout=QUICK * 2
            )
            healthy = WaitCanaryHealthyOperator(
                task_id="wait_canary_healthy", launch_task_id="verify.launch_canary", execution_timeout=QUICK
            )
            tests = RunImageTestsOperator(
                task_id="run_image_tests", image_id=ami, role=role_name, launch_task_id="verify.launch_canary",
                execution_timeout=QUICK * 2,
            )
            mark = MarkVerifiedOperator(
                task_id="mark_verified", image_id=ami, role=role_name, tests_task_id="verify.run_image_tests",
                execution_timeout=QUICK * 2,
            )
            terminate = TerminateCanaryOperator(
                task_id="terminate_canary", launch_task_id="verify.launch_canary", execution_timeout=QUICK * 3
            ).as_teardown(setups=launch)
            launch >> healthy >> tests >> mark
            [healthy, tests, mark] >> terminate

        release = ReleaseImageOperator(
            task_id="release", role=role_name, ami_id=ami, version=the_plan["version"],
            operator_notes=the_plan["operator_notes"],
        )
        publish_regions_list = publish_regions(the_plan)  # the plan's regions: copied to, and published in
        copies = CopyImageToRegionOperator.partial(
            task_id="copy_to_region", role=role_name, ami_id=release.output["ami_id"],
            source_region=home, max_active_tis_per_dagrun=4,
        ).expand(dest_region=publish_regions_list)
        publish = PublishReleaseOperator(
            task_id="publish", role=role_name, release=release.output, copies=copies.output,
            regions=publish_regions_list, outlets=[image_asset(role_name)],
        )
        available >> launch
        mark >> release >> copies >> publish
        publish >> settle_version_claim().as_teardown()

    sizes = {"copy_to_region": len(facts["regions"])}
    limits["run"] = run_bound(dag, sizes)
    limits["canary"], _path = longest_path(
        dag, start="verify.launch_canary", end="verify.terminate_canary", map_sizes=sizes
    )
    dag.dagrun_timeout = limits["run"]
    launch.max_lifetime = limits["canary"]
    return dag
