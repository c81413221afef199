# Every store is encrypted at rest with the onsale key (kms.tf) and speaks
# TLS only; the services' connection settings match (services.tf, and the
# settings table in deploy/README.md).

# Redis Cluster: 3 shards (masters) with one replica each, like the devstack.
# Every event's keys share one hash tag, so many events spread over the shards.
locals {
  redis_shards            = 3
  redis_replicas_per_shard = 1
  # ElastiCache names a cluster-mode group's nodes <group>-<shard>-<node>,
  # e.g. onsale-prod-0002-001; the per-node alarms need the names before
  # the group exists.
  redis_nodes = [
    for pair in setproduct(range(1, local.redis_shards + 1), range(1, local.redis_replicas_per_shard + 2)) :
    format("%s-%04d-%03d", local.name, pair[0], pair[1])
  ]
}

resource "aws_elasticache_subnet_group" "redis" {
  name       = local.name
  subnet_ids = module.vpc.private_subnets
}

# The AUTH token of the default user: clients must present it on every
# connection (over TLS, so it never crosses the network in clear).
resource "random_password" "redis_auth" {
  length  = 64
  special = false
}

resource "aws_elasticache_replication_group" "redis" {
  replication_group_id       = local.name
  description                = "onsale waiting room"
  engine                     = "redis"
  engine_version             = "7.1"
  node_type                  = var.redis_node_type
  port                       = local.ports.redis
  num_node_groups            = local.redis_shards
  replicas_per_node_group    = local.redis_replicas_per_shard
  automatic_failover_enabled = true
  multi_az_enabled           = true
  parameter_group_name       = "default.redis7.cluster.on"
  subnet_group_name          = aws_elasticache_subnet_group.redis.name
  security_group_ids         = [aws_security_group.data.id]
  at_rest_encryption_enabled = true
  kms_key_id                 = aws_kms_key.onsale.arn
  # TLS only: queue-service connects with rediss:// and the token
  # (ONSALE__REDIS__URLS, a secret), verifying the nodes' Amazon-issued
  # certificates against the system trust store (ONSALE__REDIS__TLS__CA_FILE).
  transit_encryption_enabled = true
  auth_token                 = random_password.redis_auth.result
  auto_minor_version_upgrade = true
}

resource "aws_db_subnet_group" "postgres" {
  name       = local.name
  subnet_ids = module.vpc.private_subnets
}

locals {
  # Connections from every core-service task: core_tasks_max × pool size,
  # plus room for migrations and operators. The connections alarm fires at
  # 80 % of it.
  db_max_connections   = 500
  db_allocated_storage = 100 # GiB
}

resource "aws_db_parameter_group" "postgres" {
  name   = local.name
  family = "postgres15"
  parameter {
    name         = "max_connections"
    value        = tostring(local.db_max_connections)
    apply_method = "pending-reboot"
  }
  # Refuse every connection that is not TLS; core-service connects with
  # sslmode=verify-full against the RDS CA bundle
  # (ONSALE__DATABASE__TLS__MODE, ONSALE__DATABASE__TLS__CA_FILE).
  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }
  # Statements slower than a second are logged: the booking core's own
  # statements take milliseconds, and statement_timeout stops them at 3 s.
  parameter {
    name  = "log_min_duration_statement"
    value = "1000"
  }
  parameter {
    name  = "log_lock_waits"
    value = "1"
  }
}

# Enhanced monitoring (OS metrics every 60 s) publishes through this role.
data "aws_iam_policy_document" "rds_monitoring_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["monitoring.rds.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "rds_monitoring" {
  name               = "${local.name}-rds-monitoring"
  assume_role_policy = data.aws_iam_policy_document.rds_monitoring_assume.json
}

resource "aws_iam_role_policy_attachment" "rds_monitoring" {
  role       = aws_iam_role.rds_monitoring.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

# RDS creates the log groups of its exports unencrypted and kept forever
# unless they exist first.
resource "aws_cloudwatch_log_group" "postgres" {
  for_each          = toset(["postgresql", "upgrade"])
  name              = "/aws/rds/instance/${local.name}/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.onsale.arn
}

resource "aws_db_instance" "postgres" {
  identifier        = local.name
  engine            = "postgres"
  engine_version    = "15"
  instance_class    = var.db_instance_class
  allocated_storage = local.db_allocated_storage
  storage_type      = "gp3"
  storage_encrypted = true
  kms_key_id        = aws_kms_key.onsale.arn
  # The CA whose bundle is baked into the image (deploy/Dockerfile); the
  # services verify the server's certificate and host name against it.
  ca_cert_identifier     = "rds-ca-rsa2048-g1"
  multi_az               = true
  db_name                = "onsale_core"
  username               = "onsale"
  password               = random_password.db.result
  db_subnet_group_name   = aws_db_subnet_group.postgres.name
  parameter_group_name   = aws_db_parameter_group.postgres.name
  vpc_security_group_ids = [aws_security_group.data.id]
  # IAM authentication is allowed besides the password, so operators can
  # connect with short-lived tokens instead of the service's password.
  iam_database_authentication_enabled   = true
  auto_minor_version_upgrade            = true
  performance_insights_enabled          = true
  performance_insights_kms_key_id       = aws_kms_key.onsale.arn
  performance_insights_retention_period = 7
  monitoring_interval                   = 60
  monitoring_role_arn                   = aws_iam_role.rds_monitoring.arn
  enabled_cloudwatch_logs_exports       = keys(aws_cloudwatch_log_group.postgres)
  backup_retention_period               = 7
  copy_tags_to_snapshot                 = true
  deletion_protection                   = var.deletion_protection
  skip_final_snapshot                   = var.environment != "prod"
  final_snapshot_identifier             = "${local.name}-final"
}

resource "aws_cloudwatch_log_group" "kafka" {
  name              = "/onsale/${var.environment}/msk"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.onsale.arn
}

locals {
  # One broker per zone; MSK numbers them from 1 (the disk alarms name them).
  kafka_broker_count = 3
}

resource "aws_msk_cluster" "kafka" {
  cluster_name           = local.name
  kafka_version          = "3.7.x"
  number_of_broker_nodes = local.kafka_broker_count
  broker_node_group_info {
    instance_type   = var.kafka_instance_type
    client_subnets  = module.vpc.private_subnets
    security_groups = [aws_security_group.data.id]
    storage_info {
      ebs_storage_info {
        volume_size = 200
      }
    }
  }
  encryption_info {
    encryption_at_rest_kms_key_arn = aws_kms_key.onsale.arn
    encryption_in_transit {
      # TLS (9094) only: both services connect with security.protocol=SSL
      # (ONSALE__KAFKA__SECURITY_PROTOCOL) and verify the brokers'
      # Amazon-issued certificates against the system trust store.
      client_broker = "TLS"
      in_cluster    = true
    }
  }
  logging_info {
    broker_logs {
      cloudwatch_logs {
        enabled   = true
        log_group = aws_cloudwatch_log_group.kafka.name
      }
    }
  }
}
