"""The documentation site's generated pages (``make docs``): configuration, Kafka and metrics references."""
