# One customer-managed key for everything onsale stores at rest: the
# ElastiCache, RDS and MSK volumes, Performance Insights, the secrets, the
# log groups and the alarm topic. A key of our own (not the AWS-managed
# ones) can be audited, rotated and revoked in one place, and CloudWatch
# Logs and SNS cannot use AWS-managed keys at all.
resource "aws_kms_key" "onsale" {
  description         = "onsale ${var.environment}: data at rest"
  enable_key_rotation = true
  # A key policy's "Resource": "*" means this key. The account keeps
  # control through IAM; the two services below encrypt on our behalf.
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AccountAdministersThroughIAM"
        Effect    = "Allow"
        Principal = { AWS = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        Sid       = "CloudWatchLogsEncryptsThisAccountsLogGroups"
        Effect    = "Allow"
        Principal = { Service = "logs.${var.region}.amazonaws.com" }
        Action    = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
        Resource  = "*"
        Condition = {
          ArnLike = {
            "kms:EncryptionContext:aws:logs:arn" = "arn:${data.aws_partition.current.partition}:logs:${var.region}:${data.aws_caller_identity.current.account_id}:log-group:*"
          }
        }
      },
      {
        # Alarms publish to the encrypted alarm topic (whose own policy
        # admits this account's alarms only).
        Sid       = "CloudWatchAlarmsPublishToTheEncryptedTopic"
        Effect    = "Allow"
        Principal = { Service = "cloudwatch.amazonaws.com" }
        Action    = ["kms:Decrypt", "kms:GenerateDataKey*"]
        Resource  = "*"
      },
    ]
  })
}

resource "aws_kms_alias" "onsale" {
  name          = "alias/${local.name}"
  target_key_id = aws_kms_key.onsale.key_id
}
