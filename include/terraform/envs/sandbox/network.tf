# The network this fleet runs in comes from the network root (./network), found by tags and names, so the two roots
# share no state files. Apply ./network first; without it, planning here stops at the precondition below.

data "aws_vpcs" "network" {
  tags = {
    "phoenix:network" = var.env
    Name              = "${var.env}-phoenix"
  }
}

data "aws_vpc" "network" {
  id = one(data.aws_vpcs.network.ids)

  lifecycle {
    precondition {
      condition     = length(data.aws_vpcs.network.ids) == 1
      error_message = "Expected exactly one VPC tagged phoenix:network=${var.env}, Name=${var.env}-phoenix, found ${length(data.aws_vpcs.network.ids)}. Apply the network root first: terraform -chdir=include/terraform/envs/sandbox/network apply"
    }
  }
}

data "aws_subnets" "public" {
  filter {
    name   = "vpc-id"
    values = [data.aws_vpc.network.id]
  }

  tags = {
    "phoenix:network" = var.env
    "phoenix:tier"    = "public"
  }

  lifecycle {
    postcondition {
      condition     = length(self.ids) >= 2
      error_message = "The fleet needs two public subnets (two AZs) in ${data.aws_vpc.network.id}; found ${length(self.ids)}. Re-apply the network root."
    }
  }
}

data "aws_security_group" "instances" {
  vpc_id = data.aws_vpc.network.id
  name   = "${var.env}-phoenix-instances"
}

data "aws_lb" "network" {
  name = "${var.env}-phoenix"
}
