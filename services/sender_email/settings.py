"""sender-email's settings (``HERALD_*``)."""

from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from shared.sender_settings import SenderSettings


class EmailSenderSettings(SenderSettings):
    # The email providers to use, in order of preference: the first that can take a mail sends it.
    email_providers: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["smtp"])
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=1025, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    # Implicit TLS (port 465) or STARTTLS after connecting; at most one of them.
    smtp_use_tls: bool = False
    smtp_start_tls: bool = False
    smtp_from: str = "Herald <noreply@herald.local>"
    # Bound on each SMTP command (seconds); the whole send is bounded by HERALD_PROVIDER_TIMEOUT_S.
    smtp_timeout_s: float = Field(default=10.0, gt=0)
    # Open SMTP connections kept and reused; also the number of mails in flight at once.
    smtp_pool_size: int = Field(default=8, ge=1)
    ops_port: int = 9103

    @field_validator("email_providers", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        # HERALD_EMAIL_PROVIDERS=sendgrid,smtp reads better than a JSON list.
        return [name.strip() for name in value.split(",") if name.strip()] if isinstance(value, str) else value
