"""sender-sms's settings (``HERALD_*``)."""

from pydantic import Field, SecretStr

from shared.config import ops_port_field
from shared.sender_settings import ProviderNames, SenderSettings


class SmsSenderSettings(SenderSettings):
    sms_providers: ProviderNames = Field(
        default_factory=lambda: ["twilio"],
        description=(
            "The SMS providers in order of preference, comma-separated (twilio, sns): the first that can take a "
            "message sends it."
        ),
    )
    sms_concurrency: int = Field(default=16, ge=1, description="Messages in flight at once.")
    twilio_account_sid: str | None = Field(default=None, description="Twilio's account SID.")
    twilio_auth_token: SecretStr | None = Field(
        default=None, description="Twilio's auth token (the gateway's verifies Twilio's status callbacks)."
    )
    twilio_from_number: str | None = Field(
        default=None, description="Send from this number, or through a Messaging Service (one of the two)."
    )
    twilio_messaging_service_sid: str | None = Field(
        default=None, description="Send through this Messaging Service, or from a number (one of the two)."
    )
    twilio_status_callback_url: str | None = Field(
        default=None,
        description=(
            "Where Twilio reports delivery status: the gateway's /api/v1/callbacks/twilio at its public URL "
            "(Herald's ids are added to its query)."
        ),
    )
    twilio_base_url: str | None = Field(
        default=None, description="Only for stand-ins: Twilio's API base URL (default: Twilio's own)."
    )
    sns_region: str = Field(default="us-east-1", description="Amazon SNS's region (provider sns).")
    sns_endpoint_url: str | None = Field(
        default=None,
        description=(
            "Only for stand-ins (moto): the SNS endpoint (default: AWS's own). Credentials come from boto3's "
            "chain (AWS_* variables, an IAM role)."
        ),
    )
    sns_sender_id: str | None = Field(
        default=None,
        description=(
            "The sender ID SNS sends with where countries allow one: 1 to 11 letters and digits, at least one letter."
        ),
    )
    ops_port: int = ops_port_field(9106)
