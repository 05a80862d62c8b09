"""CreateLaunchTemplateVersion as AWS does it, in the sandbox: UserData stays launchable (moto stores it
undecoded), SourceVersion and ClientToken are honoured (moto ignores both)."""

import base64
from typing import Any


def test_asg_launches_from_a_new_template_version_with_user_data(sandbox_clean):
    ec2 = sandbox_clean.client("ec2")
    asg = sandbox_clean.client("autoscaling")
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    ud = base64.b64encode(b"#!/bin/bash\necho hi\n").decode()
    data = {"ImageId": ami, "InstanceType": "t3.micro", "UserData": ud}
    lt = ec2.create_launch_template(LaunchTemplateName="ud", LaunchTemplateData=data)["LaunchTemplate"]
    ec2.create_launch_template_version(LaunchTemplateId=lt["LaunchTemplateId"], LaunchTemplateData=data)
    asg.create_auto_scaling_group(
        AutoScalingGroupName="ud", MinSize=1, MaxSize=2, DesiredCapacity=1, AvailabilityZones=["us-east-1a"],
        LaunchTemplate={"LaunchTemplateId": lt["LaunchTemplateId"], "Version": "2"},
    )
    asg.set_desired_capacity(AutoScalingGroupName="ud", DesiredCapacity=2)
    group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["ud"])["AutoScalingGroups"][0]
    assert len(group["Instances"]) == 2


def test_launch_template_versions_honour_source_version_and_client_token(sandbox_clean: Any) -> None:
    """What AWS does and moto 5.2.5 does not: a version made from SourceVersion starts from the source's data;
    a repeated ClientToken (an SDK retry) answers with the version already made instead of making another."""
    ec2 = sandbox_clean.client("ec2")
    lt = ec2.create_launch_template(
        LaunchTemplateName="tok", LaunchTemplateData={"ImageId": "ami-0b5a5e0000000b45e", "InstanceType": "t3.small"}
    )["LaunchTemplate"]["LaunchTemplateId"]
    made = [
        ec2.create_launch_template_version(LaunchTemplateId=lt, SourceVersion="1", ClientToken="retry-1",
                                           LaunchTemplateData={"ImageId": "ami-0c0ffee000000c0fe"})
        for _ in range(2)
    ]
    assert [m["LaunchTemplateVersion"]["VersionNumber"] for m in made] == [2, 2]
    data = made[0]["LaunchTemplateVersion"]["LaunchTemplateData"]
    assert data["ImageId"] == "ami-0c0ffee000000c0fe" and data["InstanceType"] == "t3.small"
    versions = ec2.describe_launch_template_versions(LaunchTemplateId=lt)["LaunchTemplateVersions"]
    assert sorted(v["VersionNumber"] for v in versions) == [1, 2]
    other = ec2.create_launch_template_version(LaunchTemplateId=lt, ClientToken="retry-2",
                                               LaunchTemplateData={"ImageId": "ami-0c0ffee000000c0fe"})
    assert other["LaunchTemplateVersion"]["VersionNumber"] == 3
    assert "InstanceType" not in other["LaunchTemplateVersion"]["LaunchTemplateData"]  # no source: only what is given
