"""sender-push's settings (``HERALD_*``)."""

from pydantic import Field, SecretStr

from shared.config import WebPushSettings
from shared.sender_settings import ProviderNames, SenderSettings


class PushSenderSettings(SenderSettings, WebPushSettings):
    # Each platform's providers in order of preference. FCM reaches every platform (iOS through the
    # APNs key uploaded to Firebase, browsers through its Web Push), so it is the usual fallback.
    push_android_providers: ProviderNames = Field(default_factory=lambda: ["fcm"])
    push_ios_providers: ProviderNames = Field(default_factory=lambda: ["apns", "fcm"])
    push_web_providers: ProviderNames = Field(default_factory=lambda: ["webpush", "fcm"])
    # Pushes in flight at once.
    push_concurrency: int = Field(default=64, ge=1)

    # FCM HTTP v1: a service account key (a JSON file's path, or the JSON itself).
    fcm_credentials: SecretStr | None = None
    fcm_project_id: str | None = None
    # Only for stand-ins: FCM's base URL (default: Google's own).
    fcm_base_url: str = "https://fcm.googleapis.com"
    fcm_max_concurrency: int = Field(default=16, ge=1)

    # APNs token auth: the team's .p8 signing key (PEM text, or its file's path), its id, the app's bundle id.
    apns_key: SecretStr | None = None
    apns_key_id: str = ""
    apns_team_id: str = ""
    apns_topic: str = ""
    apns_use_sandbox: bool = False
    # Only for stand-ins: another host and port than Apple's, and the CA that signed its certificate.
    apns_host: str | None = None
    apns_port: int = 443
    apns_ca_file: str | None = None
    apns_max_connections: int = Field(default=4, ge=1)

    # Web Push (VAPID): the application server's private key (PEM text, a PEM file's path, or base64url)
    # and a contact for push services (mailto: or https: URL).
    webpush_vapid_private_key: SecretStr | None = None
    webpush_subject: str = ""
    webpush_max_connections: int = Field(default=32, ge=1)
    ops_port: int = 9108
