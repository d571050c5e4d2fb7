"""Provider feedback: verifying the providers' callbacks and mapping their events to statuses and suppressions.

Plain modules, without FastAPI: :mod:`services.gateway.callbacks` holds the routes.
"""
