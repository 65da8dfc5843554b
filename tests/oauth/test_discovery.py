"""Issuer metadata (OIDC Discovery 1.0, RFC 8414) and the JWKS."""

from __future__ import annotations

import httpx
from joserfc import jwt
from joserfc.jwk import KeySet

from authgate.service import AuthGate

CONFIG = "/.auth/.well-known/openid-configuration"
ISSUER = "http://localhost/.auth"


async def test_discovery_document_describes_what_we_do(http: httpx.AsyncClient) -> None:
    r = await http.get(CONFIG)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    meta = r.json()
    assert meta["issuer"] == ISSUER
    assert meta["authorization_endpoint"] == ISSUER + "/oauth2/authorize"
    assert meta["token_endpoint"] == ISSUER + "/oauth2/token"
    assert meta["jwks_uri"] == ISSUER + "/keys"
    assert meta["userinfo_endpoint"] == ISSUER + "/oauth2/userinfo"
    assert meta["revocation_endpoint"] == ISSUER + "/oauth2/revoke"
    assert meta["introspection_endpoint"] == ISSUER + "/oauth2/introspect"
    assert meta["end_session_endpoint"] == ISSUER + "/oauth2/logout"
    assert meta["response_types_supported"] == ["code"]
    assert set(meta["grant_types_supported"]) == {"authorization_code", "refresh_token",
                                                  "client_credentials"}
    assert "password" not in meta["grant_types_supported"]
    assert meta["subject_types_supported"] == ["public"]
    assert meta["id_token_signing_alg_values_supported"] == ["ES256"]
    assert meta["token_endpoint_auth_methods_supported"] == [
        "client_secret_basic", "client_secret_post", "none"]
    assert "none" in meta["revocation_endpoint_auth_methods_supported"]
    assert "none" not in meta["introspection_endpoint_auth_methods_supported"]
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert {"openid", "profile", "email", "offline_access"} <= set(meta["scopes_supported"])
    assert {"sub", "iss", "aud", "exp", "iat", "nonce", "email"} <= set(meta["claims_supported"])
    assert meta["authorization_response_iss_parameter_supported"] is True


async def test_every_advertised_endpoint_exists(http: httpx.AsyncClient) -> None:
    """Each URL of the document is routed here (none answers 404)."""
    meta = (await http.get(CONFIG)).json()
    for name, url in meta.items():
        if name.endswith(("_endpoint", "_uri")):
            assert url.startswith(ISSUER + "/"), name
            r = await http.get(url.removeprefix("http://localhost"))
            assert r.status_code != 404, name


async def test_issuer_follows_public_url(http: httpx.AsyncClient, gate: AuthGate) -> None:
    gate.settings.public_url = "https://id.example.com/"
    meta = (await http.get(CONFIG)).json()
    assert meta["issuer"] == "https://id.example.com/.auth"
    assert meta["jwks_uri"] == "https://id.example.com/.auth/keys"


async def test_jwks_publishes_public_keys_only(http: httpx.AsyncClient, gate: AuthGate) -> None:
    r = await http.get("/.auth/keys")
    assert r.status_code == 200
    assert r.headers["cache-control"] == "public, max-age=300"
    jwks = r.json()
    assert jwks == gate.keys.jwks()
    assert gate.keys.active is not None
    assert [k["kid"] for k in jwks["keys"]] == [gate.keys.active.kid]
    for key in jwks["keys"]:
        assert "d" not in key
        assert key["alg"] == "ES256"
        assert key["use"] == "sig"


async def test_tokens_verify_against_the_published_jwks(http: httpx.AsyncClient,
                                                        gate: AuthGate) -> None:
    """What a relying party does: fetch the JWKS, check our access token's signature with it."""
    token, _claims = gate.access.mint(sub="u1", client_id="c1", scope="openid")
    keys = KeySet.import_key_set((await http.get("/.auth/keys")).json())
    decoded = jwt.decode(token, keys, algorithms=["ES256"])
    assert decoded.claims["iss"] == ISSUER


async def test_rotation_keeps_the_old_key_published(http: httpx.AsyncClient,
                                                    gate: AuthGate) -> None:
    """Tokens signed before a rotation must stay verifiable until they expire."""
    assert gate.keys.active is not None
    old = gate.keys.active.kid
    new = await gate.keys.rotate()
    kids = {k["kid"] for k in (await http.get("/.auth/keys")).json()["keys"]}
    assert kids == {old, new.kid}
