"""A local AWS API (moto in server mode) that boto3 talks to, for SES, SNS and any other AWS provider.

moto runs as its own process, so the code under test reaches it over real HTTP, signed and
serialised by botocore exactly as for AWS; point a client at it with ``endpoint_url=server.url``
and any credentials. Its ``/moto-api/`` endpoints reset the state and expose what it holds (sent
emails, published SMS) for tests to check.
"""

from __future__ import annotations

from typing import Any

import httpx

from infra.local.processes import LineSink, ManagedProcess, StartsAndStops, free_port, print_prefixed, python_module
from shared.tls import default_client_context

HOST = "127.0.0.1"


class MotoServer(StartsAndStops):
    """``python -m moto.server`` on a local port, every AWS service on one endpoint."""

    def __init__(
        self, port: int | None = None, *, name: str = "moto", line_sink: LineSink | None = print_prefixed
    ) -> None:
        self.port = port or free_port(HOST)
        self._process: ManagedProcess = python_module(
            name, "moto.server", "-H", HOST, "-p", str(self.port), line_sink=line_sink
        )
        self._api = self._api_client()

    @property
    def process(self) -> ManagedProcess:
        """The moto process, for supervision alongside other processes."""
        return self._process

    @property
    def url(self) -> str:
        """The ``endpoint_url`` for boto3 clients."""
        return f"http://{HOST}:{self.port}"

    def _api_client(self) -> httpx.Client:
        # One client for every call to the moto API, which tests poll.
        return httpx.Client(base_url=self.url, timeout=10.0, verify=default_client_context())

    def start(self, timeout: float = 30.0) -> None:
        """Start moto and wait until it answers HTTP."""
        if self._api.is_closed:
            self._api = self._api_client()
        self._process.start()
        try:
            self._process.wait_http_ready(f"{self.url}/moto-api/", timeout=timeout)
        except Exception:
            self._process.stop()
            raise

    def stop(self) -> None:
        """Stop moto; everything it held is gone."""
        self._process.stop()
        self._api.close()

    def reset(self) -> None:
        """Forget every resource and message of every service (cheap: use between tests)."""
        self._api.post("/moto-api/reset").raise_for_status()

    def sms_environment(self) -> dict[str, str]:
        """Settings that make sender-sms send through SNS on this server (dummy credentials moto accepts)."""
        return {
            "HERALD_SMS_PROVIDERS": "sns",
            "HERALD_SNS_ENDPOINT_URL": self.url,
            "HERALD_SNS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }

    def sent_sms(self) -> list[dict[str, Any]]:
        """Every SMS published through SNS so far: ``{message_id, phone_number, message}``."""
        sent: list[dict[str, Any]] = self.model_data().get("sns", {}).get("SMS", [])
        return sent

    def model_data(self) -> dict[str, Any]:
        """Every model instance moto holds, by service and model, e.g. ``["ses"]["RawMessage"]``."""
        response = self._api.get("/moto-api/data.json")
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data
