output "public_url" {
  description = "The load balancer's DNS name (point the API gateway or DNS here)."
  value       = aws_lb.public.dns_name
}

output "redis_configuration_endpoint" {
  description = "ElastiCache cluster-mode configuration endpoint."
  value       = aws_elasticache_replication_group.redis.configuration_endpoint_address
}

output "kafka_bootstrap_brokers" {
  description = "MSK plaintext bootstrap brokers (in-VPC)."
  value       = aws_msk_cluster.kafka.bootstrap_brokers
}

output "migrate_task_definition" {
  description = "Run this task (command migrate) before each deployment."
  value       = aws_ecs_task_definition.migrate.arn
}
