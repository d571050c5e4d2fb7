# Herald's infrastructure on AWS: Kafka (MSK), Postgres (RDS), Redis (ElastiCache), and the Helm release
# of helm/herald wired to them. Everything is private to the VPC, encrypted at rest with the module's KMS
# key and in transit with TLS; the credentials are generated here, kept in Secrets Manager and handed to
# the pods through one Kubernetes Secret. The Terraform state then holds them too: keep it encrypted
# (e.g. an S3 backend with a KMS key) and readable only by those who may read the secrets.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  tags = merge({ "app.kubernetes.io/part-of" = "herald", "herald/installation" = var.name }, var.tags)
  # Kafka clients' ports on MSK: 9096 is SASL/SCRAM over TLS, the one listener this cluster opens.
  kafka_port    = 9096
  postgres_port = 5432
  redis_port    = 6379
}

# ---------------------------------------------------------------------------------------------------
# One customer-managed key for everything Herald stores: MSK's volumes and its SCRAM secret (MSK accepts
# only secrets under a customer-managed key), RDS, ElastiCache, Secrets Manager and the CloudWatch logs.
# ---------------------------------------------------------------------------------------------------

data "aws_iam_policy_document" "kms" {
  # The account administers the key through IAM, as with an AWS-managed key.
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }

  # CloudWatch Logs encrypts the brokers' log group with it, for log groups of this account only.
  statement {
    sid       = "CloudWatchLogsEncrypts"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${data.aws_region.current.name}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${data.aws_partition.current.partition}:logs:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:log-group:*"]
    }
  }
}

resource "aws_kms_key" "herald" {
  description             = "Herald ${var.name}: MSK, RDS, ElastiCache, Secrets Manager and logs"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
  tags                    = local.tags
}

resource "aws_kms_alias" "herald" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.herald.key_id
}

# ---------------------------------------------------------------------------------------------------
# Network: one security group per datastore, open on its one port to the clients' groups only. None has
# an egress rule: brokers, database and Redis answer connections, they open none.
# ---------------------------------------------------------------------------------------------------

resource "aws_security_group" "datastore" {
  for_each = {
    kafka    = { port = local.kafka_port, what = "MSK brokers, SASL/SCRAM over TLS" }
    postgres = { port = local.postgres_port, what = "RDS Postgres over TLS" }
    redis    = { port = local.redis_port, what = "ElastiCache Redis over TLS" }
  }

  name        = "${var.name}-${each.key}"
  description = "Herald ${var.name}: ${each.value.what}, from Herald's pods only"
  vpc_id      = var.vpc_id
  tags        = local.tags

  ingress {
    description     = "${each.value.what} from Herald"
    from_port       = each.value.port
    to_port         = each.value.port
    protocol        = "tcp"
    security_groups = var.client_security_group_ids
  }
}
