"""Seed the sandbox with what Terraform reads and the project needs, idempotently.

``seed(endpoint_url, region)`` makes, unless it already exists:

* a base AMI ``phoenix-base-debian-12-<YYYYMMDD>`` owned by the sandbox account (the fleet config resolves it
  with ``name=phoenix-base-debian-12-*``, ``owners=[self]``), baked from one of moto's default Amazon images by
  launching a builder instance, ``create_image`` and terminating the builder;
* per role (``web``, ``worker``) an initial release AMI ``phoenix-<role>-<version>`` made from the base, tagged
  ``phoenix:role``, ``phoenix:version`` (``YYYY.MM.DD-N``, dated 9 days ago), ``phoenix:source-ami``,
  ``phoenix:verified=true``, ``phoenix:managed-by=phoenix-fleet``;
* per role, in **every region the role lists** (:func:`role_regions`: the fleet config's roles and regions), the
  SSM String parameters ``/phoenix/images/<role>/latest`` (value: that region's AMI id, data type
  ``aws:ec2:image``, labelled ``v<version>``) and ``/phoenix/images/<role>/latest-version`` (value: the version).
  In a region other than the one the seed bakes in, the AMI is a copy (``copy_image``), tagged like the source plus
  ``phoenix:copy-of`` and ``phoenix:source-region`` (what publish's copy step leaves), so any DAG of any role can
  run first on a fresh sandbox;
* the S3 buckets ``phoenix-fleet-artifacts`` and ``phoenix-fleet-tfstate`` (the Terraform roots' S3 backend;
  versioned, public access blocked, encrypted by default), the IAM instance profile
  ``phoenix-canary`` (role of the same name with SSM's managed-instance permissions), and a subnet tagged
  ``phoenix:subnet=canary`` in the default VPC for verification's canary instances.

Running it again changes nothing: existing things are found and reported, and a ``latest`` parameter that the
pipeline has already moved to a newer (existing, self-owned) AMI is left where it is.

SSM parameter labels may contain letters, digits, ``.``, ``-`` and ``_`` but must not start with a digit (nor
with ``aws``/``ssm``), so a version ``2026.11.16-1`` is labelled ``v2026.11.16-1``: see :func:`version_label`.

    python -m sandbox.seed [--endpoint-url URL] [--region us-east-1]

The roles and their regions come from the fleet config (``$PHOENIX_FLEET_CONFIG``, default include/fleet.yaml);
``seed(..., roles={"web": ["us-east-1"]})`` overrides them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

SSM_PREFIX = "/phoenix/images"
BASE_NAME_PREFIX = "phoenix-base-debian-12-"
ARTIFACTS_BUCKET = "phoenix-fleet-artifacts"
#: the Terraform roots' S3 backend (include/fleet.yaml: roles.<role>.terraform.backend_config.bucket)
STATE_BUCKET = "phoenix-fleet-tfstate"
CANARY_PROFILE = "phoenix-canary"
CANARY_SUBNET_TAGS = {"phoenix:subnet": "canary"}
MANAGED_BY = "phoenix-fleet"
RELEASE_AGE_DAYS = 9
BASE_AGE_DAYS = 10
# A moto default image to bake the base from: newest Amazon Linux 2023 x86_64 (moto ships no Debian images).
SOURCE_IMAGE_NAME = "al2023-ami-2023.*-kernel-6.1-x86_64"
BUILDER_INSTANCE_TYPE = "t3.micro"
WAIT_TIMEOUT = 600.0  # seconds, for a builder to run and an image to become available
SSM_MANAGED_POLICY = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
SSM_INLINE_POLICY_NAME = "ssm-managed-instance-core"
# The statements of AmazonSSMManagedInstanceCore (used when the endpoint has no AWS managed policies).
SSM_CORE_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": [
                "ssm:DescribeAssociation",
                "ssm:GetDeployablePatchSnapshotForInstance",
                "ssm:GetDocument",
                "ssm:DescribeDocument",
                "ssm:GetManifest",
                "ssm:GetParameter",
                "ssm:GetParameters",
                "ssm:ListAssociations",
                "ssm:ListInstanceAssociations",
                "ssm:PutInventory",
                "ssm:PutComplianceItems",
                "ssm:PutConfigurePackageResult",
                "ssm:UpdateAssociationStatus",
                "ssm:UpdateInstanceAssociationStatus",
                "ssm:UpdateInstanceInformation",
            ],
            "Resource": "*",
        },
        {
            "Effect": "Allow",
            "Action": [
                "ssmmessages:CreateControlChannel",
                "ssmmessages:CreateDataChannel",
                "ssmmessages:OpenControlChannel",
                "ssmmessages:OpenDataChannel",
            ],
            "Resource": "*",
        },
        {
            "Effect": "Allow",
            "Action": [
                "ec2messages:AcknowledgeMessage",
                "ec2messages:DeleteMessage",
                "ec2messages:FailMessage",
                "ec2messages:GetEndpoint",
                "ec2messages:GetMessages",
                "ec2messages:SendReply",
            ],
            "Resource": "*",
        },
    ],
}
EC2_TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}


def latest_parameter(role: str) -> str:
    return f"{SSM_PREFIX}/{role}/latest"


def latest_version_parameter(role: str) -> str:
    return f"{SSM_PREFIX}/{role}/latest-version"


def version_label(version: str) -> str:
    """SSM label for a release version: labels cannot start with a digit, so ``2026.11.16-1`` -> ``v2026.11.16-1``."""
    return f"v{version}"


def release_version(today: dt.date, age_days: int = RELEASE_AGE_DAYS, n: int = 1) -> str:
    return f"{(today - dt.timedelta(days=age_days)):%Y.%m.%d}-{n}"


def role_regions(config_path: str | os.PathLike[str] | None = None) -> dict[str, list[str]]:
    """Every role of the fleet config (``$PHOENIX_FLEET_CONFIG``, default include/fleet.yaml) and its regions."""
    from phoenix_fleet.config import load_fleet_config

    return {name: list(role.regions) for name, role in load_fleet_config(config_path).roles.items()}


def _tags(mapping: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in mapping.items()]


def _tag_map(resource: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


class _Seeder:
    def __init__(self, endpoint_url: str, region: str, today: dt.date) -> None:
        import boto3
        from botocore.config import Config

        session = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=region
        )
        config = Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5, read_timeout=60)

        self._clients: dict[tuple[str, str], Any] = {}

        def client(name: str, region_name: str = region) -> Any:
            key = (name, region_name)
            if key not in self._clients:
                self._clients[key] = session.client(
                    name, endpoint_url=endpoint_url, config=config, region_name=region_name
                )
            return self._clients[key]

        self.client = client
        self.ec2 = client("ec2")
        self.ssm = client("ssm")
        self.s3 = client("s3")
        self.iam = client("iam")
        self.sts = client("sts")
        self.region = region
        self.endpoint_url = endpoint_url
        self.today = today
        self.created: list[str] = []

    # ------------------------------------------------------------------ images

    def _self_images(self, filters: list[dict[str, Any]]) -> list[dict[str, Any]]:
        images = self.ec2.describe_images(Owners=["self"], Filters=filters)["Images"]
        return sorted(images, key=lambda i: (i.get("CreationDate", ""), i["Name"]))

    def _bake(self, source_ami: str, name: str, description: str, tags: dict[str, str]) -> str:
        """Launch a builder from ``source_ami``, image it as ``name`` with ``tags``, terminate the builder."""
        builder = self.ec2.run_instances(
            ImageId=source_ami,
            MinCount=1,
            MaxCount=1,
            InstanceType=BUILDER_INSTANCE_TYPE,
            MetadataOptions={"HttpTokens": "required", "HttpEndpoint": "enabled"},
            TagSpecifications=[
                {
                    "ResourceType": "instance",
                    "Tags": _tags({"Name": f"seed-builder-{name}", "phoenix:purpose": "seed-builder"}),
                }
            ],
        )["Instances"][0]["InstanceId"]
        try:
            self._wait_for(
                lambda: self._instance_state(builder), ("running",), ("terminated", "shutting-down")
            )
            image_id = self.ec2.create_image(
                InstanceId=builder,
                Name=name,
                Description=description,
                TagSpecifications=[{"ResourceType": "image", "Tags": _tags(tags)}],
            )["ImageId"]
            # create_image on moto ignores image TagSpecifications in some versions: tag explicitly (idempotent).
            self.ec2.create_tags(Resources=[image_id], Tags=_tags(tags))
            self._wait_for(
                lambda: self._image_state(image_id), ("available",), ("failed", "invalid", "error")
            )
        finally:
            self.ec2.terminate_instances(InstanceIds=[builder])
        return image_id

    def _instance_state(self, instance_id: str) -> str:
        reservations = self.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        return reservations[0]["Instances"][0]["State"]["Name"]

    def _image_state(self, image_id: str) -> str:
        images = self.ec2.describe_images(ImageIds=[image_id])["Images"]
        return images[0]["State"] if images else "missing"

    @staticmethod
    def _wait_for(
        probe: Callable[[], str],
        done: tuple[str, ...],
        failed: tuple[str, ...],
        timeout: float = WAIT_TIMEOUT,
    ) -> str:
        """Poll ``probe`` until it returns a ``done`` state (briskly: the sandbox may count describes, not time)."""
        deadline = time.monotonic() + timeout
        delay = 0.05
        while True:
            state = probe()
            if state in done:
                return state
            if state in failed or time.monotonic() > deadline:
                raise RuntimeError(f"seed: waited for {done}, got {state!r}")
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _source_image(self) -> str:
        images = self.ec2.describe_images(
            Owners=["amazon"],
            Filters=[
                {"Name": "name", "Values": [SOURCE_IMAGE_NAME]},
                {"Name": "architecture", "Values": ["x86_64"]},
                {"Name": "state", "Values": ["available"]},
            ],
        )["Images"]
        if not images:  # any x86_64 image moto knows
            images = self.ec2.describe_images(
                Owners=["amazon"], Filters=[{"Name": "architecture", "Values": ["x86_64"]}]
            )["Images"]
        if not images:
            raise RuntimeError(f"no source image to bake the base AMI from at {self.endpoint_url}")
        return max(images, key=lambda i: i["Name"])["ImageId"]

    def base_image(self) -> dict[str, str]:
        found = self._self_images([{"Name": "name", "Values": [f"{BASE_NAME_PREFIX}*"]}])
        found = [i for i in found if i.get("State") in ("available", "pending")]
        if found:
            image = found[-1]
            return {"id": image["ImageId"], "name": image["Name"], "created": "false"}
        name = f"{BASE_NAME_PREFIX}{(self.today - dt.timedelta(days=BASE_AGE_DAYS)):%Y%m%d}"
        source = self._source_image()
        image_id = self._bake(
            source,
            name,
            "phoenix-fleet base image (sandbox seed)",
            {
                "Name": name,
                "phoenix:image-kind": "base",
                "phoenix:source-ami": source,
                "phoenix:managed-by": MANAGED_BY,
            },
        )
        self.created.append(f"ami:{image_id} ({name})")
        return {"id": image_id, "name": name, "created": "true"}

    def _image(self, image_id: str, ec2: Any = None) -> dict[str, Any] | None:
        ec2 = ec2 or self.ec2
        try:
            images = ec2.describe_images(ImageIds=[image_id], Owners=["self"])["Images"]
        except ec2.exceptions.ClientError:
            return None
        return images[0] if images else None

    def _get_parameter(self, name: str, ssm: Any = None) -> dict[str, Any] | None:
        ssm = ssm or self.ssm
        try:
            return ssm.get_parameter(Name=name)["Parameter"]
        except ssm.exceptions.ParameterNotFound:
            return None

    def release(self, role: str, base: dict[str, str], regions: Sequence[str]) -> dict[str, Any]:
        """The role's current release, published in each of ``regions`` (a copy where it is not the seed's region).

        Returns the release in the seed's region (``ami_id``, ``version``, ...) and ``amis``: {region: AMI id}.
        """
        image_id, image_name, version = self._release_image(role, base)
        published = {region: self._publish(role, image_id, version, region) for region in regions}
        here = published.get(self.region) or {}
        return {
            "ami_id": image_id,
            "ami_name": image_name,
            "version": version,
            "label": version_label(version) if version else None,
            "parameter": latest_parameter(role),
            "parameter_version": here.get("parameter_version"),
            "version_parameter": latest_version_parameter(role),
            "regions": list(regions),
            "amis": {region: p["ami_id"] for region, p in published.items()},
        }

    def _release_image(self, role: str, base: dict[str, str]) -> tuple[str, str, str]:
        """(AMI id, name, version) of the role's current release in the seed's region: what its ``latest`` pointer
        names (already seeded, or moved on by the pipeline), else the seed's release (found by tags, or baked)."""
        current = self._get_parameter(latest_parameter(role))
        image = self._image(current["Value"]) if current else None
        if image is not None:
            return image["ImageId"], image["Name"], _tag_map(image).get("phoenix:version", "")
        version = release_version(self.today)
        tags = {
            "Name": f"phoenix-{role}-{version}",
            "phoenix:role": role,
            "phoenix:version": version,
            "phoenix:source-ami": base["id"],
            "phoenix:verified": "true",
            "phoenix:managed-by": MANAGED_BY,
            "phoenix:build-run": "sandbox-seed",
        }
        existing = self._self_images(
            [
                {"Name": "tag:phoenix:role", "Values": [role]},
                {"Name": "tag:phoenix:version", "Values": [version]},
                {"Name": "tag:phoenix:managed-by", "Values": [MANAGED_BY]},
            ]
        )
        if existing:
            return existing[-1]["ImageId"], existing[-1]["Name"], version
        image_name = f"phoenix-{role}-{version}"
        image_id = self._bake(base["id"], image_name, f"phoenix-fleet {role} {version} (sandbox seed)", tags)
        self.created.append(f"ami:{image_id} ({image_name})")
        return image_id, image_name, version

    def _publish(self, role: str, image_id: str, version: str, region: str) -> dict[str, Any]:
        """Point ``<prefix>/<role>/latest`` (and ``latest-version``) in ``region`` at the release, unless that
        pointer already names an AMI of ours there (seeded before, or moved on by the pipeline)."""
        ec2, ssm = self.client("ec2", region), self.client("ssm", region)
        param_name, version_name = latest_parameter(role), latest_version_parameter(role)
        current = self._get_parameter(param_name, ssm)
        found = self._image(current["Value"], ec2) if current else None
        if found is not None:
            have = _tag_map(found).get("phoenix:version", "")
            if self._get_parameter(version_name, ssm) is None and have:
                self._put_version(version_name, have, ssm, region)
            return {"ami_id": found["ImageId"], "parameter_version": current["Version"] if current else None}
        ami = image_id if region == self.region else self._copy(image_id, region)
        put = ssm.put_parameter(
            Name=param_name,
            Description=f"AMI id of the latest published {role} image (moved by publish)",
            Value=ami,
            Type="String",
            DataType="aws:ec2:image",
            Overwrite=current is not None,
        )
        self.created.append(f"ssm:{param_name}={ami}" + ("" if region == self.region else f" ({region})"))
        if version:
            ssm.label_parameter_version(Name=param_name, ParameterVersion=put["Version"], Labels=[version_label(version)])
            self._put_version(version_name, version, ssm, region)
        return {"ami_id": ami, "parameter_version": put["Version"]}

    def _copy(self, image_id: str, region: str) -> str:
        """``image_id`` (in the seed's region) copied to ``region`` and tagged as publish tags its copies: the
        existing copy when there is one."""
        ec2 = self.client("ec2", region)
        copies = ec2.describe_images(
            Owners=["self"], Filters=[{"Name": "tag:phoenix:copy-of", "Values": [image_id]}]
        )["Images"]
        live = [i for i in copies if i.get("State") in ("available", "pending")]
        if live:
            copy_id = live[0]["ImageId"]
        else:
            source = self._image(image_id)
            if source is None:
                raise RuntimeError(f"seed: {image_id} is not an AMI of this account in {self.region}")
            copy_id = ec2.copy_image(
                SourceImageId=image_id,
                SourceRegion=self.region,
                Name=source["Name"],
                Description=f"{source.get('Description') or ''} [copy of {image_id} from {self.region}]".strip(),
            )["ImageId"]
            tags = {k: v for k, v in _tag_map(source).items() if not k.startswith("aws:")}
            tags.update({"phoenix:copy-of": image_id, "phoenix:source-region": self.region})
            ec2.create_tags(Resources=[copy_id], Tags=_tags(tags))  # copy_image drops the source's tags
            self.created.append(f"ami:{copy_id} ({source['Name']}, {region})")

        def state() -> str:
            images = ec2.describe_images(ImageIds=[copy_id])["Images"]
            return images[0]["State"] if images else "missing"

        self._wait_for(state, ("available",), ("failed", "invalid", "error"))
        return copy_id

    def _put_version(self, name: str, version: str, ssm: Any = None, region: str | None = None) -> None:
        (ssm or self.ssm).put_parameter(
            Name=name,
            Description="Version of the latest published image (moved by publish with .../latest)",
            Value=version,
            Type="String",
            Overwrite=True,
        )
        self.created.append(f"ssm:{name}={version}" + ("" if region in (None, self.region) else f" ({region})"))

    # ------------------------------------------------------------------ canary subnet

    def canary_subnet(self) -> dict[str, str]:
        """A subnet tagged ``phoenix:subnet=canary`` (the fleet config's canary_subnet_tags) in the default VPC.

        Verification launches its canary there; it must exist before any Terraform has run.
        """
        found = self.ec2.describe_subnets(
            Filters=[{"Name": f"tag:{k}", "Values": [v]} for k, v in CANARY_SUBNET_TAGS.items()]
        )["Subnets"]
        if found:
            subnet = sorted(found, key=lambda s: s["SubnetId"])[0]
            return {"id": subnet["SubnetId"], "vpc_id": subnet["VpcId"], "cidr": subnet["CidrBlock"]}
        vpcs = self.ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
        if not vpcs:
            raise RuntimeError(f"seed: no default VPC at {self.endpoint_url} to put the canary subnet in")
        vpc = vpcs[0]
        taken = [
            ipaddress.ip_network(s["CidrBlock"])
            for s in self.ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])[
                "Subnets"
            ]
        ]
        free = next(
            net
            for net in reversed(list(ipaddress.ip_network(vpc["CidrBlock"]).subnets(new_prefix=24)))
            if not any(net.overlaps(t) for t in taken)
        )
        subnet = self.ec2.create_subnet(
            VpcId=vpc["VpcId"],
            CidrBlock=str(free),
            AvailabilityZone=f"{self.region}a",
            TagSpecifications=[
                {
                    "ResourceType": "subnet",
                    "Tags": _tags(
                        {"Name": "phoenix-canary", **CANARY_SUBNET_TAGS, "phoenix:managed-by": MANAGED_BY}
                    ),
                }
            ],
        )["Subnet"]
        self.created.append(f"subnet:{subnet['SubnetId']} (canary, {free})")
        return {"id": subnet["SubnetId"], "vpc_id": vpc["VpcId"], "cidr": str(free)}

    # ------------------------------------------------------------------ bucket, instance profile

    def bucket(self) -> str:
        return self._bucket(ARTIFACTS_BUCKET)

    def state_bucket(self) -> str:
        """The Terraform state bucket (the roots' S3 backend; versioned, so an earlier state can be restored)."""
        return self._bucket(STATE_BUCKET, encrypted=True)

    def _bucket(self, name: str, *, encrypted: bool = False) -> str:
        try:
            self.s3.head_bucket(Bucket=name)
            return name
        except self.s3.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
                raise
        kwargs: dict[str, Any] = {"Bucket": name}
        if self.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        self.s3.create_bucket(**kwargs)
        self.s3.put_public_access_block(
            Bucket=name,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        )
        self.s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        if encrypted:
            self.s3.put_bucket_encryption(
                Bucket=name,
                ServerSideEncryptionConfiguration={
                    "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
                },
            )
        self.created.append(f"s3:{name}")
        return name

    def _ensure_ssm_policy(self) -> None:
        """The canary role needs SSM's core permissions: the AWS managed policy where the endpoint has it.

        moto only knows AWS managed policies when started with MOTO_IAM_LOAD_MANAGED_POLICIES=true; otherwise the
        same statements go in as an inline policy.
        """
        iam = self.iam
        attached = iam.list_attached_role_policies(RoleName=CANARY_PROFILE)["AttachedPolicies"]
        inline = iam.list_role_policies(RoleName=CANARY_PROFILE)["PolicyNames"]
        if any(p["PolicyArn"] == SSM_MANAGED_POLICY for p in attached) or SSM_INLINE_POLICY_NAME in inline:
            return
        try:
            iam.attach_role_policy(RoleName=CANARY_PROFILE, PolicyArn=SSM_MANAGED_POLICY)
            self.created.append(f"iam-role-policy:{SSM_MANAGED_POLICY}")
        except iam.exceptions.NoSuchEntityException:
            iam.put_role_policy(
                RoleName=CANARY_PROFILE,
                PolicyName=SSM_INLINE_POLICY_NAME,
                PolicyDocument=json.dumps(SSM_CORE_POLICY),
            )
            self.created.append(f"iam-role-policy:{SSM_INLINE_POLICY_NAME}")

    def instance_profile(self) -> dict[str, str]:
        iam = self.iam
        try:
            role_arn = iam.get_role(RoleName=CANARY_PROFILE)["Role"]["Arn"]
        except iam.exceptions.NoSuchEntityException:
            role_arn = iam.create_role(
                RoleName=CANARY_PROFILE,
                AssumeRolePolicyDocument=json.dumps(EC2_TRUST_POLICY),
                Description="phoenix-fleet canary instances (image verification through SSM)",
                Tags=_tags({"phoenix:managed-by": MANAGED_BY}),
            )["Role"]["Arn"]
            self.created.append(f"iam-role:{CANARY_PROFILE}")
        self._ensure_ssm_policy()
        try:
            profile = iam.get_instance_profile(InstanceProfileName=CANARY_PROFILE)["InstanceProfile"]
        except iam.exceptions.NoSuchEntityException:
            profile = iam.create_instance_profile(InstanceProfileName=CANARY_PROFILE)["InstanceProfile"]
            self.created.append(f"iam-instance-profile:{CANARY_PROFILE}")
        if not any(r["RoleName"] == CANARY_PROFILE for r in profile.get("Roles", [])):
            iam.add_role_to_instance_profile(InstanceProfileName=CANARY_PROFILE, RoleName=CANARY_PROFILE)
            self.created.append(f"iam-instance-profile-role:{CANARY_PROFILE}")
        return {"name": CANARY_PROFILE, "arn": profile["Arn"], "role_arn": role_arn}


def seed(
    endpoint_url: str,
    region: str = "us-east-1",
    *,
    roles: Mapping[str, Sequence[str]] | None = None,
    today: dt.date | None = None,
) -> dict[str, Any]:
    """Seed the sandbox at ``endpoint_url`` (idempotent) and return what exists afterwards.

    ``region`` is where the base and the release AMIs are baked; ``roles`` maps each role to the regions it is
    published in (default: :func:`role_regions`, the fleet config's).

    Returns ``{"account_id", "region", "endpoint_url", "base_ami": {"id", "name"}, "roles": {role: {"ami_id",
    "ami_name", "version", "label", "parameter", "parameter_version", "version_parameter", "regions", "amis":
    {region: AMI id}}}, "bucket", "state_bucket",
    "instance_profile": {"name", "arn", "role_arn"}, "canary_subnet": {"id", "vpc_id", "cidr"}, "created": [...],
    "changed": bool}``; ``created`` lists
    what this call made (empty on a second run).
    """
    seeder = _Seeder(endpoint_url, region, today or dt.datetime.now(dt.UTC).date())
    account_id = seeder.sts.get_caller_identity()["Account"]
    base = seeder.base_image()
    wanted = role_regions() if roles is None else roles
    releases = {role: seeder.release(role, base, list(regions)) for role, regions in wanted.items()}
    bucket = seeder.bucket()
    state_bucket = seeder.state_bucket()
    profile = seeder.instance_profile()
    canary = seeder.canary_subnet()
    return {
        "account_id": account_id,
        "region": region,
        "endpoint_url": endpoint_url,
        "base_ami": {"id": base["id"], "name": base["name"]},
        "roles": releases,
        "bucket": bucket,
        "state_bucket": state_bucket,
        "instance_profile": profile,
        "canary_subnet": canary,
        "created": list(seeder.created),
        "changed": bool(seeder.created),
    }


def default_endpoint(environ: dict[str, str] | None = None) -> str:
    """``$AWS_ENDPOINT_URL``, else the sandbox on ``127.0.0.1:$PHOENIX_SANDBOX_PORT`` (default 5055)."""
    env = os.environ if environ is None else environ
    return env.get("AWS_ENDPOINT_URL") or f"http://127.0.0.1:{env.get('PHOENIX_SANDBOX_PORT', '5055')}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.seed", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--endpoint-url", default=default_endpoint(), help="sandbox endpoint (default: %(default)s)"
    )
    parser.add_argument("--region", default="us-east-1", help="region (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        result = seed(args.endpoint_url, args.region)
    except Exception as exc:  # a CLI: say what failed and where, without a traceback wall
        print(f"seed: failed against {args.endpoint_url}: {type(exc).__name__}: {exc}", file=sys.stderr)
        print("seed: is the sandbox running? Start it with `make sandbox-start`.", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
