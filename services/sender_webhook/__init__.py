"""The webhook sender: POSTs notifications to customers' URLs, signed per Standard Webhooks."""
