"""Kafka at the edge: records, the producer, the one consumer loop every service runs, and topic admin."""

from shared.kafka.metadata import forbid_topic_auto_creation

# On import, so that no Herald process (a service, the topics job, the client library) creates a topic by naming it.
forbid_topic_auto_creation()
