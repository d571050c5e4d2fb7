"""Recipients: what the resources under ``/api/v1/recipients/{user_id}`` share."""

from __future__ import annotations

from services.gateway.http.problems import Problem
from services.gateway.recipients.schemas import PATH


def not_found(user_id: str) -> Problem:
    """The 404 of a recipient (none was stored, or it was deleted)."""
    return Problem(404, "Not found", f"no recipient {user_id}; create it with PUT {PATH}/{user_id}")
