"""Proof Key for Code Exchange, RFC 7636 -- S256 only.

``plain`` is refused (RFC 9700 §2.1.1): it protects nothing against an
attacker who can read the authorization request.
"""

from __future__ import annotations

import hashlib
import re

from ..errors import InvalidGrant, InvalidRequest
from ..hashing import b64url, equal

_VERIFIER = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")  # §4.1
_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")        # base64url(sha256) without padding


def check_challenge(challenge: str | None, method: str | None) -> None:
    """Validate the authorization request's challenge (§4.3)."""
    if challenge is None:
        if method is not None:
            raise InvalidRequest("code_challenge_method without code_challenge")
        return
    if (method or "plain") != "S256":
        raise InvalidRequest("code_challenge_method must be S256")
    if not _CHALLENGE.match(challenge):
        raise InvalidRequest("code_challenge must be a base64url SHA-256 digest")


def s256(verifier: str) -> str:
    return b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def verify(challenge: str | None, verifier: str | None) -> None:
    """Check the token request's verifier against the stored challenge (§4.6)."""
    if challenge is None:
        if verifier is not None:
            # A verifier with no challenge is a downgrade attempt (RFC 9700 §4.8.2).
            raise InvalidRequest("code_verifier sent but the authorization request had no code_challenge")
        return
    if verifier is None:
        raise InvalidGrant("code_verifier is required")
    if not _VERIFIER.match(verifier) or not equal(s256(verifier), challenge):
        raise InvalidGrant("code_verifier does not match the code_challenge")
