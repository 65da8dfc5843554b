"""Who the client is and how it reached us: ``X-Forwarded-*`` and ``Forwarded`` (RFC 7239).

Forwarding headers a client sends itself are claims, not facts. They are
believed only when the TCP peer is one of ``gateway.trusted_proxies`` (IPs or
CIDRs; ``unix`` for a Unix-socket peer); from anyone else they are dropped and
replaced with what authgate saw itself (SECURITY.md 50). Towards the upstream
app authgate sets ``X-Forwarded-For`` / ``-Proto`` / ``-Host`` (appending to a
trusted proxy's chain) and an RFC 7239 ``Forwarded`` element for its own hop.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass

from starlette.types import Scope

from ..errors import ConfigError

RawHeaders = list[tuple[bytes, bytes]]

FORWARDING = frozenset({
    b"forwarded", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host",
    b"x-forwarded-port", b"x-forwarded-prefix", b"x-forwarded-server", b"x-forwarded-uri",
    b"x-original-uri", b"x-real-ip",
})
"""Headers describing the client's path to us; only a trusted proxy may send them."""

_PROTOS = frozenset({"http", "https"})
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class TrustedProxies:
    """The peers whose forwarding headers are believed."""

    def __init__(self, entries: list[str]) -> None:
        self.unix = False
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in entries:
            if entry.strip().lower() == "unix":
                self.unix = True
                continue
            try:
                self.networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                raise ConfigError(f"gateway.trusted_proxies: {entry!r} is not an IP address "
                                  "or CIDR") from None

    def __bool__(self) -> bool:
        return self.unix or bool(self.networks)

    def trusts(self, peer: str | None) -> bool:
        if peer is None:
            return self.unix
        try:
            addr = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(addr in net for net in self.networks)


@dataclass(frozen=True)
class Hop:
    """What authgate believes about the request's way in."""

    peer: str | None
    trusted: bool
    """The peer is a trusted proxy, so its forwarding headers were believed."""
    chain: list[str]
    """X-Forwarded-For entries up to and including the peer."""
    proto: str
    host: str
    own_proto: str
    """The scheme of the connection authgate itself received."""
    own_host: str
    """The Host header authgate itself received."""
    original_uri: str | None = None
    """X-Forwarded-Uri / X-Original-URI, from a trusted proxy only (forward-auth)."""


def _values(headers: RawHeaders, name: bytes) -> list[str]:
    """Every comma-separated element of every ``name`` header, in order (RFC 7230 §3.2.2)."""
    out: list[str] = []
    for k, v in headers:
        if k.lower() == name:
            out.extend(p.strip() for p in v.decode("latin-1").split(",") if p.strip())
    return out


def _first(headers: RawHeaders, name: bytes) -> str | None:
    for k, v in headers:
        if k.lower() == name:
            return v.decode("latin-1").strip() or None
    return None


def hop(scope: Scope, trusted: TrustedProxies) -> Hop:
    headers: RawHeaders = scope["headers"]
    client = scope.get("client")
    peer = str(client[0]) if client else None
    own_proto = "https" if scope.get("scheme") in ("https", "wss") else "http"
    own_host = _first(headers, b"host") or ""
    if not trusted or not trusted.trusts(peer):
        return Hop(peer, False, [peer] if peer else [], own_proto, own_host, own_proto, own_host)
    proto = (_values(headers, b"x-forwarded-proto") or [own_proto])[0].lower()
    host = (_values(headers, b"x-forwarded-host") or [own_host])[0]
    uri = _first(headers, b"x-forwarded-uri") or _first(headers, b"x-original-uri")
    return Hop(peer, True, [*_values(headers, b"x-forwarded-for"), *([peer] if peer else [])],
               proto if proto in _PROTOS else own_proto, host, own_proto, own_host, uri)


@functools.lru_cache(maxsize=4096)
def _node(value: str) -> str:
    """An RFC 7239 §4 value: a token, or a quoted-string (IPv6 nodes in brackets, §6)."""
    try:
        if ipaddress.ip_address(value).version == 6:
            value = f"[{value}]"
    except ValueError:
        pass
    if _TOKEN.match(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def forwarding_headers(scope: Scope, h: Hop) -> RawHeaders:
    """The forwarding headers to send upstream, replacing every incoming one."""
    headers: RawHeaders = scope["headers"]
    element = ";".join(f"{k}={_node(v)}" for k, v in (
        ("for", h.peer or "unknown"), ("proto", h.own_proto), ("host", h.own_host)) if v)
    forwarded = [*_values(headers, b"forwarded"), element] if h.trusted else [element]
    out: RawHeaders = [(b"forwarded", ", ".join(forwarded).encode("latin-1"))]
    if h.chain:
        out.append((b"x-forwarded-for", ", ".join(h.chain).encode("latin-1")))
    out.append((b"x-forwarded-proto", h.proto.encode("latin-1")))
    if h.host:
        out.append((b"x-forwarded-host", h.host.encode("latin-1")))
    if h.trusted:  # keep what the trusted proxy said about the rest of the path
        out.extend((k, v) for k, v in headers if k.lower() in (
            b"x-forwarded-port", b"x-forwarded-prefix", b"x-real-ip"))
    return out
