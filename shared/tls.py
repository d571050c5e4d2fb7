"""TLS contexts a process builds once and shares."""

from __future__ import annotations

import functools
from ssl import SSLContext

import httpx


@functools.cache
def default_client_context() -> SSLContext:
    """httpx's default client context (the system's CAs, hostnames checked), built once per process.

    Each build reads the CA bundle, 20-30 ms of CPU, and an httpx client built without ``verify=`` makes
    its own even when it only ever calls ``http://`` URLs. Safe to share: clients never ask it for
    HTTP/2, so httpcore sets the same ALPN list on it for each of their connections.
    """
    return httpx.create_ssl_context()
