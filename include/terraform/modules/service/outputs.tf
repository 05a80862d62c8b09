output "launch_template_id" {
  description = "Id of the launch template."
  value       = aws_launch_template.this.id
}

output "launch_template_name" {
  description = "Name of the launch template."
  value       = aws_launch_template.this.name
}

output "launch_template_latest_version" {
  description = "Newest version of the launch template (also its default version, and the version the ASG uses)."
  value       = aws_launch_template.this.latest_version
}

output "image_id" {
  description = "AMI the launch template's newest version launches (var.image_id, else the value of the image parameter)."
  value       = data.aws_ami.image.id
}

output "image_parameter_name" {
  description = "SSM parameter the AMI id was read from."
  value       = local.image_parameter_name
}

output "asg_name" {
  description = "Name of the AutoScalingGroup."
  value       = aws_autoscaling_group.this.name
}

output "asg_arn" {
  description = "ARN of the AutoScalingGroup."
  value       = aws_autoscaling_group.this.arn
}

output "target_group_arn" {
  description = "ARN of the target group the group's instances register in."
  value       = aws_lb_target_group.this.arn
}

output "target_group_name" {
  description = "Name of the target group."
  value       = aws_lb_target_group.this.name
}
