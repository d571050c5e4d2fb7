"""The router service: picks a channel for each notification and renders its content."""
