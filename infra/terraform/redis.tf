# Redis: an ElastiCache replication group, private, encrypted at rest and in transit (rediss://), with an
# AUTH token, a replica in another zone to fail over to, and daily snapshots.

resource "aws_elasticache_subnet_group" "herald" {
  name        = var.name
  description = "Herald ${var.name}: private subnets of Redis"
  subnet_ids  = var.subnet_ids
  tags        = local.tags
}

# ElastiCache AUTH tokens: 16 to 128 printable characters without @, " or /; letters and digits suffice.
resource "random_password" "redis" {
  length  = 64
  special = false
}

resource "aws_elasticache_replication_group" "herald" {
  replication_group_id = var.name
  description          = "Herald ${var.name}: idempotency claims, rate limits, the delivered ledger"
  engine               = "redis"
  engine_version       = var.redis_version
  node_type            = var.redis_node_type
  port                 = local.redis_port
  num_cache_clusters   = 1 + var.redis_replicas

  subnet_group_name  = aws_elasticache_subnet_group.herald.name
  security_group_ids = [aws_security_group.datastore["redis"].id]

  automatic_failover_enabled = true
  multi_az_enabled           = true

  at_rest_encryption_enabled = true
  kms_key_id                 = aws_kms_key.herald.arn
  transit_encryption_enabled = true
  auth_token                 = random_password.redis.result

  snapshot_retention_limit   = var.redis_snapshot_retention_days
  snapshot_window            = "01:00-02:00"
  maintenance_window         = "sun:04:30-sun:05:30"
  auto_minor_version_upgrade = true
  apply_immediately          = false

  tags = local.tags
}
