# Postgres: RDS, private, encrypted, TLS required, Multi-AZ, backups kept, protected from deletion.

resource "aws_db_subnet_group" "herald" {
  name        = var.name
  description = "Herald ${var.name}: private subnets of the database"
  subnet_ids  = var.subnet_ids
  tags        = local.tags
}

resource "aws_db_parameter_group" "herald" {
  name        = "${var.name}-postgres${split(".", var.postgres_version)[0]}"
  family      = "postgres${split(".", var.postgres_version)[0]}"
  description = "Herald ${var.name}: TLS only; slow statements and connections logged"
  tags        = local.tags

  # Clients without TLS are refused (Herald connects with sslmode=require: see the database URL below).
  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  # Statements slower than a second and every DDL statement (migrations) go to the log, not every query:
  # Herald's queries carry personal data in their parameters.
  parameter {
    name  = "log_min_duration_statement"
    value = "1000"
  }
  parameter {
    name  = "log_statement"
    value = "ddl"
  }
  parameter {
    name  = "log_connections"
    value = "1"
  }
  parameter {
    name  = "log_disconnections"
    value = "1"
  }
}

resource "random_password" "postgres" {
  length  = 40
  special = false
}

# Enhanced monitoring (OS metrics every 30 s) needs a role RDS assumes.
data "aws_iam_policy_document" "rds_monitoring_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["monitoring.rds.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "rds_monitoring" {
  name               = "${var.name}-rds-monitoring"
  assume_role_policy = data.aws_iam_policy_document.rds_monitoring_assume.json
  tags               = local.tags
}

resource "aws_iam_role_policy_attachment" "rds_monitoring" {
  role       = aws_iam_role.rds_monitoring.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

resource "aws_db_instance" "herald" {
  identifier     = var.name
  engine         = "postgres"
  engine_version = var.postgres_version
  instance_class = var.postgres_instance_class
  db_name        = "herald"
  username       = "herald"
  password       = random_password.postgres.result
  port           = local.postgres_port

  allocated_storage     = var.postgres_allocated_storage_gb
  max_allocated_storage = var.postgres_max_allocated_storage_gb
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = aws_kms_key.herald.arn

  multi_az               = var.postgres_multi_az
  db_subnet_group_name   = aws_db_subnet_group.herald.name
  vpc_security_group_ids = [aws_security_group.datastore["postgres"].id]
  publicly_accessible    = false
  parameter_group_name   = aws_db_parameter_group.herald.name
  ca_cert_identifier     = "rds-ca-rsa2048-g1"

  backup_retention_period   = var.postgres_backup_retention_days
  backup_window             = "02:00-03:00"
  maintenance_window        = "sun:03:30-sun:04:30"
  copy_tags_to_snapshot     = true
  delete_automated_backups  = false
  deletion_protection       = var.deletion_protection
  skip_final_snapshot       = false
  final_snapshot_identifier = "${var.name}-final"

  auto_minor_version_upgrade          = true
  iam_database_authentication_enabled = true
  enabled_cloudwatch_logs_exports     = ["postgresql", "upgrade"]
  performance_insights_enabled        = true
  performance_insights_kms_key_id     = aws_kms_key.herald.arn
  monitoring_interval                 = 30
  monitoring_role_arn                 = aws_iam_role.rds_monitoring.arn

  tags = local.tags
}
