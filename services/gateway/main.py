"""Runs the gateway with uvicorn on ``HERALD_GATEWAY_PORT``."""

from __future__ import annotations

import uvicorn

from services.gateway.app import SERVICE, create_app
from services.gateway.settings import GatewaySettings
from shared import service
from shared.config import load_settings


def main() -> None:
    settings = load_settings(GatewaySettings)
    service.setup(SERVICE, settings)
    config = uvicorn.Config(
        create_app(settings),
        host=settings.gateway_host,
        port=settings.gateway_port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_config=None,
        # Give in-flight requests time to finish producing on SIGTERM.
        timeout_graceful_shutdown=20,
    )
    uvicorn.Server(config).run()
