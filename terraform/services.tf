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
  database_url = "postgres://onsale:${random_password.db.result}@${aws_db_instance.postgres.address}:5432/onsale_core"
  secrets = {
    database_url     = local.database_url
    queue_admin_key  = random_password.queue_admin_key.result
    core_admin_key   = random_password.core_admin_key.result
    token_secret     = random_password.token_secret.result
    grpc_service_key = random_password.grpc_service_key.result
  }
}

resource "aws_secretsmanager_secret" "onsale" {
  for_each = local.secrets
  name     = "${local.name}/${each.key}"
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
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

resource "aws_iam_role_policy" "secrets" {
  role = aws_iam_role.execution.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect   = "Allow"
      Action   = ["secretsmanager:GetSecretValue"]
      Resource = [for s in aws_secretsmanager_secret.onsale : s.arn]
    }]
  })
}

resource "aws_iam_role" "task" {
  name               = "${local.name}-task"
  assume_role_policy = data.aws_iam_policy_document.ecs_assume.json
}

resource "aws_cloudwatch_log_group" "services" {
  for_each          = toset(["queue-service", "core-service"])
  name              = "/onsale/${var.environment}/${each.key}"
  retention_in_days = 30
}

resource "aws_ecs_cluster" "onsale" {
  name = local.name
  setting {
    name  = "containerInsights"
    value = "enabled"
  }
  service_connect_defaults {
    namespace = aws_service_discovery_http_namespace.onsale.arn
  }
}

# Service Connect gives core-service a stable name for queue-service's gRPC
# port (queue-service:50051) with client-side load balancing across tasks.
resource "aws_service_discovery_http_namespace" "onsale" {
  name = local.name
}

locals {
  redis_urls = "redis://${aws_elasticache_replication_group.redis.configuration_endpoint_address}:6379"
  common_env = concat([
    { name = "ONSALE_ENVIRONMENT", value = "production" },
    { name = "ONSALE__REDIS__URLS", value = local.redis_urls },
    { name = "ONSALE__KAFKA__BROKERS", value = aws_msk_cluster.kafka.bootstrap_brokers },
  ], local.identity_env)
  services = {
    queue-service = {
      image   = var.queue_image
      port    = 8080
      tasks   = var.queue_tasks
      max     = var.queue_tasks_max
      command = []
      env = [
        { name = "ONSALE__QUEUE__HTTP_ADDR", value = "0.0.0.0:8080" },
        { name = "ONSALE__QUEUE__GRPC_ADDR", value = "0.0.0.0:50051" },
        # Behind the ALB the peer is the load balancer, which appends the
        # address it saw to X-Forwarded-For: anonymous clients are keyed on
        # that right-most entry (signed-in fans on their identity).
        { name = "ONSALE__QUEUE__RATE_LIMIT__TRUSTED_PROXY_HOPS", value = "1" },
      ]
      secrets = {
        ONSALE__QUEUE__ADMIN_KEY        = "queue_admin_key"
        ONSALE__QUEUE__TOKEN_SECRET     = "token_secret"
        ONSALE__QUEUE__GRPC_SERVICE_KEY = "grpc_service_key"
      }
    }
    core-service = {
      image   = var.core_image
      port    = 8081
      tasks   = var.core_tasks
      max     = var.core_tasks_max
      command = ["serve"]
      env = [
        { name = "ONSALE__CORE__HTTP_ADDR", value = "0.0.0.0:8081" },
        { name = "ONSALE__CORE__QUEUE_GRPC_URL", value = "http://queue-service:50051" },
        { name = "ONSALE__CORE__RATE_LIMIT__TRUSTED_PROXY_HOPS", value = "1" },
      ]
      secrets = {
        ONSALE__CORE__ADMIN_KEY         = "core_admin_key"
        ONSALE__CORE__QUEUE_SERVICE_KEY = "grpc_service_key"
        ONSALE__DATABASE__URL           = "database_url"
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
  container_definitions = jsonencode([{
    name      = each.key
    image     = each.value.image
    essential = true
    command   = each.value.command
    # Both services drain on SIGTERM within 10–20 s (deploy/README.md).
    stopTimeout = 30
    portMappings = concat(
      [{ name = "http", containerPort = each.value.port, protocol = "tcp" }],
      each.key == "queue-service" ? [{ name = "grpc", containerPort = 50051, protocol = "tcp", appProtocol = "grpc" }] : [],
    )
    environment = concat(local.common_env, each.value.env)
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
  }])
}

# Migrations: a one-off task of the core-service image, run before each
# deployment (`aws ecs run-task … --overrides` with command ["migrate"]).
resource "aws_ecs_task_definition" "migrate" {
  family                   = "${local.name}-core-migrate"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 256
  memory                   = 512
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn
  container_definitions = jsonencode([{
    name        = "core-migrate"
    image       = var.core_image
    essential   = true
    command     = ["migrate"]
    environment = local.common_env
    secrets = [{
      name      = "ONSALE__DATABASE__URL"
      valueFrom = aws_secretsmanager_secret.onsale["database_url"].arn
    }, {
      name      = "ONSALE__CORE__ADMIN_KEY"
      valueFrom = aws_secretsmanager_secret.onsale["core_admin_key"].arn
    }, {
      # `migrate` loads and validates the same settings as `serve`.
      name      = "ONSALE__CORE__QUEUE_SERVICE_KEY"
      valueFrom = aws_secretsmanager_secret.onsale["grpc_service_key"].arn
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

resource "aws_lb" "public" {
  name               = local.name
  load_balancer_type = "application"
  subnets            = module.vpc.public_subnets
  security_groups    = [aws_security_group.alb.id]
}

resource "aws_lb_target_group" "service" {
  for_each    = local.services
  name        = "${local.name}-${each.key == "queue-service" ? "queue" : "core"}"
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
  certificate_arn   = var.certificate_arn
  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.service["core-service"].arn
  }
}

# The waiting room's public routes; everything else goes to core-service.
# Admin routes are not exposed publicly (reach them through the VPC).
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

resource "aws_lb_listener_rule" "no_admin" {
  listener_arn = aws_lb_listener.https.arn
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

resource "aws_ecs_service" "service" {
  for_each        = local.services
  name            = each.key
  cluster         = aws_ecs_cluster.onsale.id
  task_definition = aws_ecs_task_definition.service[each.key].arn
  desired_count   = each.value.tasks
  launch_type     = "FARGATE"
  network_configuration {
    subnets         = module.vpc.private_subnets
    security_groups = [aws_security_group.services.id]
  }
  load_balancer {
    target_group_arn = aws_lb_target_group.service[each.key].arn
    container_name   = each.key
    container_port   = each.value.port
  }
  service_connect_configuration {
    enabled = true
    dynamic "service" {
      for_each = each.key == "queue-service" ? [1] : []
      content {
        port_name = "grpc"
        client_alias {
          dns_name = "queue-service"
          port     = 50051
        }
      }
    }
  }
  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }
  lifecycle {
    ignore_changes = [desired_count]
  }
}

resource "aws_appautoscaling_target" "service" {
  for_each           = local.services
  service_namespace  = "ecs"
  resource_id        = "service/${aws_ecs_cluster.onsale.name}/${aws_ecs_service.service[each.key].name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = each.value.tasks
  max_capacity       = each.value.max
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
