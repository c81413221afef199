# CloudWatch alarms, all sent to the alarm topic (observability.tf).
# terraform/README.md ("Alarms") says where each threshold comes from.

locals {
  alarm_threshold = {
    # The latency fans should see at p95 in production.
    alb_p95_seconds = 0.2
    # Only 5xx is an outage: 409s are the sale saying no, 429s its limits.
    alb_5xx_percent = 1
    # Scaling aims at 60 % CPU (services.tf): 75 % means it is not keeping
    # up, or the service is at its task limit.
    ecs_cpu_percent    = 75
    ecs_memory_percent = 80
    # Redis runs its commands on one thread: its CPU saturates first.
    redis_engine_cpu_percent = 75
    redis_memory_percent     = 80
    db_cpu_percent           = 80
    # A tenth of the allocated storage left.
    db_free_storage_bytes = local.db_allocated_storage * 1024 * 1024 * 1024 / 10
    # 80 % of max_connections: the pools are near the server's limit.
    db_connections     = local.db_max_connections * 80 / 100
    kafka_disk_percent = 80
    # Events older than a minute are not leaving for Kafka.
    outbox_age_seconds = 60
  }
  alarm_actions = [aws_sns_topic.alarms.arn]
  # The alarms that stop and roll back a deployment of either service:
  # fans' requests failing or slowing while new tasks take traffic.
  rollback_alarms = [
    aws_cloudwatch_metric_alarm.alb_5xx.alarm_name,
    aws_cloudwatch_metric_alarm.alb_p95.alarm_name,
  ]
  alb_dimensions = { LoadBalancer = aws_lb.public.arn_suffix }
  kafka_brokers  = [for id in range(1, local.kafka_broker_count + 1) : tostring(id)]
}

# The load balancer, over both services.
resource "aws_cloudwatch_metric_alarm" "alb_p95" {
  alarm_name          = "${local.name}-alb-p95-latency"
  alarm_description   = "p95 target response time above ${local.alarm_threshold.alb_p95_seconds * 1000} ms for 3 minutes."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "TargetResponseTime"
  dimensions          = local.alb_dimensions
  extended_statistic  = "p95"
  period              = 60
  evaluation_periods  = 3
  threshold           = local.alarm_threshold.alb_p95_seconds
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "alb_5xx" {
  alarm_name          = "${local.name}-alb-5xx-rate"
  alarm_description   = "5xx responses (the services' and the load balancer's own) above ${local.alarm_threshold.alb_5xx_percent} % of requests for a minute; rolls a deployment back. 409s and 429s are not counted: selling out and shedding are the sale working."
  evaluation_periods  = 1
  threshold           = local.alarm_threshold.alb_5xx_percent
  comparison_operator = "GreaterThanThreshold"
  # No requests, no rate.
  treat_missing_data = "notBreaching"
  alarm_actions      = local.alarm_actions
  ok_actions         = local.alarm_actions
  metric_query {
    id          = "rate"
    label       = "5xx, % of requests"
    return_data = true
    # A minute without 5xx publishes no 5xx data point, hence FILL.
    expression = "100 * (FILL(target_5xx, 0) + FILL(elb_5xx, 0)) / requests"
  }
  metric_query {
    id = "target_5xx"
    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "HTTPCode_Target_5XX_Count"
      dimensions  = local.alb_dimensions
      period      = 60
      stat        = "Sum"
    }
  }
  metric_query {
    id = "elb_5xx"
    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "HTTPCode_ELB_5XX_Count"
      dimensions  = local.alb_dimensions
      period      = 60
      stat        = "Sum"
    }
  }
  metric_query {
    id = "requests"
    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "RequestCount"
      dimensions  = local.alb_dimensions
      period      = 60
      stat        = "Sum"
    }
  }
}

# ECS, per service.
resource "aws_cloudwatch_metric_alarm" "ecs_cpu" {
  for_each            = local.services
  alarm_name          = "${local.name}-${each.key}-cpu"
  alarm_description   = "${each.key}: average CPU above ${local.alarm_threshold.ecs_cpu_percent} % for 3 minutes although autoscaling aims at 60 % (at its task limit, or scaling too slowly)."
  namespace           = "AWS/ECS"
  metric_name         = "CPUUtilization"
  dimensions          = { ClusterName = aws_ecs_cluster.onsale.name, ServiceName = each.key }
  statistic           = "Average"
  period              = 60
  evaluation_periods  = 3
  threshold           = local.alarm_threshold.ecs_cpu_percent
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "ecs_memory" {
  for_each            = local.services
  alarm_name          = "${local.name}-${each.key}-memory"
  alarm_description   = "${each.key}: average memory above ${local.alarm_threshold.ecs_memory_percent} % of the task's for 3 minutes."
  namespace           = "AWS/ECS"
  metric_name         = "MemoryUtilization"
  dimensions          = { ClusterName = aws_ecs_cluster.onsale.name, ServiceName = each.key }
  statistic           = "Average"
  period              = 60
  evaluation_periods  = 3
  threshold           = local.alarm_threshold.ecs_memory_percent
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# ElastiCache, per node: one event's keys live on one shard, so one hot
# node is the failure to see, not the average.
resource "aws_cloudwatch_metric_alarm" "redis_engine_cpu" {
  for_each            = toset(local.redis_nodes)
  alarm_name          = "${each.key}-engine-cpu"
  alarm_description   = "Redis node ${each.key}: engine thread CPU above ${local.alarm_threshold.redis_engine_cpu_percent} % for 3 minutes."
  namespace           = "AWS/ElastiCache"
  metric_name         = "EngineCPUUtilization"
  dimensions          = { CacheClusterId = each.key }
  statistic           = "Average"
  period              = 60
  evaluation_periods  = 3
  threshold           = local.alarm_threshold.redis_engine_cpu_percent
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "redis_memory" {
  for_each            = toset(local.redis_nodes)
  alarm_name          = "${each.key}-memory"
  alarm_description   = "Redis node ${each.key}: more than ${local.alarm_threshold.redis_memory_percent} % of its memory used (DatabaseMemoryUsagePercentage) for 3 minutes."
  namespace           = "AWS/ElastiCache"
  metric_name         = "DatabaseMemoryUsagePercentage"
  dimensions          = { CacheClusterId = each.key }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 3
  threshold           = local.alarm_threshold.redis_memory_percent
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# RDS.
resource "aws_cloudwatch_metric_alarm" "db_cpu" {
  alarm_name          = "${local.name}-db-cpu"
  alarm_description   = "Postgres: CPU above ${local.alarm_threshold.db_cpu_percent} % for 5 minutes."
  namespace           = "AWS/RDS"
  metric_name         = "CPUUtilization"
  dimensions          = { DBInstanceIdentifier = aws_db_instance.postgres.identifier }
  statistic           = "Average"
  period              = 60
  evaluation_periods  = 5
  threshold           = local.alarm_threshold.db_cpu_percent
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "db_free_storage" {
  alarm_name          = "${local.name}-db-free-storage"
  alarm_description   = "Postgres: less than a tenth of its ${local.db_allocated_storage} GiB free."
  namespace           = "AWS/RDS"
  metric_name         = "FreeStorageSpace"
  dimensions          = { DBInstanceIdentifier = aws_db_instance.postgres.identifier }
  statistic           = "Minimum"
  period              = 300
  evaluation_periods  = 1
  threshold           = local.alarm_threshold.db_free_storage_bytes
  comparison_operator = "LessThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "db_connections" {
  alarm_name          = "${local.name}-db-connections"
  alarm_description   = "Postgres: more than ${local.alarm_threshold.db_connections} connections (80 % of max_connections ${local.db_max_connections}) for 3 minutes: the pools are near the server's limit."
  namespace           = "AWS/RDS"
  metric_name         = "DatabaseConnections"
  dimensions          = { DBInstanceIdentifier = aws_db_instance.postgres.identifier }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 3
  threshold           = local.alarm_threshold.db_connections
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# MSK, per broker.
resource "aws_cloudwatch_metric_alarm" "kafka_disk" {
  for_each            = toset(local.kafka_brokers)
  alarm_name          = "${local.name}-kafka-broker-${each.key}-disk"
  alarm_description   = "Kafka broker ${each.key}: data log volume more than ${local.alarm_threshold.kafka_disk_percent} % used."
  namespace           = "AWS/Kafka"
  metric_name         = "KafkaDataLogsDiskUsed"
  dimensions          = { "Cluster Name" = aws_msk_cluster.kafka.cluster_name, "Broker ID" = each.key }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = local.alarm_threshold.kafka_disk_percent
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# The services' own metrics, carried by the collector (observability.tf).
resource "aws_cloudwatch_metric_alarm" "outbox_age" {
  alarm_name          = "${local.name}-outbox-age"
  alarm_description   = "core-service: the oldest unpublished outbox event is older than ${local.alarm_threshold.outbox_age_seconds} s for 2 minutes; payments succeed but their events are not reaching Kafka (alerts.yml OutboxBacklogAging)."
  namespace           = local.metrics_namespace
  metric_name         = "outbox_oldest_age_seconds"
  dimensions          = { service = "core-service" }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 2
  threshold           = local.alarm_threshold.outbox_age_seconds
  comparison_operator = "GreaterThanThreshold"
  # Every core-service task samples the outbox every few seconds, so no
  # data means the metrics stopped arriving: that is itself a fault.
  treat_missing_data = "breaching"
  alarm_actions      = local.alarm_actions
  ok_actions         = local.alarm_actions
}

# Dead letters are counted as they are written (the services expose no
# gauge of a dead-letter topic's depth): any record dead-lettered in ten
# minutes means the dead-letter topic grew and needs `dlq list`.
resource "aws_cloudwatch_metric_alarm" "dead_letters" {
  for_each            = local.services
  alarm_name          = "${local.name}-${each.key}-dead-letters"
  alarm_description   = "${each.key}: records dead-lettered in the last 10 minutes; inspect with `${each.key} dlq list` (alerts.yml DeadLetters)."
  namespace           = local.metrics_namespace
  metric_name         = "events_consumed_total"
  dimensions          = { service = each.key, outcome = "dead_lettered" }
  statistic           = "Sum"
  period              = 600
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}
