"""The SMS and email providers' stand-ins for ``make up``, and the settings that point the senders at them.

Twilio and SendGrid are Prism serving their official API descriptions (each request is checked
against the contract and answered from its examples; nothing is kept), SNS is moto (which keeps
every SMS it sent). sender-sms sends through Twilio first and SNS second; sender-email keeps SMTP
unless ``HERALD_EMAIL_PROVIDERS`` lists ``sendgrid``, which then reaches SendGrid's stand-in.

A provider pointed elsewhere (``HERALD_TWILIO_BASE_URL``, ``HERALD_SNS_ENDPOINT_URL``,
``HERALD_SENDGRID_BASE_URL`` set) gets no stand-in, and any variable set in the environment wins
over the stand-ins' own. Prism needs Node and npm: without them Twilio and SendGrid have no
stand-in, SMS go through SNS alone, and :attr:`MessagingStandIns.missing` says why.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import structlog

from infra.local.processes import LineSink, ManagedProcess, ProcessError, StartsAndStops, print_prefixed
from infra.standins.aws import MotoServer
from infra.standins.prism import PrismMock, ensure_prism

log = structlog.get_logger(__name__)

CONTRACTS = Path(__file__).resolve().parent / "contracts"
# Credentials shaped as the providers' own checks want them; the stand-ins take any.
TWILIO_ENVIRONMENT = {
    "HERALD_TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
    "HERALD_TWILIO_AUTH_TOKEN": "local-stand-in-token",
    "HERALD_TWILIO_FROM_NUMBER": "+15005550006",
}
SENDGRID_ENVIRONMENT = {"HERALD_SENDGRID_API_KEY": "SG.local-stand-in-key"}
LABELS = {"twilio": "Twilio", "sendgrid": "SendGrid"}
# Prism's start-up list of every route it serves (Twilio's has about two hundred), its content
# negotiation notes, and the readiness probe's own request: noise beside the requests Herald makes.
_PRISM_NOISE = re.compile(r"\[CLI\] \S+\s+info\s+[A-Z]+\s+http|\[NEGOTIATOR\]|\[HTTP SERVER\] get / ")


def prism_lines(sink: LineSink) -> LineSink:
    """``sink`` without Prism's noise: what is left is each request and whether it met the contract."""

    def filtered(name: str, line: str) -> None:
        if not _PRISM_NOISE.search(line):
            sink(name, line)

    return filtered


class MessagingStandIns(StartsAndStops):
    """Twilio, SNS and SendGrid stand-ins on fixed local ports, for the providers not pointed elsewhere."""

    def __init__(
        self,
        *,
        twilio_port: int,
        sns_port: int,
        sendgrid_port: int,
        environ: Mapping[str, str] = os.environ,
        line_sink: LineSink | None = print_prefixed,
    ) -> None:
        self._environ = environ
        prism_sink = prism_lines(line_sink) if line_sink is not None else None
        self._prisms: dict[str, PrismMock] = {}
        for name, contract, port in (
            ("twilio", "twilio_api_v2010.json", twilio_port),
            ("sendgrid", "sendgrid_v3_swagger2.json", sendgrid_port),
        ):
            if f"HERALD_{name.upper()}_BASE_URL" not in environ:
                self._prisms[name] = PrismMock(CONTRACTS / contract, port=port, name=name, line_sink=prism_sink)
        self.sns: MotoServer | None = None
        if "HERALD_SNS_ENDPOINT_URL" not in environ:
            self.sns = MotoServer(sns_port, name="sns", line_sink=line_sink)
        # Why a stand-in that was wanted is not running, by provider.
        self.missing: dict[str, str] = {}

    @property
    def twilio(self) -> PrismMock | None:
        """Twilio's stand-in, if it runs (or is to run)."""
        return self._prisms.get("twilio")

    @property
    def sendgrid(self) -> PrismMock | None:
        """SendGrid's stand-in, if it runs (or is to run)."""
        return self._prisms.get("sendgrid")

    def ports(self) -> dict[str, int]:
        """The port each stand-in will listen on, by a name for messages."""
        ports = {f"{LABELS[name]} stand-in (Prism)": prism.port for name, prism in self._prisms.items() if prism.port}
        if self.sns is not None:
            ports["SNS stand-in (moto)"] = self.sns.port
        return ports

    def start(self) -> None:
        """Start the stand-ins; one on Prism that cannot start is left out (see :attr:`missing`).

        Raises:
            ProcessError: moto did not start, or HERALD_SMS_PROVIDERS / HERALD_EMAIL_PROVIDERS lists a
                provider whose stand-in is missing (its sender would refuse to start, less clearly).
        """
        try:
            if self.sns is not None:
                self.sns.start()
            self._start_prisms()
            self._check_chosen_providers()
        except BaseException:
            self.stop()
            raise

    def _start_prisms(self) -> None:
        if not self._prisms:
            return
        try:
            # Once for both: a failed install (no npm, no network) would only fail again, as slowly.
            ensure_prism()
        except ProcessError as error:
            self._leave_out(list(self._prisms), error)
            return
        for name, prism in list(self._prisms.items()):
            try:
                prism.start()
            except ProcessError as error:
                self._leave_out([name], error)

    def _leave_out(self, names: list[str], error: ProcessError) -> None:
        # The stack is still useful without them (SMTP, SNS): say why, and go on.
        for name in names:
            log.warning("stand-in not started", provider=name, error=str(error))
            self.missing[name] = str(error).splitlines()[0]
            del self._prisms[name]

    def _check_chosen_providers(self) -> None:
        for variable in ("HERALD_SMS_PROVIDERS", "HERALD_EMAIL_PROVIDERS"):
            for name in (name.strip() for name in self._environ.get(variable, "").split(",")):
                if name in self.missing:
                    raise ProcessError(
                        f"{variable} lists {name}, but its stand-in is not running ({self.missing[name]}). "
                        f"Install Node and npm, set HERALD_{name.upper()}_BASE_URL and its credentials to use "
                        f"the real {LABELS[name]}, or leave {name} out of {variable}."
                    )

    def stop(self) -> None:
        """Stop every stand-in that runs."""
        for prism in self._prisms.values():
            prism.stop()
        if self.sns is not None:
            self.sns.stop()

    def processes(self) -> list[ManagedProcess]:
        """The stand-ins' processes, for supervision."""
        processes = [prism.process for prism in self._prisms.values() if prism.process is not None]
        return processes + ([self.sns.process] if self.sns is not None else [])

    def environment(self) -> dict[str, str]:
        """The variables that point sender-sms and sender-email at the stand-ins, less those set by hand."""
        values: dict[str, str] = {}
        if self.sns is not None:
            values |= self.sns.sms_environment()
        if self.twilio is not None:
            values |= {"HERALD_TWILIO_BASE_URL": self.twilio.url, **TWILIO_ENVIRONMENT}
        if self.sendgrid is not None:
            values |= {"HERALD_SENDGRID_BASE_URL": self.sendgrid.url, **SENDGRID_ENVIRONMENT}
        # Twilio first wherever it can be reached: its stand-in, or the Twilio it was pointed at.
        has_twilio = self.twilio is not None or "HERALD_TWILIO_BASE_URL" in self._environ
        values["HERALD_SMS_PROVIDERS"] = "twilio,sns" if has_twilio else "sns"
        return {name: value for name, value in values.items() if name not in self._environ}

    def describe(self) -> list[str]:
        """Banner lines: where each stand-in answers and what it shows, or why it is not running."""
        lines = []
        if self.twilio is not None:
            lines.append(f"  Twilio:     {self.twilio.url} (Prism: checks each request against Twilio's API)")
        if self.sns is not None:
            lines.append(f"  SNS:        {self.sns.url}/moto-api/data.json (moto: each SMS it sent, under sns -> SMS)")
        if self.sendgrid is not None:
            lines.append(f"  SendGrid:   {self.sendgrid.url} (Prism: checks each request against SendGrid's API)")
        for name, reason in self.missing.items():
            lines.append(f"  {LABELS[name] + ':':<11} no stand-in: {reason}")
        return lines
