"""Provider callbacks: the providers' delivery reports (Twilio, SendGrid, SES through SNS), verified and recorded.

``routes.py`` holds the routes and ``service.py`` records what a verified event means; the provider modules
(``twilio``, ``sendgrid``, ``sns``, ``ses``, with ``events`` and ``settings``) verify the providers' callbacks
and map their events to statuses and suppressions, without FastAPI.
"""
