# ---------------------------------------------------------------------------------------------------
# Where Herald runs
# ---------------------------------------------------------------------------------------------------

variable "name" {
  description = "Name of this installation: prefixes every AWS resource (MSK cluster, RDS instance, ElastiCache group, secrets) and names the Helm release. Lower-case letters, digits and hyphens."
  type        = string
  default     = "herald"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}[a-z0-9]$", var.name))
    error_message = "name: 3 to 32 lower-case letters, digits and hyphens, starting with a letter."
  }
}

variable "vpc_id" {
  description = "VPC of the Kubernetes cluster; the brokers, the database and Redis get addresses in it and are reachable only from inside it."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets, one per availability zone (MSK needs as many as it has broker zones: 2 or 3, and broker_count a multiple of that). Nothing here gets a public address."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "subnet_ids: at least two private subnets in different availability zones."
  }
}

variable "client_security_group_ids" {
  description = "Security groups of the Kubernetes nodes (or of the pods, with security groups for pods) allowed to reach Kafka, Postgres and Redis. Nothing else is let in."
  type        = list(string)

  validation {
    condition     = length(var.client_security_group_ids) > 0
    error_message = "client_security_group_ids: at least one security group must be allowed in, or Herald cannot reach its datastores."
  }
}

variable "tags" {
  description = "Tags added to every AWS resource."
  type        = map(string)
  default     = {}
}

# ---------------------------------------------------------------------------------------------------
# Kafka: Amazon MSK, SASL/SCRAM over TLS
# ---------------------------------------------------------------------------------------------------

variable "kafka_version" {
  description = "Apache Kafka version of the MSK cluster."
  type        = string
  default     = "3.8.x"
}

variable "kafka_broker_count" {
  description = "Number of brokers: a multiple of the number of subnets (one broker per zone at least). Three or more keeps the topics' replication factor of 3 and min.insync.replicas of 2."
  type        = number
  default     = 3
}

variable "kafka_instance_type" {
  description = "MSK broker instance type."
  type        = string
  default     = "kafka.m7g.large"
}

variable "kafka_volume_size_gb" {
  description = "EBS storage per broker, in GiB."
  type        = number
  default     = 500
}

variable "kafka_log_retention_days" {
  description = "Days the brokers' logs are kept in CloudWatch Logs: a year by default, as audits ask; CloudWatch accepts only its own list of values (1, 3, 5, 7, 14, 30, 60, 90, ..., 365, 400, ...)."
  type        = number
  default     = 365
}

variable "kafka_username" {
  description = "SCRAM user Herald connects as (its password is generated and kept in Secrets Manager)."
  type        = string
  default     = "herald"
}

# ---------------------------------------------------------------------------------------------------
# Postgres: Amazon RDS
# ---------------------------------------------------------------------------------------------------

variable "postgres_version" {
  description = "RDS for PostgreSQL engine version (a major version Herald is tested on: 15 or 16)."
  type        = string
  default     = "16.6"
}

variable "postgres_instance_class" {
  description = "RDS instance class."
  type        = string
  default     = "db.m7g.large"
}

variable "postgres_allocated_storage_gb" {
  description = "Initial storage, in GiB (gp3)."
  type        = number
  default     = 100
}

variable "postgres_max_allocated_storage_gb" {
  description = "Storage autoscaling limit, in GiB."
  type        = number
  default     = 1000
}

variable "postgres_backup_retention_days" {
  description = "Days of automated backups (point-in-time recovery window), 7 to 35."
  type        = number
  default     = 14

  validation {
    condition     = var.postgres_backup_retention_days >= 7 && var.postgres_backup_retention_days <= 35
    error_message = "postgres_backup_retention_days: between 7 and 35."
  }
}

variable "postgres_multi_az" {
  description = "A standby in a second zone that RDS fails over to."
  type        = bool
  default     = true
}

variable "deletion_protection" {
  description = "Refuse to delete the RDS instance (and take a final snapshot when it is deleted anyway). Turn off only to tear down a test installation."
  type        = bool
  default     = true
}

# ---------------------------------------------------------------------------------------------------
# Redis: Amazon ElastiCache
# ---------------------------------------------------------------------------------------------------

variable "redis_version" {
  description = "ElastiCache for Redis OSS engine version (Herald needs 6.2 or newer)."
  type        = string
  default     = "7.1"
}

variable "redis_node_type" {
  description = "ElastiCache node type."
  type        = string
  default     = "cache.m7g.large"
}

variable "redis_replicas" {
  description = "Read replicas beside the primary, in other zones; at least 1 for automatic failover."
  type        = number
  default     = 1

  validation {
    condition     = var.redis_replicas >= 1
    error_message = "redis_replicas: at least one replica (automatic failover needs it)."
  }
}

variable "redis_snapshot_retention_days" {
  description = "Days of daily Redis snapshots kept (idempotency claims and the delivered ledger live in Redis)."
  type        = number
  default     = 7
}

# ---------------------------------------------------------------------------------------------------
# Herald on Kubernetes: the Helm release
# ---------------------------------------------------------------------------------------------------

variable "namespace" {
  description = "Kubernetes namespace of the release; created when create_namespace is true."
  type        = string
  default     = "herald"
}

variable "create_namespace" {
  description = "Create the namespace (false: it exists already)."
  type        = bool
  default     = true
}

variable "chart" {
  description = "The chart: a path (the repository's helm/herald) or, with chart_repository, the chart's name (`herald`)."
  type        = string
  default     = null
}

variable "chart_repository" {
  description = "Where the released charts are, e.g. oci://ghcr.io/<owner>/charts (.github/workflows/release.yml); null with a local chart path."
  type        = string
  default     = null
}

variable "chart_version" {
  description = "Chart version to install from chart_repository (the release tag without its v); null with a local chart path."
  type        = string
  default     = null
}

variable "image_repository" {
  description = "Herald's image, e.g. ghcr.io/<owner>/herald."
  type        = string
}

variable "image_tag" {
  description = "Image tag; \"\" = the chart's appVersion."
  type        = string
  default     = ""
}

variable "app_secrets" {
  description = "Herald's own secrets, put in the release's Kubernetes Secret beside the generated connection settings: at least HERALD_ENCRYPTION_KEYS, HERALD_BLIND_INDEX_KEY and HERALD_PRODUCER_SIGNING_KEY; provider keys as used (helm/herald/values.yaml lists them). Keep them in Secrets Manager or a secrets store and pass them in, never in a file under version control."
  type        = map(string)
  sensitive   = true

  validation {
    condition = alltrue([
      for key in ["HERALD_ENCRYPTION_KEYS", "HERALD_BLIND_INDEX_KEY", "HERALD_PRODUCER_SIGNING_KEY"] : contains(keys(var.app_secrets), key)
    ])
    error_message = "app_secrets must hold HERALD_ENCRYPTION_KEYS, HERALD_BLIND_INDEX_KEY and HERALD_PRODUCER_SIGNING_KEY (the services refuse to start without them)."
  }
}

variable "helm_values" {
  description = "Further values for the chart, as YAML documents (e.g. yamlencode({ingress = {...}})), applied after the module's own."
  type        = list(string)
  default     = []
}

variable "helm_timeout_seconds" {
  description = "Seconds Helm waits for the release (migrations, topics job and rollout) before it fails."
  type        = number
  default     = 900
}
