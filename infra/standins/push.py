"""The three push stand-ins together (FCM, APNs, a Web Push service), and the settings that point sender-push
at them: what the end-to-end tests and ``make up`` run so pushes to every platform arrive somewhere real."""

from __future__ import annotations

import base64
import json
import shutil
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from infra.local.processes import LineSink, StartsAndStops
from infra.standins.apns import ApnsStandIn, generate_signing_key
from infra.standins.fcm import FcmStandIn
from infra.standins.webpush import PushService

APNS_TEAM_ID = "HERALDTEAM"
APNS_KEY_ID = "HERALDKEY1"
APNS_TOPIC = "dev.herald.app"
VAPID_SUBJECT = "mailto:push@herald.local"


class PushStandIns(StartsAndStops):
    """FCM, APNs and Web Push stand-ins with fresh credentials that only they accept."""

    def __init__(self, line_sink: LineSink | None = None) -> None:
        """``line_sink`` gets a line for each push a stand-in accepts (``make up`` prints them)."""
        self.fcm = FcmStandIn()
        self._apns_key = generate_signing_key()
        self.apns = ApnsStandIn(
            team_id=APNS_TEAM_ID, key_id=APNS_KEY_ID, signing_key_pem=self._apns_key, topic=APNS_TOPIC
        )
        self.web = PushService()
        # An EC P-256 key, which is what VAPID signs with too.
        self.vapid_key = generate_signing_key()
        self._directory: Path | None = None
        if line_sink is not None:
            self.fcm.on_accept = lambda m: line_sink("fcm", f"push to {m.message.get('token')}: {m.message}")
            self.apns.on_accept = lambda n: line_sink("apns", f"push to {n.device_token}: {n.payload}")
            self.web.on_accept = lambda m: line_sink("webpush", f"push to {m.subscription_id}, decrypted: {m.json()}")

    def start(self) -> None:
        self._directory = Path(tempfile.mkdtemp(prefix="herald-push-"))
        try:
            for stand_in in (self.fcm, self.apns, self.web):
                stand_in.start()
            self.fcm.write_service_account(self._directory / "fcm-service-account.json", "herald-local")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for stand_in in (self.web, self.apns, self.fcm):
            stand_in.stop()
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None

    def environment(self) -> dict[str, str]:
        """``HERALD_*`` settings that make sender-push send to these stand-ins on every platform."""
        if self._directory is None:
            raise RuntimeError("start the push stand-ins first")
        return {
            "HERALD_FCM_CREDENTIALS": str(self._directory / "fcm-service-account.json"),
            "HERALD_FCM_BASE_URL": self.fcm.url,
            "HERALD_APNS_KEY": self._apns_key,
            "HERALD_APNS_KEY_ID": APNS_KEY_ID,
            "HERALD_APNS_TEAM_ID": APNS_TEAM_ID,
            "HERALD_APNS_TOPIC": APNS_TOPIC,
            "HERALD_APNS_HOST": self.apns.host,
            "HERALD_APNS_PORT": str(self.apns.port),
            "HERALD_APNS_CA_FILE": self.apns.ca_path,
            "HERALD_WEBPUSH_VAPID_PRIVATE_KEY": self.vapid_key,
            "HERALD_WEBPUSH_SUBJECT": VAPID_SUBJECT,
            # The Web Push stand-in's subscriptions point at this machine, which the SSRF guard refuses otherwise.
            "HERALD_WEBPUSH_ALLOW_PRIVATE_NETWORKS": "true",
        }

    def web_subscription(self) -> str:
        """A new browser subscription on the Web Push stand-in, as the JSON a device registers as its token.

        Bound to Herald's VAPID key as browsers bind it, so a push signed with another key is refused.
        """
        key = serialization.load_pem_private_key(self.vapid_key.encode(), password=None)
        point = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        return json.dumps(self.web.subscribe(base64.urlsafe_b64encode(point).rstrip(b"=").decode()))
