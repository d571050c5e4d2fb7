"""Refusing, when it is registered, a URL Herald would later call but must not (SSRF): a 422 naming the field.

Only a courtesy to the caller: the sender that calls the URL checks it again at each connection,
where a name that has since changed its answer is caught too.
"""

from __future__ import annotations

from services.gateway.http.problems import Problem
from shared.ssrf import NonPublicAddress, OutboundGuard


async def refuse_non_public(guard: OutboundGuard, url: str, pointer: str) -> None:
    """Raise a 422 problem naming ``pointer`` if ``url``'s host resolves to an address ``guard`` refuses.

    A host that does not resolve now is let through: it may later, and the sender decides then.
    """
    try:
        await guard.check(url)
    except NonPublicAddress as error:
        raise Problem(422, "Invalid request", str(error), errors=[{"pointer": pointer, "detail": str(error)}]) from None
    except OSError:
        return
