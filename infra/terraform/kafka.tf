# Kafka: an MSK cluster that speaks only SASL/SCRAM over TLS (port 9096), TLS between brokers too, as Herald
# connects with HERALD_KAFKA_SECURITY_PROTOCOL=SASL_SSL and SCRAM-SHA-512 (docs/operations/kafka-security.md).
# MSK's certificates are signed by Amazon's public CA, which the image trusts: no CA file to mount.

resource "aws_msk_configuration" "herald" {
  name           = var.name
  kafka_versions = [var.kafka_version]
  description    = "Herald ${var.name}: topics are created by Herald's topics job, never on first use"

  # Herald creates its topics (helm hook Job, shared.kafka.admin) with replication factor 3; a typo'd topic
  # name must fail rather than create a topic of one replica. unclean elections could lose acknowledged records.
  server_properties = <<-PROPERTIES
    auto.create.topics.enable=false
    default.replication.factor=3
    min.insync.replicas=2
    unclean.leader.election.enable=false
  PROPERTIES
}

resource "aws_cloudwatch_log_group" "kafka" {
  name              = "/aws/msk/${var.name}"
  retention_in_days = var.kafka_log_retention_days
  kms_key_id        = aws_kms_key.herald.arn
  tags              = local.tags
}

resource "aws_msk_cluster" "herald" {
  cluster_name           = var.name
  kafka_version          = var.kafka_version
  number_of_broker_nodes = var.kafka_broker_count
  enhanced_monitoring    = "PER_TOPIC_PER_PARTITION"
  tags                   = local.tags

  broker_node_group_info {
    instance_type   = var.kafka_instance_type
    client_subnets  = var.subnet_ids
    security_groups = [aws_security_group.datastore["kafka"].id]

    storage_info {
      ebs_storage_info {
        volume_size = var.kafka_volume_size_gb
      }
    }

    connectivity_info {
      public_access {
        type = "DISABLED"
      }
    }
  }

  configuration_info {
    arn      = aws_msk_configuration.herald.arn
    revision = aws_msk_configuration.herald.latest_revision
  }

  encryption_info {
    encryption_at_rest_kms_key_arn = aws_kms_key.herald.arn
    encryption_in_transit {
      client_broker = "TLS"
      in_cluster    = true
    }
  }

  client_authentication {
    unauthenticated = false
    sasl {
      scram = true
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

  # Broker metrics for Prometheus (JMX and node exporters on 11001 and 11002 inside the VPC).
  open_monitoring {
    prometheus {
      jmx_exporter {
        enabled_in_broker = true
      }
      node_exporter {
        enabled_in_broker = true
      }
    }
  }
}

# Herald's SCRAM credentials. MSK reads them from Secrets Manager: the secret's name must start with
# AmazonMSK_ and it must be encrypted with a customer-managed key.
resource "random_password" "kafka" {
  length  = 40
  special = false
}

resource "aws_secretsmanager_secret" "kafka" {
  name        = "AmazonMSK_${var.name}_${var.kafka_username}"
  description = "Herald ${var.name}: SCRAM credentials of the Kafka user ${var.kafka_username} (MSK)"
  kms_key_id  = aws_kms_key.herald.arn
  tags        = local.tags
}

resource "aws_secretsmanager_secret_version" "kafka" {
  secret_id     = aws_secretsmanager_secret.kafka.id
  secret_string = jsonencode({ username = var.kafka_username, password = random_password.kafka.result })
}

resource "aws_msk_scram_secret_association" "herald" {
  cluster_arn     = aws_msk_cluster.herald.arn
  secret_arn_list = [aws_secretsmanager_secret.kafka.arn]

  depends_on = [aws_secretsmanager_secret_version.kafka]
}

# Only MSK (for this account) may read the SCRAM secret through its resource policy.
data "aws_iam_policy_document" "kafka_secret" {
  statement {
    sid       = "AWSKafkaResourcePolicy"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.kafka.arn]
    principals {
      type        = "Service"
      identifiers = ["kafka.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_secretsmanager_secret_policy" "kafka" {
  secret_arn = aws_secretsmanager_secret.kafka.arn
  policy     = data.aws_iam_policy_document.kafka_secret.json
}
