"""What every resource of the HTTP API shares: problems, authentication, idempotency, rate limits, pages,
request limits, middleware and the OpenAPI document."""
