# The sandbox fleet: one service group (module) per entry of var.service_groups, and one ALB listener per role that
# forwards to the role's target groups. The VPC, subnets, security groups and the ALB come from ./network.

locals {
  roles      = toset([for group in values(var.service_groups) : group.role])
  subnet_ids = sort(data.aws_subnets.public.ids)

  # The release a rollout applies: its role's groups launch exactly the announced AMI of this region (never what
  # `latest` holds at plan time); every other group keeps the AMI its role's pointer names.
  release_role  = try(var.release.role, null)
  release_image = var.release == null ? null : lookup(var.release.image_ids, var.region, "")
}

module "service" {
  source   = "../../modules/service"
  for_each = var.service_groups

  name = "${var.env}-${each.key}"
  role = each.value.role
  env  = var.env

  image_parameter_name  = "/phoenix/images/${each.value.role}/latest"
  image_id              = each.value.role == local.release_role ? local.release_image : null
  instance_type         = var.instance_type
  security_group_ids    = [data.aws_security_group.instances.id]
  instance_profile_name = var.instance_profile_name

  vpc_id                    = data.aws_vpc.network.id
  subnet_ids                = local.subnet_ids
  min_size                  = each.value.min_size
  max_size                  = each.value.max_size
  desired_capacity          = each.value.desired_capacity
  health_check_grace_period = var.health_check_grace_period
  default_instance_warmup   = var.default_instance_warmup
  wait_for_capacity_timeout = var.wait_for_capacity_timeout
}

resource "aws_lb_listener" "role" {
  for_each = local.roles

  load_balancer_arn = data.aws_lb.network.arn
  port              = var.listener_ports[each.key]
  protocol          = "HTTP"

  default_action {
    type = "forward"

    forward {
      dynamic "target_group" {
        for_each = { for key, group in var.service_groups : key => group if group.role == each.key }
        content {
          arn    = module.service[target_group.key].target_group_arn
          weight = target_group.value.weight
        }
      }
    }
  }
}
