"""sender-email's settings (``HERALD_*``)."""

from pydantic import Field, SecretStr

from shared.sender_settings import ProviderNames, SenderSettings


class EmailSenderSettings(SenderSettings):
    # The email providers to use, in order of preference: the first that can take a mail sends it.
    email_providers: ProviderNames = Field(default_factory=lambda: ["smtp"])
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=1025, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    # Implicit TLS (port 465) or STARTTLS after connecting; at most one of them.
    smtp_use_tls: bool = False
    smtp_start_tls: bool = False
    # A CA bundle to trust for the SMTP server's certificate (a private CA); unset: the system's CAs.
    smtp_ca_file: str | None = None
    smtp_from: str = "Herald <noreply@herald.local>"
    # Bound on each SMTP command (seconds); the whole send is bounded by HERALD_PROVIDER_TIMEOUT_S.
    smtp_timeout_s: float = Field(default=10.0, gt=0)
    # Open SMTP connections kept and reused; also the number of mails in flight at once.
    smtp_pool_size: int = Field(default=8, ge=1)
    # SendGrid (provider "sendgrid"): v3 mail send through the official client.
    sendgrid_api_key: SecretStr | None = None
    # Must be a verified SendGrid sender.
    sendgrid_from: str = "Herald <noreply@herald.local>"
    # EU accounts: https://api.eu.sendgrid.com; tests and the local stack: a Prism mock.
    sendgrid_base_url: str = "https://api.sendgrid.com"
    sendgrid_timeout_s: float = Field(default=10.0, gt=0)
    sendgrid_max_concurrency: int = Field(default=8, ge=1)
    sendgrid_open_tracking: bool = False
    sendgrid_click_tracking: bool = False
    # Amazon SES (provider "ses"); credentials left unset come from boto3's usual chain (IAM role, AWS_*).
    ses_region: str = "us-east-1"
    # Must be a verified SES identity (address or domain).
    ses_from: str = "Herald <noreply@herald.local>"
    ses_access_key_id: str | None = None
    ses_secret_access_key: SecretStr | None = None
    # Another endpoint than AWS's: a VPC endpoint, or moto for tests and the local stack.
    ses_endpoint_url: str | None = None
    # Configuration set whose event destinations receive bounces, complaints and deliveries.
    ses_configuration_set: str | None = None
    ses_timeout_s: float = Field(default=10.0, gt=0)
    ses_max_concurrency: int = Field(default=8, ge=1)
    # Attachments given by URL are fetched when a mail is sent: at most this many bytes in all per mail,
    # within this many seconds (a timeout is retried later; a 404 fails the notification).
    attachment_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    attachment_fetch_timeout_s: float = Field(default=10.0, gt=0)
    # Allow attachment URLs that resolve to loopback or private addresses (SSRF guard); local stacks and tests only.
    attachment_allow_private_networks: bool = False
    ops_port: int = 9103
