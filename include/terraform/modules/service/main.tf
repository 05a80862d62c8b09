# One service group: launch template (AMI from the SSM parameter publish moves) -> AutoScalingGroup -> target group.

locals {
  image_parameter_name = coalesce(var.image_parameter_name, "/phoenix/images/${var.role}/latest")
  target_group_name    = coalesce(var.target_group_name, substr(var.name, 0, 32))

  phoenix_tags = {
    "phoenix:role" = var.role
    "phoenix:env"  = var.env
  }
  resource_tags = merge(var.tags, local.phoenix_tags)

  # Tags Terraform owns on the ASG. Everything else on the ASG (phoenix:rollout:* written by the recycler)
  # is not Terraform's business: see the lifecycle block of aws_autoscaling_group.this.
  asg_tags = {
    "phoenix:role"     = { value = var.role, propagate_at_launch = true }
    "phoenix:env"      = { value = var.env, propagate_at_launch = true }
    "phoenix:asg-name" = { value = var.name, propagate_at_launch = false }
  }
}

# ---------------------------------------------------------------------------------------------------------------------
# Image: var.image_id (the release a rollout applies), else the AMI the SSM parameter names; the AMI must be ours
# (owner filter) and, by default, verified for this role.
# ---------------------------------------------------------------------------------------------------------------------

data "aws_ssm_parameter" "image" {
  count = var.image_id == null ? 1 : 0
  name  = local.image_parameter_name
}

locals {
  image_id     = var.image_id != null ? var.image_id : data.aws_ssm_parameter.image[0].insecure_value
  image_source = var.image_id != null ? "the release being applied (var.image_id)" : local.image_parameter_name
}

data "aws_ami" "image" {
  owners = var.image_owners

  filter {
    name   = "image-id"
    values = [local.image_id]
  }

  lifecycle {
    postcondition {
      condition = !var.require_verified_image || (
        lookup(self.tags, "phoenix:verified", "") == "true" && lookup(self.tags, "phoenix:role", "") == var.role
      )
      error_message = "AMI ${self.id} (from ${local.image_source}) is not tagged phoenix:verified=true and phoenix:role=${var.role}. Only verified images of this role may be rolled out."
    }
  }
}

# ---------------------------------------------------------------------------------------------------------------------
# Launch template: a new version each time the parameter moves; the new version becomes the default.
# ---------------------------------------------------------------------------------------------------------------------

resource "aws_launch_template" "this" {
  name                   = var.name
  description            = "phoenix-fleet ${var.env}/${var.role}: AMI from ${local.image_parameter_name}"
  image_id               = data.aws_ami.image.id
  instance_type          = var.instance_type
  vpc_security_group_ids = var.security_group_ids
  user_data              = var.user_data == null ? null : base64encode(var.user_data)
  update_default_version = true

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required" # IMDSv2 only
    http_put_response_hop_limit = var.metadata_hop_limit
  }

  block_device_mappings {
    device_name = data.aws_ami.image.root_device_name

    ebs {
      encrypted             = true
      kms_key_id            = var.root_volume_kms_key_id
      volume_size           = var.root_volume_size
      volume_type           = var.root_volume_type
      delete_on_termination = true
    }
  }

  dynamic "iam_instance_profile" {
    for_each = var.instance_profile_name == null ? [] : [var.instance_profile_name]
    content {
      name = iam_instance_profile.value
    }
  }

  tag_specifications {
    resource_type = "instance"
    tags          = local.resource_tags
  }

  tag_specifications {
    resource_type = "volume"
    tags          = local.resource_tags
  }

  tags = local.resource_tags
}

# ---------------------------------------------------------------------------------------------------------------------
# Target group the ASG registers its instances in.
# ---------------------------------------------------------------------------------------------------------------------

resource "aws_lb_target_group" "this" {
  name                 = local.target_group_name
  vpc_id               = var.vpc_id
  port                 = var.port
  protocol             = var.protocol
  target_type          = "instance"
  deregistration_delay = var.deregistration_delay

  health_check {
    enabled             = true
    path                = var.health_check_path
    protocol            = var.protocol
    port                = "traffic-port"
    matcher             = "200"
    interval            = var.health_check_interval
    timeout             = 5
    healthy_threshold   = var.healthy_threshold
    unhealthy_threshold = var.unhealthy_threshold
  }

  tags = local.resource_tags
}

# ---------------------------------------------------------------------------------------------------------------------
# AutoScalingGroup
# ---------------------------------------------------------------------------------------------------------------------

resource "aws_autoscaling_group" "this" {
  name                      = var.name
  vpc_zone_identifier       = var.subnet_ids
  min_size                  = var.min_size
  max_size                  = var.max_size
  desired_capacity          = var.desired_capacity
  health_check_type         = var.health_check_type
  health_check_grace_period = var.health_check_grace_period
  default_instance_warmup   = var.default_instance_warmup
  termination_policies      = var.termination_policies
  target_group_arns         = concat([aws_lb_target_group.this.arn], var.extra_target_group_arns)
  wait_for_capacity_timeout = var.wait_for_capacity_timeout

  # Pinned to the template's newest version: moving the image parameter and applying moves the group to the new
  # version (an in-place update of the group; instances are replaced by the rolling recycler, not by Terraform).
  launch_template {
    id      = aws_launch_template.this.id
    version = aws_launch_template.this.latest_version
  }

  # Set at creation so the very first instances carry them. Afterwards Terraform keeps these keys in line through
  # aws_autoscaling_group_tag.this (one resource per key), and ignores the ASG's tag set as a whole.
  dynamic "tag" {
    for_each = local.asg_tags
    content {
      key                 = tag.key
      value               = tag.value.value
      propagate_at_launch = tag.value.propagate_at_launch
    }
  }

  lifecycle {
    ignore_changes = [
      # Owned at run time by the rolling recycler (surge) and by scaling policies.
      desired_capacity,
      max_size,
      # The recycler suspends AZRebalance, AlarmNotification, ... for the rollout and resumes them at the end.
      suspended_processes,
      # The recycler writes phoenix:rollout:* tags (rollout id, original capacity, target) on the group. A set of
      # tag blocks cannot ignore single keys, so the whole set is ignored here and the keys Terraform owns are
      # managed by aws_autoscaling_group_tag below, which reads and writes only its own key.
      tag,
    ]
  }
}

resource "aws_autoscaling_group_tag" "this" {
  for_each = local.asg_tags

  autoscaling_group_name = aws_autoscaling_group.this.name

  tag {
    key                 = each.key
    value               = each.value.value
    propagate_at_launch = each.value.propagate_at_launch
  }
}
