"""``make demo``: the main job in the local sandbox.

1. start the sandbox cloud (or reuse the running one), reset it and switch it to the ``demo`` realism
   profile (instances take seconds to boot, AMIs pend, SSM commands run);
2. seed it (base AMI, each role's current release, the SSM "latest" pointers, the artifacts and Terraform state
   buckets);
3. build the fleet with real Terraform (include/terraform/envs/sandbox: the network root, then the fleet root with
   the Terraform roles' groups), the state in the sandbox's S3 as include/fleet.yaml's ``backend_config`` says
   (one state key per root, so the two roots never wait on each other's lock). The network root runs in the
   background: the AWS provider waits a fixed 2 x 30 s after it creates the ALB, and the fleet root only looks
   the network's resources up, so the fleet root applies as soon as they exist (the ALB included) while the
   network root sits out its waits; then the native-backend roles' groups with the API (sandbox/native_groups.py:
   the native backend is their templates' one writer);
4. print the fleet: roles, ASGs, instances, AMI and version;
5. run the weekly release of one role (``ami_release_<role>``), then its rollout (``fleet_rollout_<role>``)
   and the inventory report (``fleet_inventory``) with ``airflow dags test``, when those DAGs exist. The release
   needs only the seed and Airflow's DB, so it runs while Terraform builds the fleet, from the moment the fleet
   root has created its first launch template (its plan has read the image pointers: what the release publishes
   does not change the fleet Terraform builds, so the rollout still has a release to roll). The DAGs
   read include/fleet.yaml with one change, printed: a warmup of ``DEMO_WARMUP_SECONDS`` instead of the
   sample's 30 s (the sandbox's instances serve at once; ``airflow dags test`` runs mapped tasks one after
   the other, so every batch's warmup adds up);
6. print the fleet again, a summary, where the report and logs are, and each phase's wall and CPU time
   (``sandbox/demo_phases.py``), with the load average.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from sandbox.demo_phases import Background, Phases, wait_until

REPO = Path(__file__).resolve().parents[1]
TF_FLEET = REPO / "include" / "terraform" / "envs" / "sandbox"
TF_NETWORK = TF_FLEET / "network"
DEMO_ROLE = os.environ.get("PHOENIX_DEMO_ROLE", "web")
DEMO_WARMUP_SECONDS = 10
NETWORK_STATE_KEY = "sandbox/network.tfstate"


def _step(msg: str) -> None:
    print(f"\n==> {msg}", flush=True)


def _sandbox(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "sandbox", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"python -m sandbox {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
    return proc.stdout.strip()


def start_sandbox() -> str:
    out = _sandbox("start", "--quiet")
    endpoint = out.splitlines()[-1].split()[-1]
    if not endpoint.startswith("http"):
        raise SystemExit(f"sandbox start printed no endpoint: {out!r}")
    return endpoint


def backend_settings(root: Path) -> dict[str, object]:
    """The root's S3 backend settings: the web role's ``terraform.backend_config`` (the state TerraformApplyOperator
    uses later); the network root keeps its state next to it, under ``NETWORK_STATE_KEY``."""
    from phoenix_fleet.config import load_fleet_config

    settings: dict[str, object] = dict(load_fleet_config().role("web").terraform.backend_config)
    if root == TF_NETWORK:
        settings["key"] = NETWORK_STATE_KEY
    return settings


def terraform_apply(root: Path, endpoint: str) -> float:
    """init (state in the sandbox's S3, as the pipeline keeps it) + apply."""
    from phoenix_fleet.hooks.terraform_hook import backend_config_args
    from phoenix_fleet.terraform_env import run_terraform, terraform_env

    env = terraform_env()
    t0 = time.monotonic()
    backend = [f"-backend-config={a}" for a in backend_config_args(backend_settings(root))]
    for args in (
        # -reconfigure: the sandbox was reset, so whatever backend an earlier run initialised is gone
        ["init", "-input=false", "-no-color", "-reconfigure", *backend],
        ["apply", "-input=false", "-no-color", "-auto-approve", f"-var=endpoint={endpoint}"],
    ):
        proc = run_terraform(args, cwd=root, env=env)
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
            raise SystemExit(f"terraform {args[0]} in {root.relative_to(REPO)} failed (exit {proc.returncode})")
    return time.monotonic() - t0


def network_ready(endpoint: str, env: str = "sandbox", region: str = "us-east-1") -> bool:
    """Everything the fleet root looks up from the network root exists (include/terraform/envs/sandbox/network.tf:
    the VPC by its tags, two public subnets, the instances' security group, the ALB by name)."""
    import boto3

    kw = {"endpoint_url": endpoint, "region_name": region}
    ec2, elbv2 = boto3.client("ec2", **kw), boto3.client("elbv2", **kw)
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "tag:phoenix:network", "Values": [env]},
                                      {"Name": "tag:Name", "Values": [f"{env}-phoenix"]}])["Vpcs"]
    if len(vpcs) != 1:
        return False
    in_vpc = {"Name": "vpc-id", "Values": [vpcs[0]["VpcId"]]}
    subnets = ec2.describe_subnets(Filters=[in_vpc, {"Name": "tag:phoenix:tier", "Values": ["public"]}])["Subnets"]
    groups = ec2.describe_security_groups(
        Filters=[in_vpc, {"Name": "group-name", "Values": [f"{env}-phoenix-instances"]}])["SecurityGroups"]
    if len(subnets) < 2 or not groups:
        return False
    try:
        return bool(elbv2.describe_load_balancers(Names=[f"{env}-phoenix"])["LoadBalancers"])
    except elbv2.exceptions.LoadBalancerNotFoundException:
        return False


def fleet_root_planned(endpoint: str, env: str = "sandbox", region: str = "us-east-1") -> bool:
    """The fleet root has created a launch template, so its plan (which reads every role's
    ``/phoenix/images/<role>/latest`` at once) is done: a release published from now on no longer changes what it
    builds (modules/service's templates are described ``phoenix-fleet <env>/<role>: ...``)."""
    import boto3

    ec2 = boto3.client("ec2", endpoint_url=endpoint, region_name=region)
    templates = ec2.describe_launch_templates()["LaunchTemplates"]
    return any(str(t.get("LaunchTemplateName", "")).startswith(f"{env}-") for t in templates)


def fleet_rows(endpoint: str, region: str = "us-east-1") -> list[dict[str, str]]:
    import boto3
    from phoenix_fleet.config import load_fleet_config

    cfg = load_fleet_config()
    kw = {"endpoint_url": endpoint, "region_name": region}
    asg, ec2 = boto3.client("autoscaling", **kw), boto3.client("ec2", **kw)
    groups = [g for p in asg.get_paginator("describe_auto_scaling_groups").paginate() for g in p["AutoScalingGroups"]]
    image_of: dict[str, str] = {}
    ids = [i["InstanceId"] for g in groups for i in g["Instances"]]
    if ids:
        for page in ec2.get_paginator("describe_instances").paginate(InstanceIds=ids):
            for r in page["Reservations"]:
                for inst in r["Instances"]:
                    image_of[inst["InstanceId"]] = inst["ImageId"]
    versions: dict[str, str] = {}
    if image_of:
        for img in ec2.describe_images(ImageIds=sorted(set(image_of.values())))["Images"]:
            tags = {t["Key"]: t["Value"] for t in img.get("Tags", [])}
            versions[img["ImageId"]] = tags.get("phoenix:version", "unversioned")
    rows = []
    for role_name, role in cfg.roles.items():
        for g in groups:
            tags = {t["Key"]: t["Value"] for t in g.get("Tags", [])}
            if any(tags.get(k) != v for k, v in role.asgs.tags.items()):
                continue
            for i in sorted(g["Instances"], key=lambda x: x["InstanceId"]):
                ami = image_of.get(i["InstanceId"], "?")
                rows.append({
                    "role": role_name, "asg": g["AutoScalingGroupName"], "desired": str(g["DesiredCapacity"]),
                    "instance": i["InstanceId"], "az": i["AvailabilityZone"], "state": i["LifecycleState"],
                    "health": i["HealthStatus"], "ami": ami, "version": versions.get(ami, "?"),
                })
    return rows


def print_fleet(rows: list[dict[str, str]]) -> None:
    role = asg = None
    for r in rows:
        if r["role"] != role:
            role = r["role"]
            print(f"  role {role}")
        if r["asg"] != asg:
            asg = r["asg"]
            print(f"    asg {asg} (desired {r['desired']})")
        print(f"      {r['instance']}  {r['az']:<11} {r['state']:<10} {r['health']:<9} {r['ami']:<14} {r['version']}")


def airflow_dags_test(env: dict[str, str], dag_id: str, conf: dict, log_dir: Path) -> bool:
    log = log_dir / f"{dag_id}.log"
    airflow = str(Path(sys.executable).with_name("airflow"))
    t0 = time.monotonic()
    with log.open("w") as fh:
        proc = subprocess.run([airflow, "dags", "test", dag_id, "-c", json.dumps(conf)], env=env, stdout=fh,
                              stderr=subprocess.STDOUT)
    ok = proc.returncode == 0 and "state=failed" not in log.read_text()[-4000:]
    print(f"    {dag_id}: {'success' if ok else 'FAILED'} in {time.monotonic() - t0:.0f}s (log: {log})")
    return ok


def main() -> int:
    phases = Phases()
    setup = os.environ.get("PHOENIX_DEMO_SETUP_SECONDS", "").strip()
    if setup.isdigit():
        phases.extra_seconds["make setup (uv, the venv from uv.lock)"] = float(setup)
    try:
        return _demo(phases)
    finally:
        _step("phase times (wall, and CPU where it can be told apart)")
        print(phases.report())


def _demo(phases: Phases) -> int:
    sandbox_dir = Path(os.environ.get("PHOENIX_SANDBOX_DIR", REPO / ".sandbox"))
    _step("starting the sandbox cloud (moto + realism extensions; see docs/sandbox.md)")
    with phases("sandbox: start, reset, demo profile"):
        endpoint = start_sandbox()
        _sandbox("reset")
        _sandbox("config", "--profile", "demo")
    print(f"    {endpoint} (profile demo: instances boot in seconds, AMIs pend, targets report health)")
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )

    _step("seeding: base AMI, current releases, SSM latest pointers, artifacts and Terraform state buckets")
    from sandbox.seed import seed

    with phases("seed"):
        seeded = seed(endpoint)
    for role, info in sorted(seeded["roles"].items()):
        print(f"    {role}: {info['ami_id']} version {info['version']}")

    dags = {p.stem for p in (REPO / "dags").glob("*.py")}
    from sandbox.airflow_env import airflow_env, fleet_config_with_warmup

    os.environ["PHOENIX_FLEET_CONFIG"] = str(fleet_config_with_warmup(sandbox_dir / "demo-include", DEMO_WARMUP_SECONDS))
    env = airflow_env(endpoint, home=sandbox_dir / "airflow")
    log_dir = sandbox_dir / "demo-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    # Airflow's metadata DB is prepared while Terraform builds the fleet (fresh: the sandbox was reset too)
    (sandbox_dir / "airflow" / "airflow.db").unlink(missing_ok=True)
    migrate_log = (log_dir / "airflow-db-migrate.log").open("w")
    migrate_cmd = [str(Path(sys.executable).with_name("airflow")), "db", "migrate"]
    migrate = Background("airflow db migrate", lambda: subprocess.run(
        migrate_cmd, env=env, stdout=migrate_log, stderr=subprocess.STDOUT).returncode)

    _step("building the fleet with real Terraform (network root in the background, fleet root once the network "
          "exists; state in the sandbox's S3)")
    for root in (TF_NETWORK, TF_FLEET):  # local state of a run before the S3 backend: it describes nothing now
        for name in ("terraform.tfstate", "terraform.tfstate.backup"):
            (root / name).unlink(missing_ok=True)
    network = Background("terraform network root", lambda: terraform_apply(TF_NETWORK, endpoint))

    def fleet_root() -> float:
        waited = wait_until("the network root's VPC, subnets, security group and ALB",
                            lambda: network_ready(endpoint), timeout=600, also=network)
        print(f"    the network's resources exist after {waited:.0f}s (the network root goes on waiting for its ALB)")
        seconds = terraform_apply(TF_FLEET, endpoint)
        print(f"    fleet applied in {seconds:.0f}s")
        from sandbox.native_groups import make_native_groups

        for name, group in make_native_groups(endpoint).items():  # native-backend roles: not in any Terraform root
            print(f"    {name} ({group['role']}, native backend) made with the AutoScaling API")
        return seconds

    fleet = Background("terraform fleet root", fleet_root)

    # The release needs the seed and Airflow's DB, not the fleet: it runs while Terraform builds the fleet, from the
    # moment the fleet root has planned (read the image pointers), so the fleet starts on the seed's release and
    # the rollout moves it to the new one
    results: dict[str, bool] = {}
    release_dag = f"ami_release_{DEMO_ROLE}"

    def release() -> bool:
        if migrate.join(timeout=600) != 0:
            raise SystemExit(f"airflow db migrate failed: see {migrate_log.name}")
        wait_until("the fleet root's first launch template", lambda: fleet_root_planned(endpoint), timeout=900,
                   also=fleet)
        print(f"    {release_dag} starts (the fleet root has read the image pointers; Terraform goes on meanwhile)")
        return airflow_dags_test(env, release_dag, {}, log_dir)

    if "ami_release" in dags:
        print(f"    DAGs read {os.environ['PHOENIX_FLEET_CONFIG']}: include/fleet.yaml with a rollout warmup of "
              f"{DEMO_WARMUP_SECONDS}s (the sample says 30s)")
        _step(f"weekly security release of role {DEMO_ROLE}: bake → verify → publish, while Terraform builds the fleet")
        released = Background(release_dag, release)
    with phases("terraform: the network's resources, then the fleet root"):
        fleet.join(timeout=1800)

    _step("the fleet")
    before = fleet_rows(endpoint)
    print_fleet(before)

    with phases("airflow db migrate (what was left of it)"):
        if migrate.join(timeout=600) != 0:
            raise SystemExit(f"airflow db migrate failed: see {migrate_log.name}")
    phases.add("airflow db migrate", migrate.wall or 0, background=True)
    if "ami_release" in dags:
        with phases(f"{release_dag} (what was left of it after the fleet root)"):
            results["release"] = released.join(timeout=3600)
        phases.add(release_dag, released.wall or 0, background=True)
        if results["release"] and "fleet_rollout" in dags:
            _step(f"rollout of the new image over every {DEMO_ROLE} ASG: apply → canary → recycle → health gate")
            with phases(f"fleet_rollout_{DEMO_ROLE}"):
                results["rollout"] = airflow_dags_test(env, f"fleet_rollout_{DEMO_ROLE}", {}, log_dir)
        if "fleet_inventory" in dags:
            _step("nightly inventory report")
            with phases("fleet_inventory"):
                results["inventory"] = airflow_dags_test(env, "fleet_inventory", {}, log_dir)
    migrate_log.close()

    with phases("terraform network root (what was left of its wait)"):
        seconds = network.join(timeout=900)
    phases.add("terraform network root", network.wall or seconds, background=True)
    print(f"    network root applied in {seconds:.0f}s, in the background")

    _step("the fleet after the release")
    after = fleet_rows(endpoint)
    print_fleet(after)
    from phoenix_fleet.config import load_fleet_config

    reports = f"s3://{load_fleet_config().artifacts_bucket}/inventory/latest/"  # the report's home (and the UI page's)
    if os.environ.get("PHOENIX_REPORT_DIR"):
        reports += f" and {os.environ['PHOENIX_REPORT_DIR']}"
    versions = sorted({r["version"] for r in after if r["role"] == DEMO_ROLE})
    _step("summary")
    print(f"    {DEMO_ROLE} now runs {', '.join(versions)} on {sum(r['role'] == DEMO_ROLE for r in after)} instances")
    for name, ok in results.items():
        print(f"    {name}: {'ok' if ok else 'FAILED'}")
    print(f"    inventory report: {reports}   logs: {log_dir}")
    print(f"    sandbox still running at {endpoint} (make sandbox-stop)")
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
