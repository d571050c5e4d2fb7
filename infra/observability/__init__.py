"""Checks of what people watch Herald with: the dashboards' queries and the metric names they read."""
