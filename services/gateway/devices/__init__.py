"""Devices: a recipient's push devices (FCM and APNs tokens, Web Push subscriptions), registered and removed."""
