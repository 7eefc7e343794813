"""Who is logging in: the client address the login throttling counts by.

Directly exposed, the client is the connection's peer (REMOTE_ADDR).
Behind a reverse proxy every request comes from the proxy, so the client
is read from the header the proxy sets (IPR_CLIENT_IP_HEADER, by default
X-Forwarded-For), but only on requests that come from one of the proxies
named in IPR_TRUSTED_PROXIES: anyone else could write that header.
"""
from __future__ import annotations

import ipaddress

from django.conf import settings


def trusted(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in net for net in settings.TRUSTED_PROXIES)


def client_ip(request) -> str | None:
    """The peer address, or, when the peer is a trusted proxy, the last
    address in the proxy's header that is not itself a trusted proxy (each
    proxy appends the address it got the request from, so addresses further
    left were written by the client and prove nothing)."""
    peer = request.META.get("REMOTE_ADDR") or None
    if peer is None or not trusted(peer):
        return peer
    chain = [a.strip() for a in request.META.get(settings.CLIENT_IP_META, "").split(",") if a.strip()]
    for address in reversed(chain):
        if not trusted(address):
            try:
                return str(ipaddress.ip_address(address))
            except ValueError:
                return peer  # a proxy that writes garbage: count by the proxy
    return peer
