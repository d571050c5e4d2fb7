"""The email sender: delivers rendered emails through SMTP."""
