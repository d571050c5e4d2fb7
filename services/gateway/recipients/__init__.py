"""Recipients: each user's contact details, which the router uses for the notifications naming that
``recipient.user_id``. Their preferences, devices and erasures are resources of their own, under the same path."""
