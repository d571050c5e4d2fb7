"""sender-push's settings (``HERALD_*``)."""

from pydantic import Field, SecretStr

from shared.config import WebPushSettings, ops_port_field
from shared.sender_settings import ProviderNames, SenderSettings

PROVIDERS_IN_ORDER = (
    "providers in order of preference, comma-separated; FCM reaches every platform, so it is the usual fallback"
)


class PushSenderSettings(SenderSettings, WebPushSettings):
    push_android_providers: ProviderNames = Field(
        default_factory=lambda: ["fcm"], description=f"Android devices' {PROVIDERS_IN_ORDER}."
    )
    push_ios_providers: ProviderNames = Field(
        default_factory=lambda: ["apns", "fcm"],
        description=f"iOS devices' {PROVIDERS_IN_ORDER} (through the APNs key uploaded to Firebase).",
    )
    push_web_providers: ProviderNames = Field(
        default_factory=lambda: ["webpush", "fcm"],
        description=f"Browsers' {PROVIDERS_IN_ORDER} (through its own Web Push).",
    )
    push_concurrency: int = Field(default=64, ge=1, description="Pushes in flight at once.")
    fcm_credentials: SecretStr | None = Field(
        default=None, description="FCM HTTP v1: a service account key (its JSON file's path, or the JSON itself)."
    )
    fcm_project_id: str | None = Field(default=None, description="The Firebase project; unset: the service account's.")
    fcm_base_url: str = Field(
        default="https://fcm.googleapis.com", description="Only for stand-ins: FCM's base URL (default: Google's own)."
    )
    fcm_max_concurrency: int = Field(default=16, ge=1, description="FCM requests in flight at once.")
    apns_key: SecretStr | None = Field(
        default=None, description="APNs token auth: the team's .p8 signing key (PEM text, or its file's path)."
    )
    apns_key_id: str = Field(default="", description="The APNs signing key's id.")
    apns_team_id: str = Field(default="", description="The Apple developer team's id.")
    apns_topic: str = Field(default="", description="The app's bundle id.")
    apns_use_sandbox: bool = Field(default=False, description="Apple's sandbox (development builds).")
    apns_host: str | None = Field(
        default=None, description="Only for stand-ins: another host than Apple's (default: Apple's own)."
    )
    apns_port: int = Field(default=443, description="The APNs host's port.")
    apns_ca_file: str | None = Field(
        default=None, description="Only for stand-ins: the CA that signed HERALD_APNS_HOST's certificate."
    )
    apns_max_connections: int = Field(default=4, ge=1, description="HTTP/2 connections to APNs.")
    webpush_vapid_private_key: SecretStr | None = Field(
        default=None,
        description=(
            "Web Push (VAPID): the application server's P-256 private key (PEM text, a PEM file's path, or base64url)."
        ),
    )
    webpush_subject: str = Field(default="", description="A contact for push services: a mailto: or https: URL.")
    webpush_max_connections: int = Field(default=32, ge=1, description="HTTP connections to push services.")
    ops_port: int = ops_port_field(9108)
