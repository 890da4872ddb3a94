"""The local deploy target: a TLS edge, redis and two backends on this machine."""
