# ---------------------------------------------------------------------------------------------------------------------
# Identity
# ---------------------------------------------------------------------------------------------------------------------

variable "name" {
  description = "Name of this service group: the AutoScalingGroup and launch template are named after it (e.g. \"sandbox-web-a\"). Unique per region."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9-]{0,62}$", var.name))
    error_message = "name must be 1-63 characters: letters, digits and hyphens, starting with a letter or digit."
  }
}

variable "role" {
  description = "Fleet role this group serves (e.g. \"web\", \"worker\"). Tagged as phoenix:role; selects the image parameter by default."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*$", var.role))
    error_message = "role must be lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "env" {
  description = "Environment name (e.g. \"sandbox\", \"prod\"). Tagged as phoenix:env."
  type        = string
}

variable "tags" {
  description = "Extra tags for the launch template, target group and instances/volumes launched from the template. The phoenix:* tags are set by the module and win."
  type        = map(string)
  default     = {}
}

# ---------------------------------------------------------------------------------------------------------------------
# Image (published by the AMI release pipeline)
# ---------------------------------------------------------------------------------------------------------------------

variable "image_parameter_name" {
  description = "SSM parameter whose value is the AMI id to launch. null means \"/phoenix/images/<role>/latest\", the parameter the publish step moves."
  type        = string
  default     = null
}

variable "image_id" {
  description = "The AMI to launch, when a rollout applies a release (the AMI the publish event announced for this region). null: the AMI the SSM parameter names. Either way it must pass image_owners and require_verified_image."
  type        = string
  default     = null

  validation {
    condition     = var.image_id == null || can(regex("^ami-[0-9a-f]{8,17}$", coalesce(var.image_id, "x")))
    error_message = "image_id must be an AMI id (ami- and 8-17 hex digits), or null to read the SSM parameter. An empty one means the release names no AMI for this root's region."
  }
}

variable "image_owners" {
  description = "Accounts allowed to own the AMI named by the parameter (passed as owners to DescribeImages). Never resolve an image without an owner filter."
  type        = list(string)
  default     = ["self"]

  validation {
    condition     = length(var.image_owners) > 0
    error_message = "image_owners must not be empty: an owner filter is required."
  }
}

variable "require_verified_image" {
  description = "Refuse to plan when the AMI is not tagged phoenix:verified=true and phoenix:role=<role>."
  type        = bool
  default     = true
}

# ---------------------------------------------------------------------------------------------------------------------
# Launch template
# ---------------------------------------------------------------------------------------------------------------------

variable "instance_type" {
  description = "EC2 instance type for the launch template."
  type        = string
  default     = "t3.micro"
}

variable "security_group_ids" {
  description = "Security groups attached to the instances."
  type        = list(string)
  default     = []
}

variable "instance_profile_name" {
  description = "IAM instance profile for the instances (null for none)."
  type        = string
  default     = null
}

variable "root_volume_size" {
  description = "Size of the encrypted root EBS volume, GiB."
  type        = number
  default     = 16

  validation {
    condition     = var.root_volume_size >= 1
    error_message = "root_volume_size must be at least 1 GiB."
  }
}

variable "root_volume_type" {
  description = "EBS volume type of the root volume."
  type        = string
  default     = "gp3"
}

variable "root_volume_kms_key_id" {
  description = "KMS key ARN for the root volume encryption (null: the account's default EBS key)."
  type        = string
  default     = null
}

variable "metadata_hop_limit" {
  description = "IMDSv2 PUT response hop limit (1 for instances; 2 if containers on the host need the metadata service)."
  type        = number
  default     = 1

  validation {
    condition     = var.metadata_hop_limit >= 1 && var.metadata_hop_limit <= 64
    error_message = "metadata_hop_limit must be between 1 and 64."
  }
}

variable "user_data" {
  description = "Plain-text user data for the instances (base64-encoded by the module). null for none."
  type        = string
  default     = null
}

# ---------------------------------------------------------------------------------------------------------------------
# AutoScalingGroup
# ---------------------------------------------------------------------------------------------------------------------

variable "subnet_ids" {
  description = "Subnets the group spans (use at least two, in different availability zones)."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 1
    error_message = "subnet_ids must name at least one subnet (two, in two AZs, for a real service)."
  }
}

variable "min_size" {
  description = "Minimum size of the group."
  type        = number
  default     = 1
}

variable "max_size" {
  description = "Maximum size of the group at creation. Ignored afterwards (the rolling recycler raises it temporarily to surge); see docs/terraform.md."
  type        = number
  default     = 4
}

variable "desired_capacity" {
  description = "Desired capacity at creation. Ignored afterwards (the recycler and scaling policies own it)."
  type        = number
  default     = 2

  validation {
    condition     = var.desired_capacity >= 0
    error_message = "desired_capacity must be >= 0."
  }
}

variable "health_check_grace_period" {
  description = "Seconds after launch before ELB health checks can mark an instance unhealthy."
  type        = number
  default     = 120
}

variable "default_instance_warmup" {
  description = "Seconds a new instance needs before it counts toward the group's metrics and instance refresh/recycle progress."
  type        = number
  default     = 60
}

variable "health_check_type" {
  description = "Health check type of the group: ELB (target group health replaces unhealthy instances) or EC2."
  type        = string
  default     = "ELB"

  validation {
    condition     = contains(["ELB", "EC2"], var.health_check_type)
    error_message = "health_check_type must be \"ELB\" or \"EC2\"."
  }
}

variable "termination_policies" {
  description = "Order in which scale-in picks instances. The default removes instances of old launch template versions first."
  type        = list(string)
  default     = ["OldestLaunchTemplate", "OldestInstance", "Default"]
}

variable "wait_for_capacity_timeout" {
  description = "How long terraform apply waits for the group to reach its desired capacity of healthy instances (\"0\" disables the wait)."
  type        = string
  default     = "10m"
}

variable "extra_target_group_arns" {
  description = "Additional target groups (besides the module's own) to attach the group to."
  type        = list(string)
  default     = []
}

# ---------------------------------------------------------------------------------------------------------------------
# Target group
# ---------------------------------------------------------------------------------------------------------------------

variable "vpc_id" {
  description = "VPC of the target group."
  type        = string
}

variable "target_group_name" {
  description = "Name of the target group (max 32 characters). null means the group name."
  type        = string
  default     = null

  validation {
    condition     = var.target_group_name == null || length(coalesce(var.target_group_name, "x")) <= 32
    error_message = "target_group_name must be at most 32 characters."
  }
}

variable "port" {
  description = "Port the instances serve on (target group port)."
  type        = number
  default     = 80
}

variable "protocol" {
  description = "Protocol of the target group (HTTP or HTTPS)."
  type        = string
  default     = "HTTP"
}

variable "health_check_path" {
  description = "Path of the target group's HTTP health check."
  type        = string
  default     = "/healthz"
}

variable "health_check_interval" {
  description = "Seconds between target group health checks."
  type        = number
  default     = 15
}

variable "healthy_threshold" {
  description = "Consecutive successful checks before a target is healthy."
  type        = number
  default     = 2
}

variable "unhealthy_threshold" {
  description = "Consecutive failed checks before a target is unhealthy."
  type        = number
  default     = 2
}

variable "deregistration_delay" {
  description = "Seconds the load balancer drains a deregistering target."
  type        = number
  default     = 30
}
