"""Access-token verification against the JWT attack catalogue (SECURITY.md 1-16, RFC 8725)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from authgate.clock import FrozenClock
from authgate.errors import InvalidToken
from authgate.service import AuthGate

from .support import open_gate


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_es256(key: ECKey, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """Sign anything we like with an EC key (joserfc itself refuses to emit hostile headers)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    der = key.private_key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))  # type: ignore[union-attr]
    r, s = decode_dss_signature(der)
    return f"{signing_input}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def forge(header: dict[str, Any], claims: dict[str, Any], sig: bytes = b"") -> str:
    return ".".join([b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), b64(sig)])


@pytest.fixture
async def gate(tmp_path: Path) -> AsyncIterator[AuthGate]:
    g = await open_gate(tmp_path, FrozenClock())
    yield g
    await g.close()


def mint(gate: AuthGate, **extra: Any) -> tuple[str, dict[str, Any]]:
    return gate.access.mint(sub="u1", client_id="c1", scope="api", grant_id="g1", extra=extra or None)


def kid(gate: AuthGate) -> str:
    assert gate.keys.active is not None
    return gate.keys.active.kid


async def test_valid_token_verifies_and_is_cached(gate: AuthGate) -> None:
    """A fresh token verifies, and a second verification is served from the cache."""
    token, claims = mint(gate)
    assert (await gate.access.verify(token))["jti"] == claims["jti"]
    assert len(gate.access._cache) == 1
    assert (await gate.access.verify(token))["jti"] == claims["jti"]


@pytest.mark.parametrize("alg", ["none", "None", "nOnE", "NONE"])
async def test_alg_none(gate: AuthGate, alg: str) -> None:
    """Unsigned tokens in any spelling are refused (1)."""
    _t, claims = mint(gate)
    with pytest.raises(InvalidToken):
        await gate.access.verify(forge({"alg": alg, "typ": "at+jwt", "kid": kid(gate)}, claims))


async def test_hs256_signed_with_our_public_key(gate: AuthGate) -> None:
    """HMAC with the public key as secret is refused (2)."""
    _t, claims = mint(gate)
    assert gate.keys.active is not None
    pub = json.dumps(gate.keys.active.public_jwk()).encode()
    head = b64(json.dumps({"alg": "HS256", "typ": "at+jwt", "kid": kid(gate)}).encode())
    body = b64(json.dumps(claims).encode())
    sig = hmac.new(pub, f"{head}.{body}".encode(), hashlib.sha256).digest()
    with pytest.raises(InvalidToken):
        await gate.access.verify(f"{head}.{body}.{b64(sig)}")


async def test_rs256_header_on_ec_key(gate: AuthGate) -> None:
    """An algorithm other than the key's own is refused (3)."""
    rsa = RSAKey.generate_key(2048, private=True)
    _t, claims = mint(gate)
    token = jwt.encode({"alg": "RS256", "typ": "at+jwt", "kid": kid(gate)}, claims, rsa)
    with pytest.raises(InvalidToken):
        await gate.access.verify(token)


async def test_flipped_signature_and_edited_payload(gate: AuthGate) -> None:
    """Stripped/flipped signatures and edited payloads are refused (4)."""
    token, claims = mint(gate)
    head, body, sig = token.split(".")
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    edited = b64(json.dumps({**claims, "sub": "admin"}).encode())
    for bad in (f"{head}.{body}.", f"{head}.{body}.{flipped}", f"{head}.{edited}.{sig}", f"{head}.{body}"):
        with pytest.raises(InvalidToken):
            await gate.access.verify(bad)


@pytest.mark.parametrize("bad_kid", ["unknown", "../../etc/passwd", "' OR 1=1 --", "a\x00b", None, 7])
async def test_unknown_or_hostile_kid(gate: AuthGate, bad_kid: object) -> None:
    """A kid that is not ours is refused without trying keys (5, 6)."""
    other = ECKey.generate_key("P-256", private=True)
    _t, claims = mint(gate)
    header: dict[str, Any] = {"alg": "ES256", "typ": "at+jwt"}
    if bad_kid is not None:
        header["kid"] = bad_kid
    with pytest.raises(InvalidToken):
        await gate.access.verify(sign_es256(other, header, claims))


@pytest.mark.parametrize("field", ["jku", "x5u", "jwk", "x5c"])
async def test_external_key_headers(gate: AuthGate, field: str) -> None:
    """jku/x5u/jwk/x5c are never trusted (7)."""
    token, _ = mint(gate)
    head, body, sig = token.split(".")
    header = json.loads(base64.urlsafe_b64decode(head + "=="))
    header[field] = "https://evil.example/keys"
    with pytest.raises(InvalidToken):
        await gate.access.verify(f"{b64(json.dumps(header).encode())}.{body}.{sig}")


async def test_unknown_crit(gate: AuthGate) -> None:
    """An unknown crit header is refused (8)."""
    assert gate.keys.active is not None
    _t, claims = mint(gate)
    key = gate.keys.active.key
    assert isinstance(key, ECKey)
    good = sign_es256(key, {"alg": "ES256", "typ": "at+jwt", "kid": kid(gate)}, claims)
    assert (await gate.access.verify(good))["jti"] == claims["jti"]  # the forger signs correctly
    token = sign_es256(key, {"alg": "ES256", "typ": "at+jwt", "kid": kid(gate), "crit": ["x-bind"],
                             "x-bind": 1}, claims)
    with pytest.raises(InvalidToken):
        await gate.access.verify(token)


def resign(gate: AuthGate, claims: dict[str, Any], typ: str = "at+jwt") -> str:
    return gate.keys.sign(claims, typ=typ)


@pytest.mark.parametrize("change", [
    {"exp": None}, {"exp": -3600}, {"exp": "soon"}, {"nbf": 3600}, {"iat": 3600},
    {"iss": "http://localhost/.auth/"}, {"iss": "HTTP://LOCALHOST/.auth"}, {"iss": None},
    {"aud": "https://other.example"}, {"aud": None}, {"sub": None}, {"client_id": None}, {"jti": None},
])
async def test_claim_checks(gate: AuthGate, change: dict[str, Any]) -> None:
    """exp/nbf/iat/iss/aud and required claims are enforced (9, 10, 11)."""
    _t, claims = mint(gate)
    now = int(gate.clock.now())
    for k, v in change.items():
        if v is None:
            claims.pop(k)
        elif isinstance(v, int) and k in ("exp", "nbf", "iat"):
            claims[k] = now + v
        else:
            claims[k] = v
    with pytest.raises(InvalidToken):
        await gate.access.verify(resign(gate, claims))


async def test_leeway_is_bounded(gate: AuthGate) -> None:
    """A clock skew inside the leeway is tolerated, beyond it is not (57)."""
    token, _ = mint(gate)
    gate.clock.advance(3600 + 30)  # type: ignore[attr-defined]
    await gate.access.verify(token)
    gate.clock.advance(31)  # type: ignore[attr-defined]
    with pytest.raises(InvalidToken):
        await gate.access.verify(token)


async def test_id_token_and_plain_jwt_are_not_access_tokens(gate: AuthGate) -> None:
    """typ must be at+jwt: ID tokens and typ JWT are refused (12)."""
    _t, claims = mint(gate)
    for typ in ("JWT", "jwt", "id_token"):
        with pytest.raises(InvalidToken):
            await gate.access.verify(resign(gate, claims, typ=typ))


@pytest.mark.parametrize("token", [
    "a.b.c.d.e", '{"payload":"x","signatures":[]}', "\xff\xfe.a.b", "...", "", "a" * 20_000,
    b64(b"\xff\xfe") + ".e30.", b64(b'{"alg":"ES256","enc":"A256GCM"}') + ".e30.sig",
])
async def test_jwe_json_and_garbage(gate: AuthGate, token: str) -> None:
    """JWE, JSON serialisation, non-UTF-8 and oversized input are refused (14, 15)."""
    with pytest.raises(InvalidToken):
        await gate.access.verify(token)


async def test_revocation_applies_to_cached_tokens(gate: AuthGate) -> None:
    """A cached token stops verifying as soon as its jti, grant or user is denied."""
    for deny in ("jti", "grant", "user"):
        token, claims = mint(gate)
        await gate.access.verify(token)
        if deny == "jti":
            await gate.denylist.deny_jti(claims["jti"], claims["exp"])
        elif deny == "grant":
            await gate.denylist.deny_grant("g1", claims["exp"])
        else:
            await gate.denylist.deny_user("u1", claims["exp"])
        with pytest.raises(InvalidToken):
            await gate.access.verify(token)
        gate.denylist._entries.clear()


async def test_retired_key_verifies_only_until_its_tokens_expired(gate: AuthGate) -> None:
    """After rotation the old key verifies its tokens; once they have expired it is gone (57)."""
    token, _ = mint(gate)
    old = kid(gate)
    await gate.keys.rotate()
    assert kid(gate) != old
    assert old in {k["kid"] for k in gate.keys.jwks()["keys"]}
    gate.access._cache.clear()
    await gate.access.verify(token)
    gate.clock.advance(3600 + 61 + 2 * gate.keys.RELOAD_SECONDS)  # type: ignore[attr-defined]
    await gate.keys.load()
    assert old not in {k["kid"] for k in gate.keys.jwks()["keys"]}
    with pytest.raises(InvalidToken):
        await gate.access.verify(token)


async def test_key_rotated_by_another_process_is_picked_up(gate: AuthGate) -> None:
    """A token signed with a key another instance introduced verifies after a bounded reload."""
    from authgate.access_tokens import AccessTokens
    from authgate.signing import KeySet

    other_keys = KeySet(gate.store, "ES256", 3600)
    await other_keys.load()
    await other_keys.rotate()
    other = AccessTokens(other_keys, gate.clock, gate.denylist, issuer=gate.access.issuer,
                         audience=gate.access.audience, lifetime=3600, leeway=60)
    token, _ = other.mint(sub="u1", client_id="c1", scope="api")
    with pytest.raises(InvalidToken):
        await gate.access.verify(token)  # just loaded: no reload storm on unknown kids
    gate.clock.advance(6)  # type: ignore[attr-defined]
    assert (await gate.access.verify(token))["sub"] == "u1"


@pytest.mark.filterwarnings("ignore:EdDSA is deprecated:joserfc.errors.SecurityWarning")
@pytest.mark.parametrize("alg", ["ES256", "EdDSA", "RS256"])
async def test_every_signing_algorithm_verifies_with_joserfc(gate: AuthGate, alg: str) -> None:
    """Tokens we sign (without joserfc) are valid compact JWS to joserfc and to ourselves."""
    await gate.keys.rotate(alg)
    token, claims = mint(gate, name="Zoë")
    assert gate.keys.active is not None
    decoded = jwt.decode(token, gate.keys.active.key, algorithms=[alg])
    assert decoded.header == {"alg": alg, "kid": kid(gate), "typ": "at+jwt"}
    assert decoded.claims == claims
    assert (await gate.access.verify(token))["name"] == "Zoë"
    head, payload, sig = token.split(".")
    bad = f"{head}.{payload}.{sig[:-4]}{'AAAA' if sig[-4:] != 'AAAA' else 'BBBB'}"
    with pytest.raises(InvalidToken):
        await gate.access.verify(bad)


@pytest.mark.filterwarnings("ignore:EdDSA is deprecated:joserfc.errors.SecurityWarning")
@pytest.mark.parametrize("alg", ["ES256", "EdDSA", "RS256"])
async def test_tokens_joserfc_signs_with_our_key_verify_and_odd_encodings_do_not(
        gate: AuthGate, alg: str) -> None:
    """Our verification (straight on cryptography) accepts what an independent JWS library
    signs with our key, and only the one canonical compact form of it."""
    await gate.keys.rotate(alg)
    assert gate.keys.active is not None
    _t, claims = mint(gate)
    token = jwt.encode({"alg": alg, "kid": kid(gate), "typ": "at+jwt"}, claims,
                       gate.keys.active.key, algorithms=[alg])
    assert (await gate.access.verify(token))["sub"] == "u1"
    head, payload, sig = token.split(".")
    raw = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
    for bad in (
        f"{head}.{payload}.{sig}=",  # padding
        f"{head}.{payload}.{sig[:10]}!{sig[10:]}",  # a character base64 decoders skip
        f"{head}.{payload}.{sig} ",
        f"{head}.{payload}.{sig}A",  # one character too many
        f"{head}.{payload}.{b64(raw[:-1])}",  # one byte short
        f"{head}.{payload}.{b64(raw + b'x')}",
        f"{head}=.{payload}.{sig}",
        f"{head}.{payload}é.{sig}",
    ):
        with pytest.raises(InvalidToken):
            await gate.access.verify(bad)


async def test_es256_signature_must_be_r_and_s_of_32_bytes(gate: AuthGate) -> None:
    """RFC 7518 §3.4: a DER signature, or r || s of another length, is refused."""
    token, _claims = mint(gate)
    head, payload, sig = token.split(".")
    raw = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    # r || 0x00 || s carries the same numbers: only the length check refuses it.
    for bad in (der, raw[:32] + b"\x00" + raw[32:], raw[:32]):
        with pytest.raises(InvalidToken, match="signature"):
            await gate.access.verify(f"{head}.{payload}.{b64(bad)}")
