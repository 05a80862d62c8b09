"""moto stores CreateLaunchTemplateVersion's UserData undecoded; the sandbox fixes it so ASG launches work."""

import base64


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
