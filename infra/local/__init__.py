"""Run Herald on one machine: broker, datastores, mail sink and services, for people and tests."""
