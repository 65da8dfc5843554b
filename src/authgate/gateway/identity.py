"""Who is calling: the identity behind a request, from whichever credential it carries.

Sources, in order (Easy Auth's): the ``X-ZUMO-AUTH`` header (session token),
``Authorization: Bearer`` (a session token, or an access token authgate
issued), then the session cookie. A credential that is present but bad makes
the request anonymous -- never a 500 -- and the reason is kept for the log
and the 401 body.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import InvalidToken
from .sessions import GatewaySession, user_key

if TYPE_CHECKING:
    from starlette.datastructures import Headers

    from . import Gateway


@dataclass
class Identity:
    user_key: str
    user_id: str
    provider: str
    name: str
    claims: list[tuple[str, str]] = field(default_factory=list)
    session: GatewaySession | None = None
    via: str = "cookie"
    """cookie | session_token | access_token"""
    token_exp: float | None = None


@dataclass
class Resolution:
    identity: Identity | None
    problem: str | None = None
    """Why a credential that was present was refused."""


def request_token(headers: Headers) -> str | None:
    """The session or access token a request carries: ``X-ZUMO-AUTH``, else Bearer."""
    return headers.get("x-zumo-auth") or bearer_token(headers.get("authorization"))


def bearer_token(value: str | None) -> str | None:
    """The token of an ``Authorization: Bearer`` header value (RFC 6750 §2.1)."""
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def resolve(gw: Gateway, headers: Headers, cookies: dict[str, str], *,
                  expired_grace: float = 0) -> Resolution:
    return await resolve_credentials(gw, request_token(headers), cookies.get(gw.cookie_name),
                                     expired_grace=expired_grace)


async def resolve_credentials(gw: Gateway, token: str | None, cookie: str | None, *,
                              expired_grace: float = 0) -> Resolution:
    """The identity behind a session/access token (preferred) or a session cookie value."""
    if token:
        return await _from_token(gw, token, expired_grace)
    if cookie:
        session = await gw.sessions.by_cookie(cookie)
        if session is None:
            return Resolution(None, "session cookie is invalid or the session has ended")
        return Resolution(Identity(session.user_key, session.user_id, session.provider,
                                   session.name, session.claims, session, "cookie"))
    return Resolution(None)


async def _from_token(gw: Gateway, token: str, expired_grace: float) -> Resolution:
    now = gw.gate.clock.now()
    try:
        if not gw.session_tokens.seen(token) and _is_access_token(token):
            claims = await gw.gate.access.verify(token)
            user = await gw.gate.accounts.get(str(claims["sub"]))
            if user is None or user.disabled:
                return Resolution(None, "the user of this access token is not active")
            return Resolution(Identity(user_key("local", user.id), user.id, "local",
                                       user.username, [], None, "access_token",
                                       float(claims["exp"])))
        sc = gw.session_tokens.verify(token, now=now, leeway=gw.gate.settings.tokens.leeway,
                                      expired_grace=expired_grace)
    except InvalidToken as exc:
        return Resolution(None, exc.description)
    if sc.sid is not None:
        session = await gw.sessions.by_sid(sc.sid)
        if session is None:
            return Resolution(None, "the session of this token has ended")
        return Resolution(Identity(session.user_key, session.user_id, session.provider,
                                   session.name, session.claims, session, "session_token", sc.exp))
    key = user_key(sc.provider, sc.user_id)
    name = sc.name or sc.user_id
    return Resolution(Identity(key, sc.user_id, sc.provider, name, [], None, "session_token", sc.exp))


def _is_access_token(token: str) -> bool:
    from ..signing import parse_header

    try:
        return str(parse_header(token).get("typ", "")).lower() == "at+jwt"
    except InvalidToken:
        return False
