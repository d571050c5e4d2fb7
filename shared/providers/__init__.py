"""Providers: the interface every way of reaching people implements, and the failover chain around them."""
