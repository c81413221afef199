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
  description = "Upper bound of core-service tasks. Keep core_tasks_max × ONSALE__DATABASE__MAX_CONNECTIONS (40) below the RDS max_connections (500); a blue/green deployment runs twice the tasks for its duration (deploy/README.md)."
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
  description = "ACM certificate for the public HTTPS listener (and the blue/green test listener)."
  type        = string
}

variable "availability_zone_suffixes" {
  description = "The three zones of the region the subnets are carved for (region + suffix). Named, not discovered, so a zone AWS adds later never reorders the subnets."
  type        = list(string)
  default     = ["a", "b", "c"]
  validation {
    condition     = length(var.availability_zone_suffixes) == 3
    error_message = "The network is laid out over exactly three zones."
  }
}

variable "alarm_email" {
  description = "Address subscribed to the alarm topic (SNS sends a confirmation mail first)."
  type        = string
}

variable "deletion_protection" {
  description = "Protect the database and the load balancer from deletion. Turn off only for throw-away environments."
  type        = bool
  default     = true
}

variable "log_retention_days" {
  description = "Retention of the services', the firewall's and the network's CloudWatch logs, in days."
  type        = number
  default     = 365
}

variable "adot_image" {
  description = "AWS Distro for OpenTelemetry collector, run beside each service to carry its Prometheus metrics to CloudWatch. Pin a digest in production."
  type        = string
  default     = "public.ecr.aws/aws-observability/aws-otel-collector:v0.49.0"
}

variable "canary_minutes" {
  description = "core-service blue/green: minutes 10 % of the traffic stays on the new tasks before the rest moves, while the rollback alarms watch."
  type        = number
  default     = 10
}

variable "blue_termination_minutes" {
  description = "core-service blue/green: minutes the old tasks keep running after the switch, for an immediate rollback."
  type        = number
  default     = 30
}

variable "test_listener_cidrs" {
  description = "Networks besides the VPC (whose requests arrive from its NAT addresses) that may reach the blue/green test listener on port 8443, e.g. a CI runner's address."
  type        = list(string)
  default     = []
}
