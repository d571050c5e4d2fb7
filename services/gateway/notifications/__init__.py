"""Notifications: accepting them (one, or a bulk), listing them, following, cancelling and retrying one."""
