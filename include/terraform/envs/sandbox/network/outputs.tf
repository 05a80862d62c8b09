output "vpc_id" {
  description = "Id of the sandbox VPC."
  value       = aws_vpc.this.id
}

output "subnet_ids" {
  description = "Ids of the two public subnets (one per availability zone)."
  value       = aws_subnet.public[*].id
}

output "alb_arn" {
  description = "ARN of the ALB."
  value       = aws_lb.this.arn
}

output "alb_dns_name" {
  description = "DNS name of the ALB."
  value       = aws_lb.this.dns_name
}

output "alb_security_group_id" {
  description = "Security group of the ALB."
  value       = aws_security_group.alb.id
}

output "instance_security_group_id" {
  description = "Security group of the fleet's instances."
  value       = aws_security_group.instances.id
}
