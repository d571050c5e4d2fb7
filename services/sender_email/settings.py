"""sender-email's settings (``HERALD_*``)."""

from pydantic import Field, SecretStr

from shared.config import HeraldSettings


class EmailSenderSettings(HeraldSettings):
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=1025, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    # Implicit TLS (port 465) or STARTTLS after connecting; at most one of them.
    smtp_use_tls: bool = False
    smtp_start_tls: bool = False
    smtp_from: str = "Herald <noreply@herald.local>"
    # Every provider call is bounded (seconds).
    smtp_timeout_s: float = Field(default=10.0, gt=0)
    # Open SMTP connections kept and reused; also the number of mails in flight at once.
    smtp_pool_size: int = Field(default=8, ge=1)
    max_attempts: int = Field(default=5, ge=1)
    retry_base_delay_s: float = Field(default=2.0, ge=0)
    retry_max_delay_s: float = Field(default=300.0, ge=0)
    ops_port: int = 9103
