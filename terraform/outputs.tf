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

output "identity_issuer" {
  description = "OIDC issuer of fans' identity tokens (the Cognito user pool), as both services are configured with (ONSALE__IDENTITY__ISSUER)."
  value       = local.identity_issuer
}

output "identity_jwks_url" {
  description = "JWK Set of the user pool (ONSALE__IDENTITY__JWKS_URL)."
  value       = local.identity_jwks_url
}

output "identity_audience" {
  description = "Audience of fans' ID tokens: the app client id (ONSALE__IDENTITY__AUDIENCE); the fans' app signs in with it."
  value       = local.identity_audience
}

output "user_pool_id" {
  description = "The fans' Cognito user pool."
  value       = aws_cognito_user_pool.fans.id
}
