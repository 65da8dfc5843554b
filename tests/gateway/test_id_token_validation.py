"""ID token validation (OIDC Core §3.1.3.7; SECURITY.md 40) with real keys and real signatures."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey

from authgate.gateway.providers.base import LoginRefused
from authgate.gateway.providers.oidc import validate_id_token

ISS = "https://idp.example"
CLIENT = "rp"
NOW = 1_800_000_000
RSA = RSAKey.generate_key(2048, parameters={"kid": "r1"})
EC = ECKey.generate_key("P-256", parameters={"kid": "e1"})
STRANGER = RSAKey.generate_key(2048, parameters={"kid": "r1"})  # same kid, other key
KEYS = KeySet.import_key_set({"keys": [RSA.as_dict(private=False), EC.as_dict(private=False)]})


def claims(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"iss": ISS, "aud": CLIENT, "sub": "u1", "iat": NOW, "exp": NOW + 600,
                            "nonce": "n-1"}
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def sign(payload: dict[str, Any], key: Any = RSA, alg: str = "RS256",
         header: dict[str, Any] | None = None) -> str:
    return jwt.encode({"alg": alg, "kid": key.kid, **(header or {})}, payload, key)


def check(token: str, nonce: str | None = "n-1", **kw: Any) -> dict[str, Any]:
    return validate_id_token(token, KEYS, issuer=ISS, client_id=CLIENT, nonce=nonce, now=NOW, **kw)


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_a_good_token_passes_with_rsa_and_ec() -> None:
    """A correctly signed token for us, with our nonce, yields its claims."""
    assert check(sign(claims()))["sub"] == "u1"
    assert check(sign(claims(), EC, "ES256"))["sub"] == "u1"
    assert check(sign(claims(aud=[CLIENT, "api"], azp=CLIENT)))["sub"] == "u1"


@pytest.mark.parametrize(("payload", "why"), [
    (claims(nonce="other"), "nonce"),
    (claims(nonce=None), "nonce"),
    (claims(iss=ISS + "/"), "iss"),
    (claims(iss="https://IDP.example"), "iss"),
    (claims(iss=None), "iss"),
    (claims(aud="someone-else"), "aud"),
    (claims(aud=None), "aud"),
    (claims(aud=[CLIENT, "api"]), "azp"),
    (claims(azp="someone-else"), "azp"),
    (claims(exp=NOW - 600), "expired"),
    (claims(exp=None), "exp"),
    (claims(iat=None), "iat"),
    (claims(iat=NOW + 3600), "iat"),
    (claims(sub=None), "sub"),
])
def test_bad_claims_are_refused(payload: dict[str, Any], why: str) -> None:
    """Wrong nonce/iss/aud/azp/exp/iat/sub -> refused, saying which."""
    with pytest.raises(LoginRefused, match=why):
        check(sign(payload))


def test_signature_problems_are_refused() -> None:
    """Flipped signature, edited payload, foreign key, unknown kid -> refused."""
    good = sign(claims())
    head, payload, sig = good.split(".")
    variants = [
        f"{head}.{payload}.{sig[:-4]}AAAA",
        f"{head}.{b64(claims(sub='admin'))}.{sig}",
        sign(claims(), STRANGER),
        sign(claims(), RSAKey.generate_key(2048, parameters={"kid": "unknown"})),
    ]
    for token in variants:
        with pytest.raises(LoginRefused, match="signature"):
            check(token)


def test_unsafe_algorithms_are_refused() -> None:
    """alg none (any case), HS256 keyed with the public key, and JWK/JKU headers -> refused."""
    for alg in ("none", "None", "nOnE"):
        with pytest.raises(LoginRefused):
            check(f"{b64({'alg': alg, 'kid': 'r1'})}.{b64(claims())}.")
    signing_input = f"{b64({'alg': 'HS256', 'kid': 'r1'})}.{b64(claims())}"
    mac = hmac.new(RSA.as_pem(private=False), signing_input.encode(), hashlib.sha256).digest()
    hs = f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    with pytest.raises(LoginRefused, match="algorithm"):
        check(hs)
    with pytest.raises(LoginRefused, match="external keys"):
        check(sign(claims(), header={"jku": "https://evil.example/jwks"}))
    with pytest.raises(LoginRefused, match="not accepted"):
        check(sign(claims()), algorithms=("ES256",))


def test_leeway_is_bounded() -> None:
    """Expired a minute ago passes the default leeway; ten minutes ago does not."""
    assert check(sign(claims(exp=NOW - 60)))["sub"] == "u1"
    with pytest.raises(LoginRefused, match="expired"):
        check(sign(claims(exp=NOW - 600)))


def test_without_nonce_check_a_token_without_nonce_passes() -> None:
    """Client-directed id_token login does not know a nonce: none is required then."""
    assert check(sign(claims(nonce=None)), nonce=None)["sub"] == "u1"


def test_garbage_is_refused_not_crashing() -> None:
    """Non-JWT input is a LoginRefused, never another exception."""
    for token in ("", "a.b", "a.b.c", "é.é.é", "x" * 20000, ".".join(["e30"] * 3)):
        with pytest.raises(LoginRefused):
            check(token)
