"""The status service: stores every status event and each notification's current status."""
