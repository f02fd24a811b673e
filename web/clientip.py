"""Who is on the other end of the socket, believing X-Forwarded-For only from trusted proxies."""

from __future__ import annotations

import ipaddress

from quart import request


def client_ip(trusted_proxies: list[str]) -> str:
    """The current request's client address (see `resolve_client_ip`)."""
    peer = (request.scope.get("client") or ("unknown", 0))[0]
    if not trusted_proxies:
        return peer
    return resolve_client_ip(peer, request.headers.get("X-Forwarded-For", ""), trusted_proxies)


def resolve_client_ip(peer: str, forwarded_for: str, trusted_proxies: list[str]) -> str:
    """The socket peer; X-Forwarded-For counts only when the peer is a trusted proxy, and
    then the nearest address that is not itself a trusted proxy is the client."""
    if not trusted_proxies:
        return peer
    networks = [ipaddress.ip_network(n, strict=False) for n in trusted_proxies]

    def trusted(address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in networks)

    if not trusted(peer):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if not trusted(hop):
            return hop
    return hops[0] if hops else peer
