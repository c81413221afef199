output "public_url" {
  description = "The load balancer's DNS name (point the API gateway or DNS here)."
  value       = aws_lb.public.dns_name
}

output "redis_configuration_endpoint" {
  description = "ElastiCache cluster-mode configuration endpoint (TLS and AUTH; the full URL with the token is the redis_url secret)."
  value       = aws_elasticache_replication_group.redis.configuration_endpoint_address
}

output "kafka_bootstrap_brokers" {
  description = "MSK TLS bootstrap brokers (in-VPC, port 9094)."
  value       = aws_msk_cluster.kafka.bootstrap_brokers_tls
}

output "migrate_task_definition" {
  description = "Run this task (command migrate) before each deployment."
  value       = aws_ecs_task_definition.migrate.arn
}

output "core_service_appspec" {
  description = "CodeDeploy AppSpec that deploys the core-service task definition terraform registered last (aws deploy create-deployment, deploy/README.md)."
  value = jsonencode({
    version = "0.0"
    Resources = [{
      TargetService = {
        Type = "AWS::ECS::Service"
        Properties = {
          TaskDefinition = aws_ecs_task_definition.service["core-service"].arn
          LoadBalancerInfo = {
            ContainerName = "core-service"
            ContainerPort = local.ports.core_http
          }
        }
      }
    }]
  })
}

output "codedeploy_application" {
  description = "CodeDeploy application of the blue/green deployments."
  value       = aws_codedeploy_app.onsale.name
}

output "codedeploy_deployment_groups" {
  description = "Deployment group per blue/green service."
  value       = { for name, group in aws_codedeploy_deployment_group.service : name => group.deployment_group_name }
}

output "alarm_topic" {
  description = "SNS topic every alarm notifies (var.alarm_email is subscribed; confirm the mail)."
  value       = aws_sns_topic.alarms.arn
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
