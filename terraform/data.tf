# Redis Cluster: 3 shards (masters) with one replica each, like the devstack.
# Every event's keys share one hash tag, so many events spread over the shards.
resource "aws_elasticache_subnet_group" "redis" {
  name       = local.name
  subnet_ids = module.vpc.private_subnets
}

resource "aws_elasticache_replication_group" "redis" {
  replication_group_id       = local.name
  description                = "onsale waiting room"
  engine                     = "redis"
  engine_version             = "7.1"
  node_type                  = var.redis_node_type
  num_node_groups            = 3
  replicas_per_node_group    = 1
  automatic_failover_enabled = true
  multi_az_enabled           = true
  parameter_group_name       = "default.redis7.cluster.on"
  subnet_group_name          = aws_elasticache_subnet_group.redis.name
  security_group_ids         = [aws_security_group.data.id]
  at_rest_encryption_enabled = true
  # The services' redis client is built without TLS today (README of this
  # folder); traffic stays inside the private subnets.
  transit_encryption_enabled = false
}

resource "aws_db_subnet_group" "postgres" {
  name       = local.name
  subnet_ids = module.vpc.private_subnets
}

resource "aws_db_parameter_group" "postgres" {
  name   = local.name
  family = "postgres15"
  # Connections from every core-service task: core_tasks_max × pool size,
  # plus room for migrations and operators.
  parameter {
    name         = "max_connections"
    value        = "500"
    apply_method = "pending-reboot"
  }
}

resource "aws_db_instance" "postgres" {
  identifier                  = local.name
  engine                      = "postgres"
  engine_version              = "15"
  instance_class              = var.db_instance_class
  allocated_storage           = 100
  storage_type                = "gp3"
  storage_encrypted           = true
  multi_az                    = true
  db_name                     = "onsale_core"
  username                    = "onsale"
  password                    = random_password.db.result
  db_subnet_group_name        = aws_db_subnet_group.postgres.name
  parameter_group_name        = aws_db_parameter_group.postgres.name
  vpc_security_group_ids      = [aws_security_group.data.id]
  backup_retention_period     = 7
  deletion_protection         = var.environment == "prod"
  skip_final_snapshot         = var.environment != "prod"
  final_snapshot_identifier   = "${local.name}-final"
}

resource "aws_msk_cluster" "kafka" {
  cluster_name           = local.name
  kafka_version          = "3.7.x"
  number_of_broker_nodes = 3
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
    encryption_in_transit {
      # Plaintext (9092) is allowed inside the VPC because the services'
      # rdkafka is built without TLS today; TLS (9094) is offered too.
      client_broker = "TLS_PLAINTEXT"
      in_cluster    = true
    }
  }
}
