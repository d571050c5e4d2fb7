"""Provider callbacks: the providers' delivery reports (Twilio, SendGrid, SES through SNS), verified and recorded."""
