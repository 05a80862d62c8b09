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
  description = "Environment name: tagged as phoenix:env and phoenix:network, and the prefix of resource names. The fleet root looks the network up by it."
  type        = string
  default     = "sandbox"
}

variable "vpc_cidr" {
  description = "CIDR block of the sandbox VPC (the subnets are its first /24s)."
  type        = string
  default     = "10.42.0.0/16"
}

variable "availability_zones" {
  description = "Two availability zones; one subnet is created in each."
  type        = list(string)
  default     = ["us-east-1a", "us-east-1b"]

  validation {
    condition     = length(var.availability_zones) == 2
    error_message = "availability_zones must list exactly two zones."
  }
}

variable "listener_ports" {
  description = "Ports the ALB security group opens (the fleet root creates one listener per role on these)."
  type        = list(number)
  default     = [80, 8080]
}

variable "instance_port" {
  description = "Port the instances serve on; the instance security group admits it from the ALB."
  type        = number
  default     = 80
}
