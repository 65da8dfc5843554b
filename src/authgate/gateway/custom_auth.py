"""Session tokens for apps that authenticate users themselves (Easy Auth "custom authentication").

An app that signs users in by its own means (a password form, an API key, a
device code…) can still use the gateway: it mints a session token with the
gateway's shared HMAC key -- the hex ``session.signing_key``, compatible
with App Service's ``WEBSITE_AUTH_SIGNING_KEY`` -- and hands it to its client,
which sends it as ``X-ZUMO-AUTH`` (or ``Authorization: Bearer``). The gateway
accepts it on signature, ``iss``/``aud`` (the public URL) and lifetime, and
treats the caller as ``user_id`` at ``provider``::

    from authgate import session_token

    token = session_token("user-42", signing_key_hex=os.environ["AUTHGATE_SESSION__SIGNING_KEY"],
                          public_url="https://app.example.com")

Such a token has no server-side session: it cannot be ended by logout before
it expires, so keep ``lifetime`` short.
"""

from __future__ import annotations

import time

from .session_tokens import mint_session_token

__all__ = ["session_token"]


def session_token(user_id: str, provider: str = "custom", *, signing_key_hex: str,
                  public_url: str, lifetime: float = 8 * 3600, name: str | None = None,
                  now: float | None = None) -> str:
    """A session token (HS256/384/512 by key length) the gateway accepts for ``user_id``."""
    if not user_id:
        raise ValueError("user_id must not be empty")
    return mint_session_token(user_id=user_id, provider=provider, signing_key=signing_key_hex,
                              public_url=public_url, now=time.time() if now is None else now,
                              lifetime=lifetime, name=name)
