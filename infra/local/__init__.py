"""The local deploy target's parts: the TLS edge (haproxy), development certificates and secrets,
and the process supervisor that keeps redis and the backends running on this machine."""
