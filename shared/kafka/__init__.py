"""Kafka at the edge: records, the producer, the one consumer loop every service runs, and topic admin."""
