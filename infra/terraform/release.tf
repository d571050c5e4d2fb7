# Herald on Kubernetes: one Secret with the connection settings made above (plus app_secrets), and the Helm
# release of helm/herald pointed at MSK, RDS and ElastiCache with it.

locals {
  database_url = format(
    "postgresql://%s:%s@%s:%d/%s?sslmode=require",
    aws_db_instance.herald.username, random_password.postgres.result, aws_db_instance.herald.address,
    aws_db_instance.herald.port, aws_db_instance.herald.db_name,
  )
  redis_host = aws_elasticache_replication_group.herald.primary_endpoint_address
  # rediss: TLS, the server's certificate checked against the public CAs the image trusts.
  redis_url = format("rediss://:%s@%s:%d/0", random_password.redis.result, local.redis_host, local.redis_port)

  # The environment the pods get from the Secret (it comes after the chart's ConfigMap, so its
  # HERALD_REDIS_URL, with the AUTH token, wins over the ConfigMap's).
  connection_secrets = {
    HERALD_DATABASE_URL        = local.database_url
    HERALD_REDIS_URL           = local.redis_url
    HERALD_KAFKA_SASL_PASSWORD = random_password.kafka.result
  }

  datastore_cidrs = sort([for subnet in data.aws_subnet.datastores : subnet.cidr_block])
  chart_values = {
    image = {
      repository = var.image_repository
      tag        = var.image_tag
    }
    secrets = {
      existingSecret = kubernetes_secret_v1.herald.metadata[0].name
      create         = false
    }
    config = {
      kafkaBootstrapServers  = aws_msk_cluster.herald.bootstrap_brokers_sasl_scram
      kafkaSecurityProtocol  = "SASL_SSL"
      kafkaSaslMechanism     = "SCRAM-SHA-512"
      kafkaSaslUsername      = var.kafka_username
      kafkaReplicationFactor = min(3, var.kafka_broker_count)
      # Shown in the ConfigMap without the token; the Secret's HERALD_REDIS_URL carries it.
      redisUrl = format("rediss://%s:%d/0", local.redis_host, local.redis_port)
    }
    # When networkPolicy.enabled is set (helm_values), egress goes to the datastores' subnets only.
    networkPolicy = {
      egress = {
        kafka    = { cidrs = local.datastore_cidrs, ports = [local.kafka_port] }
        postgres = { cidrs = local.datastore_cidrs, ports = [local.postgres_port] }
        redis    = { cidrs = local.datastore_cidrs, ports = [local.redis_port] }
      }
    }
  }
}

data "aws_subnet" "datastores" {
  for_each = toset(var.subnet_ids)
  id       = each.value
}

# The same connection settings in Secrets Manager, for people and jobs outside the cluster (backups,
# psql in an incident) that must not read the Terraform state.
resource "aws_secretsmanager_secret" "connections" {
  name        = "${var.name}/connections"
  description = "Herald ${var.name}: database and Redis URLs and the Kafka SCRAM password"
  kms_key_id  = aws_kms_key.herald.arn
  tags        = local.tags
}

resource "aws_secretsmanager_secret_version" "connections" {
  secret_id     = aws_secretsmanager_secret.connections.id
  secret_string = jsonencode(local.connection_secrets)
}

resource "kubernetes_namespace_v1" "herald" {
  count = var.create_namespace ? 1 : 0

  metadata {
    name = var.namespace
    labels = {
      "app.kubernetes.io/part-of" = "herald"
      # Herald's pods run as non-root with a read-only root filesystem: the restricted profile fits.
      "pod-security.kubernetes.io/enforce" = "restricted"
    }
  }
}

resource "kubernetes_secret_v1" "herald" {
  metadata {
    name      = "${var.name}-secrets"
    namespace = var.create_namespace ? kubernetes_namespace_v1.herald[0].metadata[0].name : var.namespace
    labels    = { "app.kubernetes.io/part-of" = "herald" }
  }

  data = merge(var.app_secrets, local.connection_secrets)
  type = "Opaque"
}

resource "helm_release" "herald" {
  name       = var.name
  namespace  = kubernetes_secret_v1.herald.metadata[0].namespace
  chart      = coalesce(var.chart, "${path.module}/../../helm/herald")
  repository = var.chart_repository
  version    = var.chart_version

  values = concat([yamlencode(local.chart_values)], var.helm_values)

  # The pre-install/pre-upgrade hook Job migrates Postgres and creates the topics; a release that fails
  # (a migration, a rollout) is rolled back rather than left half-upgraded.
  atomic          = true
  cleanup_on_fail = true
  wait            = true
  timeout         = var.helm_timeout_seconds
  max_history     = 10

  # The SCRAM user must exist before the topics job and the services connect.
  depends_on = [aws_msk_scram_secret_association.herald]
}
