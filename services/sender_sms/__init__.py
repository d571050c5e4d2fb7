"""sender-sms: sends SMS deliveries through Twilio or Amazon SNS."""
