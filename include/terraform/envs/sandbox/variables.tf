variable "endpoint" {
  description = "URL of the sandbox AWS endpoint (all services on one port), e.g. the one `python -m sandbox start` serves."
  type        = string
  default     = "http://127.0.0.1:5055"
}

variable "region" {
  description = "AWS region of the sandbox."
  type        = string
  default     = "us-east-1"
}

variable "env" {
  description = "Environment name, tagged as phoenix:env and used as the prefix of resource names."
  type        = string
  default     = "sandbox"
}

variable "instance_type" {
  description = "Instance type of every launch template in the sandbox."
  type        = string
  default     = "t3.micro"
}

variable "instance_profile_name" {
  description = "IAM instance profile for the fleet's instances (null for none). The seed creates phoenix-canary for verification instances, not for the fleet."
  type        = string
  default     = null
}

variable "release" {
  description = "The release a rollout applies (TerraformApplyOperator's release_images): the role and its AMI per region. The role's groups launch image_ids[var.region]; every other group keeps the AMI its role's SSM pointer names. null (a plain `terraform apply`): every group reads its role's pointer."
  type = object({
    role      = string
    image_ids = map(string)
  })
  default = null
}

variable "service_groups" {
  description = "The fleet: one AutoScalingGroup per entry, keyed by the group's short name (the ASG is named <env>-<key>). Each role reads /phoenix/images/<role>/latest. Only roles on the Terraform backend belong here: a native-backend role's templates are written by the native backend alone (one writer per template)."
  type = map(object({
    role             = string
    min_size         = optional(number, 1)
    max_size         = optional(number, 4)
    desired_capacity = optional(number, 2)
    weight           = optional(number, 1)
  }))
  default = {
    "web-a" = { role = "web" }
    "web-b" = { role = "web" }
  }
}

variable "listener_ports" {
  description = "ALB listener port per role; each listener forwards to the role's target groups (weighted by service_groups[*].weight). The network root opens these ports (its listener_ports)."
  type        = map(number)
  default = {
    web    = 80
    worker = 8080
  }
}

variable "health_check_grace_period" {
  description = "Grace period of every group, seconds."
  type        = number
  default     = 60
}

variable "default_instance_warmup" {
  description = "Default instance warmup of every group, seconds."
  type        = number
  default     = 30
}

variable "wait_for_capacity_timeout" {
  description = "How long apply waits for each group's desired capacity (\"0\" disables the wait)."
  type        = string
  default     = "5m"
}
