# Secrets: the services refuse to start in production without them.
resource "random_password" "db" {
  length  = 32
  special = false
}

resource "random_password" "queue_admin_key" {
  length  = 32
  special = false
}

resource "random_password" "core_admin_key" {
  length  = 32
  special = false
}

resource "random_password" "token_secret" {
  length  = 48
  special = false
}

# The credential core-service presents on gRPC to queue-service: one value,
# read by queue-service as queue.grpc_service_key and by core-service as
# core.queue_service_key.
resource "random_password" "grpc_service_key" {
  length  = 48
  special = false
}

locals {
  # The password and the Redis AUTH token travel inside the URLs the
  # services read, so both URLs are secrets, never plain environment
  # values. TLS itself is set by the TLS settings below (the URL's
  # rediss:// scheme for Redis).
  database_url = "postgres://onsale:${random_password.db.result}@${aws_db_instance.postgres.address}:${local.ports.postgres}/onsale_core"
  redis_url    = "rediss://:${random_password.redis_auth.result}@${aws_elasticache_replication_group.redis.configuration_endpoint_address}:${local.ports.redis}"
  secrets = {
    database_url     = local.database_url
    redis_url        = local.redis_url
    queue_admin_key  = random_password.queue_admin_key.result
    core_admin_key   = random_password.core_admin_key.result
    token_secret     = random_password.token_secret.result
    grpc_service_key = random_password.grpc_service_key.result
  }
}

resource "aws_secretsmanager_secret" "onsale" {
  #checkov:skip=CKV2_AWS_57:No rotation Lambda exists for these values: rotating token_secret signs out every waiting fan, the service key must change in both services at once, and the database and Redis URLs must change with the password or token they carry; rotate them by a planned terraform apply and redeploy (terraform/README.md).
  for_each   = local.secrets
  name       = "${local.name}/${each.key}"
  kms_key_id = aws_kms_key.onsale.arn
}

resource "aws_secretsmanager_secret_version" "onsale" {
  for_each      = local.secrets
  secret_id     = aws_secretsmanager_secret.onsale[each.key].id
  secret_string = each.value
}

# Roles: the execution role pulls images and reads the secrets.
data "aws_iam_policy_document" "ecs_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "execution" {
  name               = "${local.name}-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_assume.json
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

data "aws_iam_policy_document" "secrets" {
  statement {
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [for s in aws_secretsmanager_secret.onsale : s.arn]
  }
  # The secrets are encrypted with the onsale key.
  statement {
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.onsale.arn]
  }
}

resource "aws_iam_role_policy" "secrets" {
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.secrets.json
}

# The task role: what the containers themselves may do. The services call
# no AWS API; the metrics collector beside them writes to its log group
# (observability.tf).
resource "aws_iam_role" "task" {
  name               = "${local.name}-task"
  assume_role_policy = data.aws_iam_policy_document.ecs_assume.json
}

resource "aws_cloudwatch_log_group" "services" {
  for_each          = toset(["queue-service", "core-service"])
  name              = "/onsale/${var.environment}/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.onsale.arn
}

resource "aws_cloudwatch_log_group" "ecs_exec" {
  name              = "/onsale/${var.environment}/ecs-exec"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.onsale.arn
}

resource "aws_ecs_cluster" "onsale" {
  name = local.name
  setting {
    name  = "containerInsights"
    value = "enabled"
  }
  # `ecs execute-command` sessions are encrypted with the onsale key and
  # logged.
  configuration {
    execute_command_configuration {
      kms_key_id = aws_kms_key.onsale.arn
      logging    = "OVERRIDE"
      log_configuration {
        cloud_watch_encryption_enabled = true
        cloud_watch_log_group_name     = aws_cloudwatch_log_group.ecs_exec.name
      }
    }
  }
}

# queue-service's gRPC port by name (queue-service.<namespace>:50051), one
# DNS A record per healthy task. Service Connect would balance per request,
# but ECS refuses it on services deployed by CodeDeploy (core-service is
# one, deployment.tf), so the services meet through Cloud Map DNS.
resource "aws_service_discovery_private_dns_namespace" "onsale" {
  name = "${local.name}.internal"
  vpc  = module.vpc.vpc_id
}

resource "aws_service_discovery_service" "queue_grpc" {
  name = "queue-service"
  dns_config {
    namespace_id   = aws_service_discovery_private_dns_namespace.onsale.id
    routing_policy = "MULTIVALUE"
    dns_records {
      type = "A"
      # Short, so a replaced task drops out of answers within seconds.
      ttl = 10
    }
  }
  health_check_custom_config {
    failure_threshold = 1
  }
}

locals {
  # The image's system trust store (Debian's ca-certificates), which holds
  # the Amazon roots that ElastiCache's and MSK's certificates chain to.
  system_ca_file = "/etc/ssl/certs/ca-certificates.crt"
  # Amazon RDS's CA bundle, added to the image by deploy/Dockerfile.
  rds_ca_file = "/usr/local/share/onsale/rds-global-bundle.pem"

  # Environment of both services (and of the migration task). The names are
  # the services' settings (deploy/README.md, "Settings in production");
  # crates/devstack/tests/terraform.rs checks that each service gets every
  # setting it needs.
  common_env = {
    ONSALE_ENVIRONMENT = "production"
    # Both services use Kafka: the outbox relay and the expiry consumer in
    # core-service, the payment.completed consumer in queue-service.
    ONSALE__KAFKA__BROKERS           = aws_msk_cluster.kafka.bootstrap_brokers_tls
    ONSALE__KAFKA__SECURITY_PROTOCOL = "SSL"
    ONSALE__KAFKA__SSL_CA_FILE       = local.system_ca_file
    ONSALE__IDENTITY__ISSUER         = local.identity_issuer
    ONSALE__IDENTITY__JWKS_URL       = local.identity_jwks_url
    ONSALE__IDENTITY__AUDIENCE       = local.identity_audience
  }
  services = {
    queue-service = {
      image      = var.queue_image
      port       = local.ports.queue_http
      tasks      = var.queue_tasks
      max        = var.queue_tasks_max
      command    = []
      deployment = "rolling"
      env = {
        ONSALE__QUEUE__HTTP_ADDR = "0.0.0.0:${local.ports.queue_http}"
        ONSALE__QUEUE__GRPC_ADDR = "0.0.0.0:${local.ports.grpc}"
        # Behind the ALB the peer is the load balancer, which appends the
        # address it saw to X-Forwarded-For: anonymous clients are keyed on
        # that right-most entry (signed-in fans on their identity).
        ONSALE__QUEUE__RATE_LIMIT__TRUSTED_PROXY_HOPS = "1"
        ONSALE__REDIS__TLS__CA_FILE                   = local.system_ca_file
      }
      # Setting name => key of local.secrets.
      secrets = {
        ONSALE__REDIS__URLS             = "redis_url"
        ONSALE__QUEUE__ADMIN_KEY        = "queue_admin_key"
        ONSALE__QUEUE__TOKEN_SECRET     = "token_secret"
        ONSALE__QUEUE__GRPC_SERVICE_KEY = "grpc_service_key"
      }
    }
    core-service = {
      image      = var.core_image
      port       = local.ports.core_http
      tasks      = var.core_tasks
      max        = var.core_tasks_max
      command    = ["serve"]
      deployment = "blue_green"
      env = {
        ONSALE__CORE__HTTP_ADDR                      = "0.0.0.0:${local.ports.core_http}"
        ONSALE__CORE__QUEUE_GRPC_URL                 = "http://${aws_service_discovery_service.queue_grpc.name}.${aws_service_discovery_private_dns_namespace.onsale.name}:${local.ports.grpc}"
        ONSALE__CORE__RATE_LIMIT__TRUSTED_PROXY_HOPS = "1"
        ONSALE__DATABASE__TLS__MODE                  = "verify-full"
        ONSALE__DATABASE__TLS__CA_FILE               = local.rds_ca_file
        # Coupon claims and the concert ranking share the waiting room's
        # ElastiCache cluster (their keys carry their own hash tags).
        ONSALE__REDIS__TLS__CA_FILE = local.system_ca_file
      }
      secrets = {
        ONSALE__DATABASE__URL           = "database_url"
        ONSALE__REDIS__URLS             = "redis_url"
        ONSALE__CORE__ADMIN_KEY         = "core_admin_key"
        ONSALE__CORE__QUEUE_SERVICE_KEY = "grpc_service_key"
      }
    }
  }
}

resource "aws_ecs_task_definition" "service" {
  for_each                 = local.services
  family                   = "${local.name}-${each.key}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 1024
  memory                   = 2048
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn
  # Old revisions stay registered, so CodeDeploy and the circuit breaker
  # can roll back to them after terraform registers a new one.
  skip_destroy = true
  container_definitions = jsonencode([
    {
      name      = each.key
      image     = each.value.image
      essential = true
      command   = each.value.command
      # The services write nothing to disk.
      readonlyRootFilesystem = true
      # Both services drain on SIGTERM within 10–20 s (deploy/README.md).
      stopTimeout = 30
      portMappings = concat(
        [{ name = "http", containerPort = each.value.port, protocol = "tcp" }],
        each.key == "queue-service" ? [{ name = "grpc", containerPort = local.ports.grpc, protocol = "tcp", appProtocol = "grpc" }] : [],
      )
      environment = [for name, value in merge(local.common_env, each.value.env) : { name = name, value = value }]
      secrets = [for name, key in each.value.secrets : {
        name      = name
        valueFrom = aws_secretsmanager_secret.onsale[key].arn
      }]
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.services[each.key].name
          awslogs-region        = var.region
          awslogs-stream-prefix = each.key
        }
      }
    },
    local.metrics_sidecar[each.key],
  ])
}

# Migrations: a one-off task of the core-service image, run before each
# deployment (`aws ecs run-task`). `migrate` loads and validates the same
# settings as `serve`, so it gets core-service's environment and secrets.
resource "aws_ecs_task_definition" "migrate" {
  family                   = "${local.name}-core-migrate"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 256
  memory                   = 512
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn
  skip_destroy             = true
  container_definitions = jsonencode([{
    name                   = "core-migrate"
    image                  = var.core_image
    essential              = true
    command                = ["migrate"]
    readonlyRootFilesystem = true
    environment            = [for name, value in merge(local.common_env, local.services["core-service"].env) : { name = name, value = value }]
    secrets = [for name, key in local.services["core-service"].secrets : {
      name      = name
      valueFrom = aws_secretsmanager_secret.onsale[key].arn
    }]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.services["core-service"].name
        awslogs-region        = var.region
        awslogs-stream-prefix = "migrate"
      }
    }
  }])
}

# queue-service: rolling deployments, stopped and rolled back by the
# circuit breaker when new tasks do not become healthy, and by the
# rollback alarms (alarms.tf) when they serve errors or slowly.
resource "aws_ecs_service" "rolling" {
  for_each         = { for name, service in local.services : name => service if service.deployment == "rolling" }
  name             = each.key
  cluster          = aws_ecs_cluster.onsale.id
  task_definition  = aws_ecs_task_definition.service[each.key].arn
  desired_count    = each.value.tasks
  launch_type      = "FARGATE"
  platform_version = "LATEST"
  network_configuration {
    subnets          = module.vpc.private_subnets
    security_groups  = [aws_security_group.services.id]
    assign_public_ip = false
  }
  load_balancer {
    target_group_arn = aws_lb_target_group.service[each.key].arn
    container_name   = each.key
    container_port   = each.value.port
  }
  dynamic "service_registries" {
    for_each = each.key == "queue-service" ? [aws_service_discovery_service.queue_grpc.arn] : []
    content {
      registry_arn = service_registries.value
    }
  }
  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }
  alarms {
    enable      = true
    rollback    = true
    alarm_names = local.rollback_alarms
  }
  lifecycle {
    ignore_changes = [desired_count]
  }
}

# core-service: blue/green through CodeDeploy (deployment.tf), which owns
# its task set, task definition and target group from then on. ECS allows
# no circuit breaker here; CodeDeploy rolls back a failed deployment and
# one that trips the rollback alarms instead.
resource "aws_ecs_service" "blue_green" {
  for_each         = { for name, service in local.services : name => service if service.deployment == "blue_green" }
  name             = each.key
  cluster          = aws_ecs_cluster.onsale.id
  task_definition  = aws_ecs_task_definition.service[each.key].arn
  desired_count    = each.value.tasks
  launch_type      = "FARGATE"
  platform_version = "LATEST"
  deployment_controller {
    type = "CODE_DEPLOY"
  }
  network_configuration {
    subnets          = module.vpc.private_subnets
    security_groups  = [aws_security_group.services.id]
    assign_public_ip = false
  }
  load_balancer {
    target_group_arn = aws_lb_target_group.service["${each.key}-blue"].arn
    container_name   = each.key
    container_port   = each.value.port
  }
  lifecycle {
    # A new task definition reaches this service through `aws deploy
    # create-deployment` (deploy/README.md), never through terraform.
    ignore_changes = [desired_count, task_definition, load_balancer]
  }
}

resource "aws_appautoscaling_target" "service" {
  for_each           = local.services
  service_namespace  = "ecs"
  resource_id        = "service/${aws_ecs_cluster.onsale.name}/${each.key}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = each.value.tasks
  max_capacity       = each.value.max
  depends_on         = [aws_ecs_service.rolling, aws_ecs_service.blue_green]
}

resource "aws_appautoscaling_policy" "cpu" {
  for_each           = local.services
  name               = "${each.key}-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.service[each.key].service_namespace
  resource_id        = aws_appautoscaling_target.service[each.key].resource_id
  scalable_dimension = aws_appautoscaling_target.service[each.key].scalable_dimension
  target_tracking_scaling_policy_configuration {
    target_value = 60
    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
    scale_out_cooldown = 30
    scale_in_cooldown  = 300
  }
}
