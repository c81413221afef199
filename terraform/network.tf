# The zones are named rather than taken from whatever the region lists, so
# a zone AWS adds later cannot reorder the subnets carved below.
data "aws_availability_zones" "available" {
  state = "available"
  filter {
    name   = "zone-name"
    values = [for suffix in var.availability_zone_suffixes : "${var.region}${suffix}"]
  }
}

locals {
  name = "onsale-${var.environment}"
  azs  = slice(data.aws_availability_zones.available.names, 0, 3)
  # Service ports, named once: the security groups, the target groups and
  # the task definitions agree on them.
  ports = {
    queue_http = 8080
    core_http  = 8081
    grpc       = 50051
    redis      = 6379
    postgres   = 5432
    # MSK's TLS listener; the plaintext one (9092) is switched off.
    kafka_tls = 9094
  }
}

module "vpc" {
  # v5.21.0, by commit: a registry version or tag can be moved, a commit
  # cannot.
  source = "git::https://github.com/terraform-aws-modules/terraform-aws-vpc.git?ref=7c1f791efd61f326ed6102d564d1a65d1eceedf0"

  name            = local.name
  cidr            = var.vpc_cidr
  azs             = local.azs
  public_subnets  = [for i in range(3) : cidrsubnet(var.vpc_cidr, 4, i)]
  private_subnets = [for i in range(3) : cidrsubnet(var.vpc_cidr, 4, i + 3)]

  enable_nat_gateway     = true
  one_nat_gateway_per_az = var.environment == "prod"
  single_nat_gateway     = var.environment != "prod"

  # Who talked to what, for incident review (rejected connections included).
  enable_flow_log                                 = true
  create_flow_log_cloudwatch_log_group            = true
  create_flow_log_cloudwatch_iam_role             = true
  flow_log_cloudwatch_log_group_retention_in_days = var.log_retention_days
  flow_log_cloudwatch_log_group_kms_key_id        = aws_kms_key.onsale.arn
}

# The load balancer: HTTPS from anywhere on 443, the blue/green test
# listener (8443) from the VPC and the named networks only, and nothing out
# but the services' HTTP ports.
resource "aws_security_group" "alb" {
  name        = "${local.name}-alb"
  description = "onsale public load balancer"
  vpc_id      = module.vpc.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "alb_https" {
  security_group_id = aws_security_group.alb.id
  description       = "HTTPS from fans"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

# The load balancer is internet-facing, so requests from inside the VPC
# arrive from the NAT gateways' addresses.
locals {
  test_listener_cidrs = concat([for ip in module.vpc.nat_public_ips : "${ip}/32"], var.test_listener_cidrs)
}

resource "aws_vpc_security_group_ingress_rule" "alb_test" {
  count             = length(local.test_listener_cidrs)
  security_group_id = aws_security_group.alb.id
  description       = "blue/green test listener, never public"
  ip_protocol       = "tcp"
  from_port         = 8443
  to_port           = 8443
  cidr_ipv4         = local.test_listener_cidrs[count.index]
}

resource "aws_vpc_security_group_egress_rule" "alb_to_services" {
  security_group_id            = aws_security_group.alb.id
  description                  = "forwarding and health checks to the services"
  ip_protocol                  = "tcp"
  from_port                    = local.ports.queue_http
  to_port                      = local.ports.core_http
  referenced_security_group_id = aws_security_group.services.id
}

# The services' tasks (and the migration task).
resource "aws_security_group" "services" {
  name        = "${local.name}-services"
  description = "onsale service tasks"
  vpc_id      = module.vpc.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "services_http" {
  security_group_id            = aws_security_group.services.id
  description                  = "HTTP from the load balancer"
  ip_protocol                  = "tcp"
  from_port                    = local.ports.queue_http
  to_port                      = local.ports.core_http
  referenced_security_group_id = aws_security_group.alb.id
}

resource "aws_vpc_security_group_ingress_rule" "services_grpc" {
  security_group_id            = aws_security_group.services.id
  description                  = "gRPC between the services (core-service to queue-service VerifyAccess)"
  ip_protocol                  = "tcp"
  from_port                    = local.ports.grpc
  to_port                      = local.ports.grpc
  referenced_security_group_id = aws_security_group.services.id
}

resource "aws_vpc_security_group_egress_rule" "services_grpc" {
  security_group_id            = aws_security_group.services.id
  description                  = "gRPC to queue-service"
  ip_protocol                  = "tcp"
  from_port                    = local.ports.grpc
  to_port                      = local.ports.grpc
  referenced_security_group_id = aws_security_group.services.id
}

resource "aws_vpc_security_group_egress_rule" "services_data" {
  for_each = {
    redis    = local.ports.redis
    postgres = local.ports.postgres
    kafka    = local.ports.kafka_tls
  }
  security_group_id            = aws_security_group.services.id
  description                  = "${each.key} (TLS)"
  ip_protocol                  = "tcp"
  from_port                    = each.value
  to_port                      = each.value
  referenced_security_group_id = aws_security_group.data.id
}

# HTTPS through the NAT gateways: the identity provider's keys (Cognito),
# ECR image pulls, Secrets Manager, CloudWatch Logs and metrics.
resource "aws_vpc_security_group_egress_rule" "services_https" {
  security_group_id = aws_security_group.services.id
  description       = "HTTPS to AWS APIs and the identity provider"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

# Redis, Postgres and Kafka take connections from the services only and
# open none: replication inside ElastiCache, RDS and MSK does not pass
# through this group.
resource "aws_security_group" "data" {
  name        = "${local.name}-data"
  description = "onsale data stores (ElastiCache, RDS, MSK)"
  vpc_id      = module.vpc.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "data" {
  for_each = {
    redis    = local.ports.redis
    postgres = local.ports.postgres
    kafka    = local.ports.kafka_tls
  }
  security_group_id            = aws_security_group.data.id
  description                  = "${each.key} (TLS) from the services"
  ip_protocol                  = "tcp"
  from_port                    = each.value
  to_port                      = each.value
  referenced_security_group_id = aws_security_group.services.id
}
