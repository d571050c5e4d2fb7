"""Logs, metrics, traces and the operations endpoint every service exposes."""
