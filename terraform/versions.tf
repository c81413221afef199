terraform {
  required_version = ">= 1.6"
  required_providers {
    # 5.79 is the oldest provider the pinned VPC module (v5.21.0) accepts.
    aws    = { source = "hashicorp/aws", version = "~> 5.79" }
    random = { source = "hashicorp/random", version = "~> 3.6" }
  }
}

provider "aws" {
  region = var.region
  default_tags {
    tags = { project = "onsale", environment = var.environment }
  }
}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}
