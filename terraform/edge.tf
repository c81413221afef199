# The public edge: the load balancer, its firewall and its access logs.

# Each service behind the load balancer gets a target group; a blue/green
# one (core-service) gets two, between which CodeDeploy moves the traffic.
locals {
  target_groups = merge(
    {
      for name, service in local.services : name => {
        port  = service.port
        short = trimsuffix(name, "-service")
      } if service.deployment == "rolling"
    },
    {
      for pair in setproduct([for name, service in local.services : name if service.deployment == "blue_green"], ["blue", "green"]) :
      "${pair[0]}-${pair[1]}" => {
        port  = local.services[pair[0]].port
        short = "${trimsuffix(pair[0], "-service")}-${pair[1]}"
      }
    },
  )
  # TLS 1.3 and 1.2 with forward-secret ciphers only.
  ssl_policy = "ELBSecurityPolicy-TLS13-1-2-2021-06"
}

resource "aws_lb" "public" {
  name               = local.name
  load_balancer_type = "application"
  subnets            = module.vpc.public_subnets
  security_groups    = [aws_security_group.alb.id]
  # Header names with invalid characters are dropped, not passed to the
  # services.
  drop_invalid_header_fields = true
  enable_deletion_protection = var.deletion_protection
  access_logs {
    bucket  = aws_s3_bucket.alb_logs.id
    prefix  = "alb"
    enabled = true
  }
  depends_on = [aws_s3_bucket_policy.alb_logs]
}

resource "aws_lb_target_group" "service" {
  #checkov:skip=CKV_AWS_378:TLS ends at the load balancer: the services listen for plain HTTP (their TLS work covers the connections they open to Redis, Postgres and Kafka), and only the load balancer's security group reaches these ports inside the private subnets.
  for_each    = local.target_groups
  name        = "${local.name}-${each.value.short}"
  port        = each.value.port
  protocol    = "HTTP"
  target_type = "ip"
  vpc_id      = module.vpc.vpc_id
  # Let in-flight requests finish while a task drains.
  deregistration_delay = 20
  health_check {
    path                = "/readyz"
    matcher             = "200"
    interval            = 10
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.public.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = local.ssl_policy
  certificate_arn   = var.certificate_arn
  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.service["core-service-blue"].arn
  }
  lifecycle {
    # CodeDeploy points this at core-service's blue or green group.
    ignore_changes = [default_action]
  }
}

# The blue/green test listener: CodeDeploy sends it to the new core-service
# tasks before any fan reaches them. Only the VPC and test_listener_cidrs
# may connect (network.tf).
resource "aws_lb_listener" "test" {
  load_balancer_arn = aws_lb.public.arn
  port              = 8443
  protocol          = "HTTPS"
  ssl_policy        = local.ssl_policy
  certificate_arn   = var.certificate_arn
  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.service["core-service-green"].arn
  }
  lifecycle {
    ignore_changes = [default_action]
  }
}

# The waiting room's public routes; everything else goes to core-service.
resource "aws_lb_listener_rule" "queue" {
  listener_arn = aws_lb_listener.https.arn
  priority     = 10
  condition {
    path_pattern {
      values = ["/v1/events/*"]
    }
  }
  action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.service["queue-service"].arn
  }
}

# Admin routes and metrics are not exposed on either listener (reach them
# through the VPC).
resource "aws_lb_listener_rule" "no_admin" {
  for_each = {
    https = aws_lb_listener.https.arn
    test  = aws_lb_listener.test.arn
  }
  listener_arn = each.value
  priority     = 5
  condition {
    path_pattern {
      values = ["/admin/*", "/metrics"]
    }
  }
  action {
    type = "fixed-response"
    fixed_response {
      content_type = "application/problem+json"
      status_code  = "404"
      message_body = "{\"type\":\"https://onsale.dev/problems/not-found\",\"title\":\"Not found\",\"status\":404,\"detail\":\"no such resource\",\"code\":\"not_found\"}"
    }
  }
}

# The firewall, before the services see a request: addresses on Amazon's
# reputation list, anonymizers (Tor, open proxies, VPN exits: the scalper
# bots' way around the per-fan limits) and known exploit payloads
# (Log4Shell and the like) are blocked. Hosting providers' addresses are
# only counted: company proxies and the load tests run from them. No
# rate-based rule: fans behind mobile carriers' shared addresses would be
# blocked together, so the services limit per signed-in fan instead
# (ONSALE__*__RATE_LIMIT__*).
resource "aws_wafv2_web_acl" "public" {
  name  = local.name
  scope = "REGIONAL"
  default_action {
    allow {}
  }
  rule {
    name     = "amazon-ip-reputation"
    priority = 1
    override_action {
      none {}
    }
    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesAmazonIpReputationList"
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "amazon-ip-reputation"
      sampled_requests_enabled   = true
    }
  }
  rule {
    name     = "anonymous-ip"
    priority = 2
    override_action {
      none {}
    }
    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesAnonymousIpList"
        rule_action_override {
          name = "HostingProviderIPList"
          action_to_use {
            count {}
          }
        }
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "anonymous-ip"
      sampled_requests_enabled   = true
    }
  }
  rule {
    name     = "known-bad-inputs"
    priority = 3
    override_action {
      none {}
    }
    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesKnownBadInputsRuleSet"
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "known-bad-inputs"
      sampled_requests_enabled   = true
    }
  }
  visibility_config {
    cloudwatch_metrics_enabled = true
    metric_name                = local.name
    sampled_requests_enabled   = true
  }
}

resource "aws_wafv2_web_acl_association" "public" {
  resource_arn = aws_lb.public.arn
  web_acl_arn  = aws_wafv2_web_acl.public.arn
}

# WAF logs only to log groups named aws-waf-logs-*.
resource "aws_cloudwatch_log_group" "waf" {
  name              = "aws-waf-logs-${local.name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.onsale.arn
}

data "aws_iam_policy_document" "waf_logs" {
  statement {
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.waf.arn}:*"]
    principals {
      type        = "Service"
      identifiers = ["delivery.logs.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_cloudwatch_log_resource_policy" "waf" {
  policy_name     = "${local.name}-waf-logs"
  policy_document = data.aws_iam_policy_document.waf_logs.json
}

resource "aws_wafv2_web_acl_logging_configuration" "public" {
  resource_arn            = aws_wafv2_web_acl.public.arn
  log_destination_configs = [aws_cloudwatch_log_group.waf.arn]
}

# The load balancer's access logs: one line per request with its status,
# timings and target, for the review after an on-sale.
resource "aws_s3_bucket" "alb_logs" {
  #checkov:skip=CKV_AWS_145:ALB access logs can only be written to buckets encrypted with SSE-S3 (AES256), not with a KMS key.
  #checkov:skip=CKV_AWS_18:This bucket holds access logs itself; logging its own accesses into another bucket would need that bucket's logs in turn.
  #checkov:skip=CKV_AWS_144:Access logs are kept 90 days for incident review in this region only; a second-region copy buys no recovery the service needs.
  #checkov:skip=CKV2_AWS_62:Nothing consumes the log objects as they arrive; they are read after the fact (Athena, downloads).
  bucket = "${local.name}-alb-logs-${data.aws_caller_identity.current.account_id}"
}

resource "aws_s3_bucket_public_access_block" "alb_logs" {
  bucket                  = aws_s3_bucket.alb_logs.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "alb_logs" {
  bucket = aws_s3_bucket.alb_logs.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_versioning" "alb_logs" {
  bucket = aws_s3_bucket.alb_logs.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "alb_logs" {
  bucket = aws_s3_bucket.alb_logs.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "alb_logs" {
  bucket = aws_s3_bucket.alb_logs.id
  rule {
    id     = "expire"
    status = "Enabled"
    filter {}
    expiration {
      days = 90
    }
    noncurrent_version_expiration {
      noncurrent_days = 7
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

# Elastic Load Balancing writes the logs: through the region's ELB account
# in regions older than August 2022 (ap-northeast-2 is one), through the
# log delivery service in newer ones.
data "aws_elb_service_account" "main" {}

data "aws_iam_policy_document" "alb_logs" {
  statement {
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.alb_logs.arn}/alb/AWSLogs/${data.aws_caller_identity.current.account_id}/*"]
    principals {
      type        = "AWS"
      identifiers = [data.aws_elb_service_account.main.arn]
    }
  }
  statement {
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.alb_logs.arn}/alb/AWSLogs/${data.aws_caller_identity.current.account_id}/*"]
    principals {
      type        = "Service"
      identifiers = ["logdelivery.elasticloadbalancing.amazonaws.com"]
    }
  }
  statement {
    sid     = "TLSOnly"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.alb_logs.arn,
      "${aws_s3_bucket.alb_logs.arn}/*",
    ]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "alb_logs" {
  bucket = aws_s3_bucket.alb_logs.id
  policy = data.aws_iam_policy_document.alb_logs.json
}
