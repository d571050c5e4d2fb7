"""Every Prometheus metric Herald exports, declared once. Names follow ``herald_<what>_<unit>``.

No label takes a value from an unbounded set unless switched on: the ``tenant`` label reads ``all`` unless
``HERALD_METRICS_TENANT_LABELS`` is true (one series per tenant is a cost a large installation chooses).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ALL_TENANTS = "all"
_tenant_labels = False


def label_tenants(on: bool) -> None:
    """Give the ``tenant`` label each tenant's id (on) or ``all`` (off, the default)."""
    global _tenant_labels
    _tenant_labels = on


def tenant_label(tenant_id: str) -> str:
    """The ``tenant`` label value for ``tenant_id``."""
    return tenant_id if _tenant_labels else ALL_TENANTS


BUILD_INFO = Gauge(
    "herald_build_info",
    "1, labelled with the running service, Herald's version and the image's commit",
    ["service", "version", "commit"],
)

# Consumer loop (every Kafka-consuming service).
MESSAGES_CONSUMED = Counter("herald_messages_consumed_total", "Kafka messages fetched", ["topic"])
MESSAGES_PRODUCED = Counter("herald_messages_produced_total", "Kafka messages queued for produce", ["topic"])
DEAD_LETTERS = Counter(
    "herald_dead_letters_total", "Messages sent to the DLQ, by source topic and reason", ["topic", "reason"]
)
BATCH_SECONDS = Histogram(
    "herald_batch_duration_seconds",
    "Time from fetching a batch to its outputs being queued for produce",
    ["topic"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
BATCH_SIZE = Histogram(
    "herald_batch_size_messages", "Messages per fetched batch", buckets=(1, 10, 50, 100, 250, 500, 1000, 2000)
)
TRANSIENT_FAILURES = Counter(
    "herald_transient_failures_total", "Batches paused and retried because a dependency failed", ["error"]
)
CONSUMER_LAG = Gauge("herald_consumer_lag_messages", "High watermark minus committed offset", ["topic", "partition"])
COMMIT_FAILURES = Counter("herald_commit_failures_total", "Offset commits refused (e.g. after a rebalance)")
CONSUMER_TOPICS_LOST = Counter(
    "herald_consumer_topics_lost_total",
    "Times a consumer found the broker without its topics, or with shorter logs than it had read (restarted "
    "empty), dropped its batches in flight and waited for the topics to join its group anew",
)
KAFKA_START_FAILURES = Counter(
    "herald_kafka_start_failures_total",
    "Times starting a Kafka client failed (a refused login or certificate, a cluster that does not answer); the "
    "service stays up, not ready, and tries again",
)
CONSUMER_PAUSED = Gauge(
    "herald_consumer_paused",
    "1 while the dead-letter guard pauses consumption, by the environmental reason most messages failed with",
    ["reason"],
)
CONSUMER_PAUSES = Counter(
    "herald_consumer_pauses_total", "Times the dead-letter guard paused consumption, by reason", ["reason"]
)

# Dead letters (the dead-letters service).
DEAD_LETTERS_STORED = Gauge("herald_dead_letters_stored", "Dead letters kept in Postgres, by reason", ["reason"])
DEAD_LETTERS_EXPIRED = Counter(
    "herald_dead_letters_expired_total", "Dead letters deleted after HERALD_DLQ_RETENTION_DAYS"
)
DEAD_LETTERS_DROPPED = Counter(
    "herald_dead_letters_dropped_total",
    "DLQ records the dead-letters service could not store, even once dead-lettered again (logged, left in the topic)",
)

# Retention (the archiver).
ARCHIVED_ROWS = Counter(
    "herald_archived_rows_total", "Rows written to an archive and then deleted from Postgres, by table", ["table"]
)
ARCHIVE_OBJECTS = Counter("herald_archive_objects_total", "Archive objects written durably (files or S3 objects)")
ARCHIVE_FAILURES = Counter(
    "herald_archive_failures_total", "Archiving passes that failed (the batch in hand deleted nothing)"
)

# Notification lifecycle.
NOTIFICATIONS_ACCEPTED = Counter("herald_notifications_accepted_total", "Requests accepted by ingest", ["tenant"])
REQUESTS_UNAUTHENTICATED = Counter(
    "herald_requests_unauthenticated_total",
    "Requests on Kafka dead-lettered because no live producer key of the tenant they name signed them (by why: "
    "unsigned, bad_signature, key_not_live; not by tenant, which the producer chose)",
    ["reason"],
)
NOTIFICATIONS_DUPLICATE = Counter(
    "herald_notifications_duplicate_total", "Requests dropped as duplicates of an idempotency key", ["tenant"]
)
DEDUP_BYPASSED = Counter(
    "herald_dedup_bypassed_total", "Requests that skipped de-duplication (dedup.bypass: urgent)", ["tenant"]
)
SEND_ATTEMPTS = Counter(
    "herald_send_attempts_total",
    "Provider calls by channel, provider and outcome (delivered, retry, failed): attempts, not notifications",
    ["channel", "provider", "outcome"],
)
# The service level indicator: how long after ingest accepted a notification (or, scheduled, after it fell
# due) a provider took it, and reported it delivered. Buckets reach an hour: a retried send is slow, not lost.
SLI_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
ACCEPTED_TO_SENT = Histogram(
    "herald_accepted_to_sent_seconds",
    "Seconds from acceptance (or the time a scheduled notification fell due) to a provider taking it, by channel",
    ["channel"],
    buckets=SLI_BUCKETS,
)
ACCEPTED_TO_DELIVERED = Histogram(
    "herald_accepted_to_delivered_seconds",
    "Seconds from acceptance to the provider reporting delivery, by channel (unscheduled notifications)",
    ["channel"],
    buckets=SLI_BUCKETS,
)
PROVIDER_SECONDS = Histogram(
    "herald_provider_request_duration_seconds",
    "Time a provider took to answer",
    ["channel", "provider"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
STATUS_EVENTS_STORED = Counter("herald_status_events_stored_total", "Status events written to Postgres")
DELAYED_JOBS_FIRED = Counter("herald_delayed_jobs_fired_total", "Delayed messages produced to their target")
DELAYED_JOBS_OVERDUE = Gauge(
    "herald_delayed_jobs_overdue_seconds",
    "How long the oldest due delayed job has waited to fire (0 when none is late): the retry service keeping up",
)

# Gateway.
HTTP_REQUESTS = Counter(
    "herald_http_requests_total", "HTTP requests by route and status code", ["method", "route", "status"]
)
HTTP_IDEMPOTENCY = Counter(
    "herald_http_idempotency_total",
    "Requests with an Idempotency-Key by outcome: new, replayed, mismatch, in_progress, invalid, unavailable",
    ["tenant", "outcome"],
)
HTTP_RATE_LIMITED = Counter(
    "herald_http_rate_limited_total",
    "Requests refused with 429, by tenant and the limit they were over: key, tenant, global",
    ["tenant", "scope"],
)
HTTP_RATE_LIMITER_UNAVAILABLE = Counter(
    "herald_http_rate_limiter_unavailable_total",
    "Requests let through unlimited because the rate limiter's Redis failed (fail open)",
)
HTTP_SECONDS = Histogram(
    "herald_http_request_duration_seconds",
    "HTTP request latency by route",
    ["method", "route"],
    # Up to 10 s: a slow dependency (Kafka acks, a Postgres failover) shows as what it is, not as "over 1 s".
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

# Provider protection.
CIRCUIT_STATE = Gauge(
    "herald_circuit_state",
    "1 for the state each provider's circuit breaker is in (closed, half_open, open), 0 for the others",
    ["provider", "state"],
)
CIRCUIT_TRANSITIONS = Counter(
    "herald_circuit_transitions_total", "Circuit breaker state changes, by the state entered", ["provider", "to"]
)
PROVIDER_UP = Gauge(
    "herald_provider_up", "1 if the provider passed its last periodic health check, else 0", ["provider"]
)
