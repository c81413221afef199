variable "region" {
  description = "AWS region."
  type        = string
  default     = "ap-northeast-2"
}

variable "environment" {
  description = "Deployment name, used in resource names (dev, staging, prod)."
  type        = string
}

variable "vpc_cidr" {
  description = "CIDR of the VPC; three public and three private /20 subnets are carved from it."
  type        = string
  default     = "10.40.0.0/16"
}

variable "queue_image" {
  description = "queue-service image (deploy/Dockerfile, SERVICE=queue-service)."
  type        = string
}

variable "core_image" {
  description = "core-service image (deploy/Dockerfile, SERVICE=core-service)."
  type        = string
}

variable "queue_tasks" {
  description = "queue-service tasks at rest; autoscaling adds up to queue_tasks_max. Seed plan: 4."
  type        = number
  default     = 4
}

variable "queue_tasks_max" {
  description = "Upper bound of queue-service tasks."
  type        = number
  default     = 16
}

variable "core_tasks" {
  description = "core-service tasks at rest. Seed plan: 4."
  type        = number
  default     = 4
}

variable "core_tasks_max" {
  description = "Upper bound of core-service tasks. Keep core_tasks_max × ONSALE__DATABASE__MAX_CONNECTIONS below the RDS max_connections."
  type        = number
  default     = 12
}

variable "redis_node_type" {
  description = "ElastiCache node type; 3 shards × (1 primary + 1 replica). Seed plan: cache.r7g.large."
  type        = string
  default     = "cache.r7g.large"
}

variable "db_instance_class" {
  description = "RDS instance class (Multi-AZ). Seed plan: db.r6g.xlarge."
  type        = string
  default     = "db.r6g.xlarge"
}

variable "kafka_instance_type" {
  description = "MSK broker type; one broker per AZ."
  type        = string
  default     = "kafka.m7g.large"
}

variable "certificate_arn" {
  description = "ACM certificate for the public HTTPS listener."
  type        = string
}
