"""sender-sms's settings (``HERALD_*``)."""

from pydantic import Field, SecretStr

from shared.sender_settings import ProviderNames, SenderSettings


class SmsSenderSettings(SenderSettings):
    # The SMS providers to use, in order of preference: the first that can take a message sends it.
    sms_providers: ProviderNames = Field(default_factory=lambda: ["twilio"])
    # Messages in flight at once.
    sms_concurrency: int = Field(default=16, ge=1)
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    # Send from this number, or through a Messaging Service (one of the two).
    twilio_from_number: str | None = None
    twilio_messaging_service_sid: str | None = None
    # Where Twilio reports delivery status: the gateway's /api/v1/callbacks/twilio at its public URL.
    twilio_status_callback_url: str | None = None
    # Only for stand-ins: Twilio's API base URL (default: Twilio's own).
    twilio_base_url: str | None = None
    sns_region: str = "us-east-1"
    # Only for stand-ins (moto): the SNS endpoint (default: AWS's own). Credentials come from AWS_* variables.
    sns_endpoint_url: str | None = None
    sns_sender_id: str | None = None
    ops_port: int = 9106
