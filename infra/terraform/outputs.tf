output "kafka_bootstrap_brokers" {
  description = "MSK bootstrap servers for SASL/SCRAM over TLS (host:9096,...): Herald's HERALD_KAFKA_BOOTSTRAP_SERVERS."
  value       = aws_msk_cluster.herald.bootstrap_brokers_sasl_scram
}

output "kafka_cluster_arn" {
  description = "ARN of the MSK cluster."
  value       = aws_msk_cluster.herald.arn
}

output "kafka_scram_secret_arn" {
  description = "Secrets Manager secret with the SCRAM username and password of Herald's Kafka user."
  value       = aws_secretsmanager_secret.kafka.arn
}

output "postgres_address" {
  description = "Host name of the RDS instance (private to the VPC)."
  value       = aws_db_instance.herald.address
}

output "postgres_instance_id" {
  description = "Identifier of the RDS instance, for snapshots and point-in-time restores (docs/operations/infrastructure.md)."
  value       = aws_db_instance.herald.identifier
}

output "redis_primary_endpoint" {
  description = "Primary endpoint of the ElastiCache replication group (TLS on port 6379)."
  value       = aws_elasticache_replication_group.herald.primary_endpoint_address
}

output "connections_secret_arn" {
  description = "Secrets Manager secret with HERALD_DATABASE_URL, HERALD_REDIS_URL and HERALD_KAFKA_SASL_PASSWORD, for people and jobs outside the cluster."
  value       = aws_secretsmanager_secret.connections.arn
}

output "kms_key_arn" {
  description = "The customer-managed KMS key encrypting MSK, RDS, ElastiCache, the secrets and the broker logs."
  value       = aws_kms_key.herald.arn
}

output "kubernetes_secret_name" {
  description = "Kubernetes Secret the release reads its HERALD_* secrets from (secrets.existingSecret)."
  value       = kubernetes_secret_v1.herald.metadata[0].name
}

output "namespace" {
  description = "Kubernetes namespace of the release."
  value       = helm_release.herald.namespace
}

output "release_name" {
  description = "Name of the Helm release."
  value       = helm_release.herald.name
}

output "database_url" {
  description = "HERALD_DATABASE_URL (TLS required), e.g. for infra backups; sensitive."
  value       = local.database_url
  sensitive   = true
}
