# The services' own metrics in CloudWatch, for the alarms that AWS's
# metrics cannot express (outbox age, dead letters; alarms.tf).
#
# Both services already expose Prometheus metrics at /metrics. An AWS
# Distro for OpenTelemetry (ADOT) collector runs beside each service in its
# task, scrapes that endpoint over the task's loopback and writes the
# selected series as CloudWatch embedded metric format (EMF) logs, which
# CloudWatch turns into metrics. Chosen over emitting EMF from the services:
# the services keep one metrics path (the same /metrics the local stack and
# deploy/prometheus/alerts.yml use), no Rust code changes, and the metric
# names stay the services' own. Chosen over the CloudWatch agent: the same
# collector can also receive the services' OTLP traces
# (ONSALE__TELEMETRY__OTLP_ENDPOINT) when tracing is wanted.

locals {
  metrics_namespace = "onsale/${var.environment}"
  # Only what the alarms need is published (CloudWatch bills per metric):
  # the outbox gauges of core-service, and records dead-lettered by either
  # service's consumers. The patterns are left open at the end because the
  # collector would read a "$" as the start of an environment variable.
  metric_declarations = [
    {
      dimensions            = [["service"]]
      metric_name_selectors = ["^outbox_oldest_age_seconds", "^outbox_pending"]
    },
    {
      dimensions            = [["service", "outcome"]]
      metric_name_selectors = ["^events_consumed_total"]
      label_matchers = [{
        label_names = ["outcome"]
        regex       = "^dead_lettered"
      }]
    },
  ]
  collector_config = {
    for name, service in local.services : name => {
      receivers = {
        prometheus = {
          # Names are kept as the services expose them (counters keep
          # their _total), so the alarms name the series alerts.yml does.
          trim_metric_suffixes = false
          config = {
            scrape_configs = [{
              job_name        = name
              scrape_interval = "15s"
              metrics_path    = "/metrics"
              static_configs = [{
                targets = ["127.0.0.1:${service.port}"]
                labels  = { service = name }
              }]
            }]
          }
        }
      }
      processors = {
        batch = { timeout = "30s" }
      }
      exporters = {
        awsemf = {
          namespace               = local.metrics_namespace
          log_group_name          = aws_cloudwatch_log_group.metrics.name
          log_stream_name         = name
          region                  = var.region
          dimension_rollup_option = "NoDimensionRollup"
          metric_declarations     = local.metric_declarations
        }
      }
      service = {
        pipelines = {
          metrics = {
            receivers  = ["prometheus"]
            processors = ["batch"]
            exporters  = ["awsemf"]
          }
        }
      }
    }
  }
  metrics_sidecar = {
    for name, service in local.services : name => {
      name  = "metrics-collector"
      image = var.adot_image
      # A collector failure must not stop the service; its silence trips
      # the outbox alarm instead (treat_missing_data = breaching).
      essential              = false
      readonlyRootFilesystem = true
      cpu                    = 128
      memory                 = 256
      environment = [{
        name  = "AOT_CONFIG_CONTENT"
        value = yamlencode(local.collector_config[name])
      }]
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.services[name].name
          awslogs-region        = var.region
          awslogs-stream-prefix = "metrics-collector"
        }
      }
    }
  }
}

resource "aws_cloudwatch_log_group" "metrics" {
  name = "/onsale/${var.environment}/metrics"
  # The metrics live on in CloudWatch (15 months); the EMF log lines are
  # only their carrier.
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.onsale.arn
}

data "aws_iam_policy_document" "metrics" {
  statement {
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    resources = ["${aws_cloudwatch_log_group.metrics.arn}:*"]
  }
}

resource "aws_iam_role_policy" "metrics" {
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.metrics.json
}

# Where every alarm goes: an encrypted topic with an email subscription.
resource "aws_sns_topic" "alarms" {
  name              = "${local.name}-alarms"
  kms_master_key_id = aws_kms_key.onsale.arn
}

data "aws_iam_policy_document" "alarms_topic" {
  statement {
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alarms.arn]
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_sns_topic_policy" "alarms" {
  arn    = aws_sns_topic.alarms.arn
  policy = data.aws_iam_policy_document.alarms_topic.json
}

resource "aws_sns_topic_subscription" "alarms_email" {
  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}
