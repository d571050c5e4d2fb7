"""Runs the gateway with uvicorn on ``HERALD_GATEWAY_PORT``: HTTPS when a certificate is configured."""

from __future__ import annotations

from functools import partial

import uvicorn
from fastapi import FastAPI

from services.gateway.app import SERVICE, create_app
from services.gateway.http.limits import RequestLimits, protocol_with
from services.gateway.settings import GatewaySettings
from shared import service
from shared.config import load_settings
from shared.redis import require_supported_version


def server_config(settings: GatewaySettings, app: FastAPI) -> uvicorn.Config:
    """uvicorn's configuration for ``app``; the TLS pair was checked when the settings were loaded."""
    return uvicorn.Config(
        app,
        host=settings.gateway_host,
        port=settings.gateway_port,
        loop="uvloop",
        http=protocol_with(
            RequestLimits(
                max_header_bytes=settings.max_header_bytes,
                max_headers=settings.max_headers,
                header_timeout_s=settings.request_header_timeout_s,
                body_timeout_s=settings.request_body_timeout_s,
            )
        ),
        access_log=False,
        log_config=None,
        # Give in-flight requests time to finish producing on SIGTERM.
        timeout_graceful_shutdown=20,
        ssl_certfile=settings.gateway_tls_cert_file,
        ssl_keyfile=settings.gateway_tls_key_file,
    )


def main() -> None:
    settings = load_settings(GatewaySettings)
    service.setup(SERVICE, settings)
    # Before uvicorn: a refusal in the app's lifespan would come with uvicorn's traceback.
    service.run(partial(require_supported_version, settings))
    uvicorn.Server(server_config(settings, create_app(settings))).run()
