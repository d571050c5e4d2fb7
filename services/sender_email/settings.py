"""sender-email's settings (``HERALD_*``)."""

from pydantic import Field, SecretStr

from shared.config import ops_port_field
from shared.sender_settings import ProviderNames, SenderSettings

DEFAULT_FROM = "Herald <noreply@herald.local>"


class EmailSenderSettings(SenderSettings):
    email_providers: ProviderNames = Field(
        default_factory=lambda: ["smtp"],
        description=(
            "The email providers in order of preference, comma-separated (smtp, sendgrid, ses): the first that can "
            "take a mail sends it; a provider is on when listed."
        ),
    )
    smtp_host: str = Field(default="127.0.0.1", description="The SMTP server (provider smtp).")
    smtp_port: int = Field(default=1025, ge=1, le=65535, description="The SMTP server's port.")
    smtp_username: str | None = Field(default=None, description="SMTP authentication: user name.")
    smtp_password: SecretStr | None = Field(default=None, description="SMTP authentication: password.")
    smtp_use_tls: bool = Field(
        default=False,
        description="Implicit TLS (port 465); certificates are verified. At most one of this and STARTTLS.",
    )
    smtp_start_tls: bool = Field(default=False, description="STARTTLS after connecting; certificates are verified.")
    smtp_ca_file: str | None = Field(
        default=None,
        description="A CA bundle to trust for the SMTP server's certificate (a private CA); unset: the system's CAs.",
    )
    smtp_from: str = Field(default=DEFAULT_FROM, description="From header and envelope sender.")
    smtp_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Bound on each SMTP command (seconds); the whole send is bounded by HERALD_PROVIDER_TIMEOUT_S.",
    )
    smtp_pool_size: int = Field(
        default=8,
        ge=1,
        description="Open SMTP connections kept and reused; also the number of mails in flight at once.",
    )
    sendgrid_api_key: SecretStr | None = Field(
        default=None, description="SendGrid (provider sendgrid): v3 mail send through the official client."
    )
    sendgrid_from: str = Field(default=DEFAULT_FROM, description="SendGrid's sender; it must be verified at SendGrid.")
    sendgrid_base_url: str = Field(
        default="https://api.sendgrid.com",
        description="EU accounts: https://api.eu.sendgrid.com; tests and the local stack: a Prism mock.",
    )
    sendgrid_timeout_s: float = Field(default=10.0, gt=0, description="Bound on each SendGrid request (seconds).")
    sendgrid_max_concurrency: int = Field(default=8, ge=1, description="SendGrid requests in flight at once.")
    sendgrid_open_tracking: bool = Field(
        default=False,
        description=(
            "SendGrid's own open tracking, apart from Herald's per-request tracking: leave it off when using Herald's."
        ),
    )
    sendgrid_click_tracking: bool = Field(
        default=False,
        description="SendGrid's own click tracking; leave it off when using Herald's, or links are wrapped twice.",
    )
    ses_region: str = Field(default="us-east-1", description="Amazon SES's region (provider ses).")
    ses_from: str = Field(
        default=DEFAULT_FROM, description="SES's sender; it must be a verified SES identity (address or domain)."
    )
    ses_access_key_id: str | None = Field(
        default=None,
        description="SES credentials, both or neither; neither: boto3's usual chain (IAM role, AWS_* variables).",
    )
    ses_secret_access_key: SecretStr | None = Field(default=None, description="The secret of HERALD_SES_ACCESS_KEY_ID.")
    ses_endpoint_url: str | None = Field(
        default=None, description="Another endpoint than AWS's: a VPC endpoint, or moto for tests and the local stack."
    )
    ses_configuration_set: str | None = Field(
        default=None,
        description="Configuration set whose event destinations receive bounces, complaints and deliveries.",
    )
    ses_timeout_s: float = Field(default=10.0, gt=0, description="Bound on each SES call (seconds).")
    ses_max_concurrency: int = Field(default=8, ge=1, description="SES calls in flight at once.")
    attachment_max_bytes: int = Field(
        default=10 * 1024 * 1024,
        ge=1,
        description=(
            "Attachments given by URL are fetched when a mail is sent: at most this many bytes in all per mail."
        ),
    )
    attachment_fetch_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description=(
            "Bound on fetching a mail's URL attachments (seconds); a timeout is retried later, a 404 fails the "
            "notification."
        ),
    )
    attachment_allow_private_networks: bool = Field(
        default=False,
        description=(
            "Allow attachment URLs (and redirects) that resolve to loopback, private or CGNAT addresses (the SSRF "
            "guard): local stacks and tests only."
        ),
    )
    ops_port: int = ops_port_field(9103)
