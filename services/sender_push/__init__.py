"""Push providers (FCM, APNs), each tested against a local stand-in; the push sender service is wired next."""
