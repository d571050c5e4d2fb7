"""Local stand-ins that speak third-party providers' real wire protocols, for tests and the local stack."""
