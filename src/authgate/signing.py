"""Signing keys and JWTs: ES256 by default, EdDSA and RS256 selectable.

Keys live sealed in the store (kind ``signing_key``) so every instance shares
one JWKS. ``rotate`` adds a new active key; the previous one stops signing but
keeps verifying -- and stays in the JWKS -- until every token it signed has
expired (``retire_at``), then it is dropped.

Verification is allow-list based (RFC 8725): the header's ``alg`` must be the
one registered for the ``kid`` it names; ``kid`` must be one of ours (no key
is tried blindly); ``jku``/``x5u``/``jwk``/``x5c`` are never honoured; an
unknown ``crit`` is refused; JWE and the JSON serialisation are refused.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from joserfc.jwk import ECKey, KeyParameters, OKPKey, RSAKey

from .errors import InvalidToken
from .hashing import b64url, b64url_decode, new_id
from .store.sealed import SealedStore

Key = ECKey | OKPKey | RSAKey
KIND = "signing_key"
MAX_TOKEN_BYTES = 8192


def generate_key(alg: str, kid: str | None = None) -> Key:
    params: KeyParameters = {"kid": kid or time.strftime("k%Y%m%d-") + new_id(4), "alg": alg, "use": "sig"}
    if alg == "ES256":
        return ECKey.generate_key("P-256", parameters=params, private=True)
    if alg == "EdDSA":
        return OKPKey.generate_key("Ed25519", parameters=params, private=True)
    if alg == "RS256":
        return RSAKey.generate_key(2048, parameters=params, private=True)
    raise ValueError(f"unsupported signing algorithm {alg}")


def import_key(data: dict[str, Any]) -> Key:
    kty = data.get("kty")
    if kty == "EC":
        return ECKey.import_key(data)
    if kty == "OKP":
        return OKPKey.import_key(data)
    if kty == "RSA":
        return RSAKey.import_key(data)
    raise ValueError(f"unsupported key type {kty}")


@dataclass
class SigningKey:
    kid: str
    alg: str
    key: Key
    created_at: float
    retire_at: float | None = None
    """None while active or standing by; set when a newer key took over."""
    _signer: Callable[[bytes], bytes] | None = field(default=None, init=False, repr=False, compare=False)
    _headers: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)
    """Encoded JWS header per ``typ``: the same few bytes for every token this key signs."""

    _checker: Callable[[bytes, bytes], bool] | None = field(default=None, init=False, repr=False,
                                                         compare=False)

    def public_jwk(self) -> dict[str, Any]:
        return dict(self.key.as_dict(private=False))

    def verifies(self, signing_input: bytes, signature: bytes) -> bool:
        """True when ``signature`` is this key's JWS signature (RFC 7518 §3) of ``signing_input``."""
        if self._checker is None:
            self._checker = _raw_checker(self.alg, self.key)
        return self._checker(signing_input, signature)

    def sign(self, claims: dict[str, Any], typ: str) -> str:
        """A compact JWS (RFC 7515 §7.1) of ``claims`` with header ``alg``, ``kid``, ``typ``."""
        if self._signer is None:
            self._signer = _raw_signer(self.alg, self.key)
        header = self._headers.get(typ)
        if header is None:
            header = self._headers[typ] = _b64json({"alg": self.alg, "kid": self.kid, "typ": typ})
        signing_input = header + "." + _b64json(claims)
        return signing_input + "." + b64url(self._signer(signing_input.encode("ascii")))


_COMPACT = json.JSONEncoder(separators=(",", ":"))
"""Built once: ``json.dumps`` with options builds an encoder per call."""


def _b64json(obj: dict[str, Any]) -> str:
    return b64url(_COMPACT.encode(obj).encode("ascii"))


def _raw_signer(alg: str, key: Key) -> Callable[[bytes], bytes]:
    """The signature function of RFC 7518 §3 (RFC 8037 §3.1 for EdDSA), straight on
    ``cryptography``: joserfc's generic JWT encoder cost as much again as the signature."""
    private: Any = key.private_key
    if private is None:
        raise RuntimeError(f"signing key {key.kid} has no private part")
    if alg == "ES256":
        ecdsa = ec.ECDSA(hashes.SHA256())

        def es256(data: bytes) -> bytes:
            r, s = decode_dss_signature(private.sign(data, ecdsa))
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")  # JWS wants r || s, not DER
        return es256
    if alg == "EdDSA":
        return lambda data: bytes(private.sign(data))
    if alg == "RS256":
        pkcs1, sha256 = padding.PKCS1v15(), hashes.SHA256()
        return lambda data: bytes(private.sign(data, pkcs1, sha256))
    raise ValueError(f"unsupported signing algorithm {alg}")


def _raw_checker(alg: str, key: Key) -> Callable[[bytes, bytes], bool]:
    """The signature check of RFC 7518 §3 (RFC 8037 §3.1 for EdDSA), straight on
    ``cryptography``, like :func:`_raw_signer`: joserfc's JWS layer cost a third as much
    again as the ES256 verification itself. The algorithm is the key's, never the token's."""
    public: Any = key.public_key

    def checked(verify: Callable[[bytes, bytes], None]) -> Callable[[bytes, bytes], bool]:
        def check(data: bytes, signature: bytes) -> bool:
            try:
                verify(data, signature)
            except (InvalidSignature, ValueError):
                return False
            return True
        return check

    if alg == "ES256":
        ecdsa = ec.ECDSA(hashes.SHA256())

        def es256(data: bytes, signature: bytes) -> None:
            if len(signature) != 64:  # r || s, 32 bytes each (RFC 7518 §3.4)
                raise InvalidSignature
            der = encode_dss_signature(int.from_bytes(signature[:32], "big"),
                                       int.from_bytes(signature[32:], "big"))
            public.verify(der, data, ecdsa)
        return checked(es256)
    if alg == "EdDSA":
        return checked(lambda data, signature: public.verify(signature, data))
    if alg == "RS256":
        pkcs1, sha256 = padding.PKCS1v15(), hashes.SHA256()
        return checked(lambda data, signature: public.verify(signature, data, pkcs1, sha256))
    raise ValueError(f"unsupported signing algorithm {alg}")


_SEGMENT = re.compile(r"[A-Za-z0-9_-]*")


def _segment(text: str) -> bytes:
    """One base64url segment of a compact JWS, strictly: no padding, no other characters."""
    if not _SEGMENT.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not base64url")
    return b64url_decode(text)


class KeySet:
    """The signing keys in force, loaded from the store."""

    on_change: Callable[[str], Awaitable[None]] | None = None
    """Awaited after a rotation (with the new kid); :mod:`authgate.cluster` tells the other instances."""

    def __init__(self, store: SealedStore, alg: str, max_token_lifetime: float) -> None:
        self.store = store
        self.alg = alg
        self.max_token_lifetime = max_token_lifetime
        self.keys: dict[str, SigningKey] = {}
        self.active: SigningKey | None = None
        self.loaded_at = float("-inf")

    RELOAD_SECONDS = 30.0
    """How stale an instance's view of the keys may get; rotation keeps old keys this much longer."""

    async def refresh_if_stale(self, max_age: float | None = None) -> None:
        """Pick up keys rotated by another process (CLI, other instance)."""
        if self.store.clock.now() - self.loaded_at >= (self.RELOAD_SECONDS if max_age is None else max_age):
            await self.load()

    async def load(self, *, create: bool = True) -> None:
        now = self.store.clock.now()
        keys: dict[str, SigningKey] = {}
        for entry in await self.store.all(KIND):
            d = entry.data
            keys[entry.id] = SigningKey(entry.id, d["alg"], import_key(d["jwk"]),
                                        d["created_at"], d.get("retire_at"))
        usable = [k for k in keys.values() if k.retire_at is None]
        if not usable and create:
            await self.rotate()
            return
        self.keys = {kid: k for kid, k in keys.items() if k.retire_at is None or k.retire_at > now}
        self.active = max(usable, key=lambda k: k.created_at) if usable else None
        self.loaded_at = now

    async def _save(self, k: SigningKey) -> None:
        expires = k.retire_at
        await self.store.put(KIND, k.kid, {
            "alg": k.alg, "jwk": k.key.as_dict(private=True),
            "created_at": k.created_at, "retire_at": k.retire_at,
        }, expires_at=expires)

    async def rotate(self, alg: str | None = None) -> SigningKey:
        """Introduce a new active key; the old one verifies until its tokens expired."""
        now = self.store.clock.now()
        new = SigningKey("", alg or self.alg, generate_key(alg or self.alg), now)
        new.kid = str(new.key.kid)
        await self._save(new)
        for entry in await self.store.all(KIND):
            # Only keys older than ours: two instances rotating at once must not retire each other.
            older = entry.data["created_at"] <= new.created_at
            if entry.id != new.kid and entry.data.get("retire_at") is None and older:
                # Other instances may sign with the old key until they reload (RELOAD_SECONDS).
                retire = now + self.max_token_lifetime + 2 * self.RELOAD_SECONDS
                old = SigningKey(entry.id, entry.data["alg"], import_key(entry.data["jwk"]),
                                 entry.data["created_at"], retire)
                await self._save(old)
        await self.load(create=False)
        if self.on_change is not None:
            await self.on_change(new.kid)
        return new

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.public_jwk() for k in self.keys.values()]}

    # -- JWT --------------------------------------------------------------------

    def sign(self, claims: dict[str, Any], typ: str = "JWT") -> str:
        k = self.active
        if k is None:
            raise RuntimeError("no active signing key")
        return k.sign(claims, typ)

    def verify(self, token: str, *, typ: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """Check structure and signature; return (header, claims). Claims are checked by callers."""
        header, parts = _vetted_header(token)
        kid = header.get("kid")
        k = self.keys.get(kid) if isinstance(kid, str) else None
        if k is None:
            raise InvalidToken("token signed with an unknown key", unknown_key=isinstance(kid, str))
        if header.get("alg") != k.alg:
            raise InvalidToken("token algorithm does not match its key")
        if typ is not None and str(header.get("typ", "")).lower() not in (typ, "application/" + typ):
            raise InvalidToken(f"token type must be {typ}")
        try:
            signing_input = token[:len(parts[0]) + 1 + len(parts[1])].encode("ascii")
            valid = k.verifies(signing_input, _segment(parts[2]))
        except (ValueError, UnicodeEncodeError):
            valid = False
        if not valid:
            raise InvalidToken("token signature is invalid")
        try:
            claims = json.loads(_segment(parts[1]))
        except (ValueError, UnicodeDecodeError):
            raise InvalidToken("token claims are not valid JSON") from None
        if not isinstance(claims, dict):
            raise InvalidToken("token claims are not a JSON object")
        return header, claims


_FORBIDDEN_HEADERS = ("jku", "x5u", "jwk", "x5c")


def parse_header(token: str) -> dict[str, Any]:
    """Parse and vet a compact JWS header before any key is touched."""
    return _vetted_header(token)[0]


def _vetted_header(token: str) -> tuple[dict[str, Any], list[str]]:
    if not isinstance(token, str) or len(token) > MAX_TOKEN_BYTES:
        raise InvalidToken("token too large")
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidToken("not a compact JWS (JWE and JSON serialisation are not accepted)")
    try:
        header = json.loads(_segment(parts[0]).decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise InvalidToken("malformed token header") from None
    if not isinstance(header, dict):
        raise InvalidToken("malformed token header")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg.lower() == "none":
        raise InvalidToken("unsigned tokens are not accepted")
    if any(h in header for h in _FORBIDDEN_HEADERS):
        raise InvalidToken("token header refers to external keys")
    if "crit" in header:
        raise InvalidToken("token has critical header parameters we do not understand")
    if "enc" in header:
        raise InvalidToken("encrypted tokens are not accepted")
    return header, parts
