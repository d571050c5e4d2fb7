"""The HTTP gateway: the API internal teams call to send notifications and read their status."""
