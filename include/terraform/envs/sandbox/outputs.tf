output "roles" {
  description = "Per role: the ASG names, launch template ids and target group ARNs of its service groups."
  value = {
    for role in local.roles : role => {
      asg_names           = [for key, group in var.service_groups : module.service[key].asg_name if group.role == role]
      launch_template_ids = [for key, group in var.service_groups : module.service[key].launch_template_id if group.role == role]
      target_group_arns   = [for key, group in var.service_groups : module.service[key].target_group_arn if group.role == role]
      image_parameter     = "/phoenix/images/${role}/latest"
    }
  }
}

output "service_groups" {
  description = "Per service group (key of var.service_groups): everything the module outputs."
  value = {
    for key, group in module.service : key => {
      role                           = var.service_groups[key].role
      asg_name                       = group.asg_name
      asg_arn                        = group.asg_arn
      launch_template_id             = group.launch_template_id
      launch_template_name           = group.launch_template_name
      launch_template_latest_version = group.launch_template_latest_version
      image_id                       = group.image_id
      target_group_arn               = group.target_group_arn
    }
  }
}

output "alb_dns_name" {
  description = "DNS name of the sandbox ALB (from the network root)."
  value       = data.aws_lb.network.dns_name
}

output "listener_arns" {
  description = "ALB listener ARN per role."
  value       = { for role, listener in aws_lb_listener.role : role => listener.arn }
}
