"""ImageHook: a thin AWS client for AMI, snapshot, SSM-pointer, S3-artifact and launch-template calls.

An ``AwsBaseHook`` (``client_type="ec2"``) that also hands out clients of other services and regions from the
same connection (``client("ssm", "eu-west-1")``), so one Airflow connection (and its ``endpoint_url``, for the
sandbox) serves publish and apply in every region. Calls only: the rules (what may be published, version
conflicts, whether a group is on the new image) live in :mod:`phoenix_fleet.release`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

from phoenix_fleet.api_limiter import LimitedAsyncConnMixin
from phoenix_fleet.aws_conn import StrictAwsConnMixin
from phoenix_fleet.release.launch_templates import AsgTemplateImage, resolve_version, template_refs
from phoenix_fleet.release.release_log import ReleaseRecord, record_key, role_prefix, versions_in_keys


class ImageNotFoundError(LookupError):
    pass


_shared_loader: Any = None


def _share_model_loader(session: Any) -> Any:
    """Let every session of this process share one botocore loader (service models are big JSON: ~0.3 s each).

    The loader only caches read-only API models; credentials and config stay per session.
    """
    global _shared_loader
    core = getattr(session, "_session", None)
    if core is None:
        return session
    try:
        if _shared_loader is None:
            _shared_loader = core.get_component("data_loader")
        else:
            core.register_component("data_loader", _shared_loader)
    except Exception:  # pragma: no cover - a botocore without components: just no sharing
        pass
    return session


def _tags(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": str(v)} for k, v in tags.items()]


class ImageHook(LimitedAsyncConnMixin, StrictAwsConnMixin, AwsBaseHook):  # an unknown aws_conn_id fails (aws_conn.py)
    """AMIs, their snapshots, the SSM release pointers, artifacts in S3 and launch templates."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["client_type"] = "ec2"
        super().__init__(*args, **kwargs)
        self._clients: dict[tuple[str, str | None], Any] = {}
        self._sessions: dict[str | None, Any] = {}

    # ------------------------------------------------------------------ clients

    def client(self, service: str, region: str | None = None) -> Any:
        """A boto3 client of ``service`` in ``region`` (default: the hook's region), same connection, cached."""
        region = region or self.region_name
        key = (service, region)
        if key not in self._clients:
            # one session per region: botocore caches the (large) service models per session
            if region not in self._sessions:
                self._sessions[region] = _share_model_loader(self.get_session(region_name=region))
            self._clients[key] = self._sessions[region].client(
                service_name=service,
                endpoint_url=self.conn_config.get_service_endpoint_url(service_name=service),
                config=self._get_config(),
                verify=self.verify,
            )
        return self._clients[key]

    def ec2(self, region: str | None = None) -> Any:
        return self.client("ec2", region)

    def get_account_id(self) -> str:
        return self.client("sts").get_caller_identity()["Account"]

    # ------------------------------------------------------------------ images

    def describe_image(self, image_id: str, region: str | None = None) -> dict[str, Any]:
        ec2 = self.ec2(region)
        try:
            images = ec2.describe_images(ImageIds=[image_id])["Images"]
        except ec2.exceptions.ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if code.startswith("InvalidAMIID"):
                raise ImageNotFoundError(
                    f"AMI {image_id} does not exist in {region or self.region_name} ({code})"
                ) from None
            raise
        if not images:
            raise ImageNotFoundError(f"AMI {image_id} does not exist in {region or self.region_name}")
        return images[0]

    def find_images(
        self, filters: Mapping[str, str | Iterable[str]], region: str | None = None, owners: Iterable[str] = ("self",)
    ) -> list[dict[str, Any]]:
        """Images matching every filter (``{"tag:phoenix:role": "web", "name": "phoenix-*"}``), owner-filtered."""
        flt = [
            {"Name": k, "Values": [v] if isinstance(v, str) else list(v)} for k, v in filters.items()
        ]
        pages = self.ec2(region).get_paginator("describe_images").paginate(Owners=list(owners), Filters=flt)
        return [image for page in pages for image in page["Images"]]

    @staticmethod
    def snapshot_ids(image: Mapping[str, Any]) -> list[str]:
        return [
            bdm["Ebs"]["SnapshotId"]
            for bdm in image.get("BlockDeviceMappings") or []
            if bdm.get("Ebs", {}).get("SnapshotId")
        ]

    def tag_image_and_snapshots(
        self, image: Mapping[str, Any], tags: Mapping[str, str], region: str | None = None
    ) -> list[str]:
        """Tag the AMI and every EBS snapshot behind it; returns the resources tagged."""
        resources = [image["ImageId"], *self.snapshot_ids(image)]
        if tags:
            self.ec2(region).create_tags(Resources=resources, Tags=_tags(tags))
        return resources

    def copy_image(
        self,
        source_image_id: str,
        source_region: str,
        dest_region: str,
        name: str,
        description: str,
        client_token: str | None = None,
        encrypted: bool | None = None,
        kms_key_id: str | None = None,
    ) -> str:
        kwargs: dict[str, Any] = {
            "SourceImageId": source_image_id,
            "SourceRegion": source_region,
            "Name": name,
            "Description": description[:255],
        }
        if client_token:
            kwargs["ClientToken"] = client_token[:64]
        if encrypted is not None:
            kwargs["Encrypted"] = encrypted
        if kms_key_id:
            kwargs["KmsKeyId"] = kms_key_id
        return self.ec2(dest_region).copy_image(**kwargs)["ImageId"]

    def deregister_image(self, image_id: str, region: str | None = None) -> None:
        self.ec2(region).deregister_image(ImageId=image_id)

    # ------------------------------------------------------------------ sharing

    def share_image(self, image: Mapping[str, Any], accounts: Iterable[str], region: str | None = None) -> None:
        """Launch permission on the AMI and createVolumePermission on its snapshots for ``accounts`` (idempotent)."""
        accounts = sorted(set(accounts))
        if not accounts:
            return
        ec2 = self.ec2(region)
        ec2.modify_image_attribute(
            ImageId=image["ImageId"], LaunchPermission={"Add": [{"UserId": a} for a in accounts]}
        )
        for snapshot in self.snapshot_ids(image):
            ec2.modify_snapshot_attribute(
                SnapshotId=snapshot,
                Attribute="createVolumePermission",
                OperationType="add",
                UserIds=accounts,
            )

    def image_sharing(self, image: Mapping[str, Any], region: str | None = None) -> dict[str, Any]:
        """``{"launch_permission": [accounts], "snapshots": {snapshot_id: [accounts]}}`` as AWS reports them."""
        ec2 = self.ec2(region)
        launch = ec2.describe_image_attribute(ImageId=image["ImageId"], Attribute="launchPermission")
        snaps = {
            s: sorted(
                p["UserId"]
                for p in ec2.describe_snapshot_attribute(SnapshotId=s, Attribute="createVolumePermission")[
                    "CreateVolumePermissions"
                ]
                if "UserId" in p
            )
            for s in self.snapshot_ids(image)
        }
        return {
            "launch_permission": sorted(p["UserId"] for p in launch.get("LaunchPermissions", []) if "UserId" in p),
            "snapshots": snaps,
        }

    # ------------------------------------------------------------------ SSM parameters (the release log)

    def parameter_history(self, name: str, region: str | None = None) -> list[dict[str, Any]]:
        """Every version of an SSM parameter (oldest first), ``[]`` when it does not exist."""
        ssm = self.client("ssm", region)
        try:
            pages = ssm.get_paginator("get_parameter_history").paginate(Name=name)
            return sorted(
                (h for page in pages for h in page["Parameters"]), key=lambda h: int(h["Version"])
            )
        except ssm.exceptions.ParameterNotFound:
            return []

    def get_parameter(self, name: str, region: str | None = None) -> dict[str, Any] | None:
        ssm = self.client("ssm", region)
        try:
            return ssm.get_parameter(Name=name)["Parameter"]
        except ssm.exceptions.ParameterNotFound:
            return None

    def put_parameter(
        self,
        name: str,
        value: str,
        description: str,
        region: str | None = None,
        data_type: str = "text",
    ) -> int:
        """Write a new version of a String parameter; returns its version number."""
        return int(
            self.client("ssm", region).put_parameter(
                Name=name, Value=value, Description=description, Type="String", DataType=data_type, Overwrite=True
            )["Version"]
        )

    def label_parameter_version(self, name: str, version: int, labels: list[str], region: str | None = None) -> None:
        result = self.client("ssm", region).label_parameter_version(
            Name=name, ParameterVersion=int(version), Labels=labels
        )
        invalid = result.get("InvalidLabels") or []
        if invalid:
            raise ValueError(
                f"SSM refused the label(s) {invalid} on {name} version {version}. Fix: labels may hold letters, "
                "digits, '.', '-' and '_', must not start with a digit, 'aws' or 'ssm', at most 100 characters"
            )

    def unlabel_parameter_version(
        self, name: str, version: int, labels: list[str], region: str | None = None
    ) -> None:
        self.client("ssm", region).unlabel_parameter_version(Name=name, ParameterVersion=int(version), Labels=labels)

    def delete_parameter(self, name: str, region: str | None = None) -> None:
        ssm = self.client("ssm", region)
        try:
            ssm.delete_parameter(Name=name)
        except ssm.exceptions.ParameterNotFound:
            pass

    # ------------------------------------------------------------------ S3 artifacts

    def read_s3_text(self, bucket: str, key: str, region: str | None = None) -> str | None:
        """The object's text, or None when the object (or the bucket) does not exist."""
        s3 = self.client("s3", region)
        try:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"]
        except s3.exceptions.NoSuchKey:
            return None
        except s3.exceptions.ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NoSuchBucket", "NotFound"):
                return None
            raise
        return body.read().decode("utf-8", errors="replace")

    def write_s3_text(
        self, bucket: str, key: str, text: str, content_type: str, region: str | None = None
    ) -> str:
        self.client("s3", region).put_object(
            Bucket=bucket, Key=key, Body=text.encode("utf-8"), ContentType=content_type
        )
        return f"s3://{bucket}/{key}"

    def create_s3_text(
        self, bucket: str, key: str, text: str, content_type: str, region: str | None = None
    ) -> bool:
        """Write the object only if it does not exist (``If-None-Match: *``, atomic in S3): True if this call
        created it, False if it was there already (nothing written)."""
        s3 = self.client("s3", region)
        try:
            s3.put_object(
                Bucket=bucket, Key=key, Body=text.encode("utf-8"), ContentType=content_type, IfNoneMatch="*"
            )
        except s3.exceptions.ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                return False
            raise
        return True

    def list_s3_keys(self, bucket: str, prefix: str, region: str | None = None) -> list[str]:
        """Every key under ``prefix`` (all pages); ``[]`` when the bucket does not exist."""
        s3 = self.client("s3", region)
        try:
            pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            return [o["Key"] for page in pages for o in page.get("Contents") or []]
        except s3.exceptions.NoSuchBucket:
            return []

    # ------------------------------------------------------------------ the release log (records in S3)

    def release_record(self, bucket: str, role: str, version: str) -> ReleaseRecord | None:
        """The release log's record of ``version`` (s3://<bucket>/images/<role>/<version>/release.json), or None."""
        key = record_key(role, version)
        text = self.read_s3_text(bucket, key)
        return None if text is None else ReleaseRecord.from_json(text, f"s3://{bucket}/{key}")

    def put_release_record(self, bucket: str, record: ReleaseRecord) -> str:
        return self.write_s3_text(
            bucket, record_key(record.role, record.version), record.to_json(), "application/json"
        )

    def publication_evidence(
        self, bucket: str, role: str, version: str, version_parameter: str, home_region: str
    ) -> str | None:
        """Why ``version`` of ``role`` counts as published, or None: it does not (nothing was, or a publish of it
        was rolled back).

        Published: the release log's record says ``published``; or, in a region of the record (the home region
        without one), ``version_parameter`` (``latest-version``) holds it now or in a version labelled
        ``v<version>`` (a release from before the log, or a publish stopped half-way, which only a retry settles).
        A rolled-back try leaves the value in the parameter's history without the label: no evidence."""
        record = self.release_record(bucket, role, version)
        where = f"s3://{bucket}/{record_key(role, version)}"
        if record is not None and record.published:
            return f"the release log {where} says published"
        label = f"v{version}"
        regions = list(record.amis) if record is not None and record.amis else [home_region]
        for region in regions:
            history = self.parameter_history(version_parameter, region)
            if history and str(history[-1].get("Value")) == str(version):
                return f"{version_parameter} in {region} holds {version}"
            labelled = [h for h in history if label in (h.get("Labels") or [])]
            if labelled:
                return f"{version_parameter} in {region} version {labelled[-1]['Version']} is labelled {label}"
        return None

    def release_log_versions(self, bucket: str, role: str) -> list[str]:
        """Every version with a record in the release log (any state), unsorted."""
        return versions_in_keys(self.list_s3_keys(bucket, role_prefix(role)), role)

    # ------------------------------------------------------------------ AutoScaling groups, launch templates

    def find_asgs(
        self, tags: Mapping[str, str] | None = None, names: Iterable[str] = (), region: str | None = None
    ) -> list[dict[str, Any]]:
        """ASGs carrying every tag in ``tags`` plus the ones named in ``names``, sorted by name."""
        asg = self.client("autoscaling", region)
        found: dict[str, dict[str, Any]] = {}
        paginator = asg.get_paginator("describe_auto_scaling_groups")
        if tags:
            flt = [{"Name": f"tag:{k}", "Values": [v]} for k, v in tags.items()]
            for page in paginator.paginate(Filters=flt):
                for g in page["AutoScalingGroups"]:
                    g_tags = {t["Key"]: t["Value"] for t in g.get("Tags", [])}
                    if all(g_tags.get(k) == v for k, v in tags.items()):
                        found[g["AutoScalingGroupName"]] = g
        names = [n for n in names if n not in found]
        if names:
            for page in paginator.paginate(AutoScalingGroupNames=list(names)):
                for g in page["AutoScalingGroups"]:
                    found[g["AutoScalingGroupName"]] = g
        return [found[n] for n in sorted(found)]

    def describe_launch_template(
        self, template_id: str | None = None, template_name: str | None = None, region: str | None = None
    ) -> dict[str, Any]:
        kwargs = {"LaunchTemplateIds": [template_id]} if template_id else {"LaunchTemplateNames": [template_name]}
        return self.ec2(region).describe_launch_templates(**kwargs)["LaunchTemplates"][0]

    def launch_template_version(
        self, template_id: str, version: int | str, region: str | None = None
    ) -> dict[str, Any]:
        return self.ec2(region).describe_launch_template_versions(
            LaunchTemplateId=template_id, Versions=[str(version)]
        )["LaunchTemplateVersions"][0]

    def create_launch_template_version(
        self,
        template_id: str,
        source_version: int,
        image_id: str,
        description: str,
        region: str | None = None,
    ) -> int:
        """A new version from ``source_version`` with only the ImageId changed; returns its number."""
        return int(
            self.ec2(region).create_launch_template_version(
                LaunchTemplateId=template_id,
                SourceVersion=str(source_version),
                VersionDescription=description[:255],
                LaunchTemplateData={"ImageId": image_id},
            )["LaunchTemplateVersion"]["VersionNumber"]
        )

    def set_default_launch_template_version(self, template_id: str, version: int, region: str | None = None) -> None:
        self.ec2(region).modify_launch_template(LaunchTemplateId=template_id, DefaultVersion=str(version))

    def set_asg_launch_template_version(
        self, asg_name: str, template_id: str, version: str, region: str | None = None
    ) -> None:
        self.client("autoscaling", region).update_auto_scaling_group(
            AutoScalingGroupName=asg_name, LaunchTemplate={"LaunchTemplateId": template_id, "Version": version}
        )

    def resolve_asg_images(
        self, asgs: Iterable[Mapping[str, Any]], region: str | None = None
    ) -> tuple[list[AsgTemplateImage], list[str]]:
        """For every launch-template reference of every ASG: the version it resolves to and that version's ImageId.

        ``$Default``/``$Latest`` are resolved from the template's current default/latest numbers (not by asking
        EC2 for ``$Default``), so the answer is exactly what the ASG launches next. Returns (resolved, problems).
        """
        resolved: list[AsgTemplateImage] = []
        problems: list[str] = []
        templates: dict[str, dict[str, Any]] = {}
        versions: dict[tuple[str, int], dict[str, Any]] = {}
        for asg in asgs:
            refs, ref_problems = template_refs(asg)
            problems += ref_problems
            for ref in refs:
                key = ref.template_id or f"name:{ref.template_name}"
                if key not in templates:
                    templates[key] = self.describe_launch_template(ref.template_id, ref.template_name, region)
                lt = templates[key]
                number = resolve_version(ref.spec_version, lt["DefaultVersionNumber"], lt["LatestVersionNumber"])
                vkey = (lt["LaunchTemplateId"], number)
                if vkey not in versions:
                    versions[vkey] = self.launch_template_version(lt["LaunchTemplateId"], number, region)
                data = versions[vkey].get("LaunchTemplateData") or {}
                resolved.append(
                    AsgTemplateImage(
                        ref.asg_name,
                        lt["LaunchTemplateId"],
                        lt.get("LaunchTemplateName"),
                        ref.spec_version,
                        number,
                        data.get("ImageId"),
                        ref.where,
                    )
                )
        return resolved, problems
