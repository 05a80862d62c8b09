# The sandbox's long-lived network layer: a VPC with two subnets in two AZs, security groups, and the ALB.
#
# It is a root of its own (applied once, before the fleet root one directory up) because creating an ALB with the
# AWS provider costs a fixed minute of client-side waiting (two 30 s "wait for active" delays), which the fleet
# root, applied on every release, should not pay. The fleet root finds these resources by tag and name.

locals {
  network_tags = { "phoenix:network" = var.env }
}

resource "aws_vpc" "this" {
  cidr_block         = var.vpc_cidr
  enable_dns_support = true
  # enable_dns_hostnames is left at its default (false): setting it costs a 10 s provider wait, the sandbox has no DNS.

  tags = merge(local.network_tags, { Name = "${var.env}-phoenix" })
}

resource "aws_internet_gateway" "this" {
  vpc_id = aws_vpc.this.id

  tags = merge(local.network_tags, { Name = "${var.env}-phoenix" })
}

resource "aws_subnet" "public" {
  count = length(var.availability_zones)

  vpc_id            = aws_vpc.this.id
  availability_zone = var.availability_zones[count.index]
  cidr_block        = cidrsubnet(var.vpc_cidr, 8, count.index)
  # map_public_ip_on_launch stays false (a 10 s provider wait otherwise): instances are reached through the ALB.

  tags = merge(local.network_tags, {
    Name           = "${var.env}-public-${var.availability_zones[count.index]}"
    "phoenix:tier" = "public"
  })
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.this.id

  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.this.id
  }

  tags = merge(local.network_tags, { Name = "${var.env}-public" })
}

resource "aws_route_table_association" "public" {
  count = length(aws_subnet.public)

  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public.id
}

# ---------------------------------------------------------------------------------------------------------------------
# Security groups: ALB open on the listener ports; instances reachable from the ALB only.
# ---------------------------------------------------------------------------------------------------------------------

resource "aws_security_group" "alb" {
  name        = "${var.env}-phoenix-alb"
  description = "phoenix-fleet ALB: HTTP in from anywhere"
  vpc_id      = aws_vpc.this.id

  tags = merge(local.network_tags, { Name = "${var.env}-phoenix-alb" })
}

resource "aws_vpc_security_group_ingress_rule" "alb_listener" {
  for_each = toset([for port in var.listener_ports : tostring(port)])

  security_group_id = aws_security_group.alb.id
  description       = "listener port ${each.value}"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = tonumber(each.value)
  to_port           = tonumber(each.value)
}

resource "aws_vpc_security_group_egress_rule" "alb_to_vpc" {
  security_group_id = aws_security_group.alb.id
  description       = "to the instances"
  cidr_ipv4         = var.vpc_cidr
  ip_protocol       = "-1"
}

resource "aws_security_group" "instances" {
  name        = "${var.env}-phoenix-instances"
  description = "phoenix-fleet instances: service port from the ALB only"
  vpc_id      = aws_vpc.this.id

  tags = merge(local.network_tags, { Name = "${var.env}-phoenix-instances" })
}

# From the VPC's CIDR rather than referenced_security_group_id = aws_security_group.alb.id: with
# skip_requesting_account_id the provider does not know the account, reads the reference back as
# "<account>/<sg-id>" and plans a change forever (and moto drops the description of group-referencing rules).
# Only the ALB sends traffic into the VPC on this port in the sandbox.
resource "aws_vpc_security_group_ingress_rule" "instances_from_alb" {
  security_group_id = aws_security_group.instances.id
  description       = "service port from inside the VPC (the ALB)"
  cidr_ipv4         = var.vpc_cidr
  ip_protocol       = "tcp"
  from_port         = var.instance_port
  to_port           = var.instance_port
}

resource "aws_vpc_security_group_egress_rule" "instances_all" {
  security_group_id = aws_security_group.instances.id
  description       = "all egress"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "-1"
}

# ---------------------------------------------------------------------------------------------------------------------
# The ALB. Listeners live in the fleet root, next to the target groups they forward to.
# ---------------------------------------------------------------------------------------------------------------------

resource "aws_lb" "this" {
  name               = "${var.env}-phoenix"
  load_balancer_type = "application"
  internal           = false
  security_groups    = [aws_security_group.alb.id]
  subnets            = aws_subnet.public[*].id

  tags = merge(local.network_tags, { Name = "${var.env}-phoenix" })

  depends_on = [aws_internet_gateway.this]
}
