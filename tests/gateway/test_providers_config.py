"""Provider configuration and the presets' fixed parts (what can be checked without their servers)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from authgate.clock import FrozenClock
from authgate.errors import ConfigError
from authgate.gateway import Gateway
from authgate.gateway.providers import build_provider, load_providers
from authgate.gateway.providers.oauth2 import OAuth2Provider
from authgate.gateway.providers.presets import AAD, Apple, Google, MicrosoftAccount

from ..support import open_gate
from ._login_helpers import query
from .conftest import gateway_settings

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


@pytest.fixture
async def make_gw(tmp_path: Path, frozen: FrozenClock,
                  ) -> AsyncIterator[Callable[[dict[str, Any]], Any]]:
    """``await make_gw(providers)``: a Gateway over a real store with those providers."""
    opened: list[tuple[Any, Gateway]] = []

    async def make(providers: dict[str, Any]) -> Gateway:
        gate = await open_gate(tmp_path, frozen, gateway_settings(tmp_path, providers=providers))
        try:
            gw = Gateway(gate)
        except BaseException:
            await gate.close()
            raise
        opened.append((gate, gw))
        return gw

    yield make
    for gate, gw in opened:
        await gw.close()
        await gate.close()


def cfg(kind: str, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "client_id": "cid", "client_secret": "sec", **extra}


async def test_local_is_there_by_default_and_can_be_disabled(make_gw: Any) -> None:
    """No configuration: only ``local``; ``enabled = false`` removes it."""
    assert set((await make_gw({})).providers) == {"local"}
    assert set((await make_gw({"local": {"enabled": False}})).providers) == set()


async def test_several_providers_at_once(make_gw: Any) -> None:
    """Presets by table name, by type, and generic OIDC side by side; no I/O at load."""
    gw = await make_gw({"google": cfg("google"), "work": cfg("aad", tenant=TENANT),
                        "gh": cfg("github"), "fb": cfg("facebook"), "tw": cfg("twitter"),
                        "corp": cfg("oidc", issuer="https://idp.invalid")})
    kinds = {n: p.kind for n, p in gw.providers.items()}
    assert kinds == {"google": "google", "work": "aad", "gh": "github", "fb": "facebook",
                     "tw": "twitter", "corp": "oidc", "local": "local"}


@pytest.mark.parametrize(("table", "message"), [
    ({"type": "saml"}, "unknown"),
    (cfg("oidc"), "issuer"),
    ({"type": "github"}, "client_id"),
    (cfg("github", login_params={"state": "x"}), "state"),
    (cfg("github", login_params={"prompt": 1}), "login_params"),
    (cfg("github", clientid="typo"), "unknown setting"),
    (cfg("github", allowed_login_params=["redirect_uri"]), "allowed_login_params"),
    (cfg("github", token_endpoint_auth_method="private_key_jwt"), "auth_method"),
    (cfg("aad", tenant="../evil"), "tenant"),
    ({"type": "github", "client_id": "c", "client_secret_env": "AUTHGATE_TEST_UNSET"}, "not set"),
    ({"type": "apple", "client_id": "cid"}, "team_id"),
])
async def test_bad_provider_tables_fail_clearly(make_gw: Any, table: dict[str, Any],
                                                message: str) -> None:
    """A bad table is a ConfigError naming the problem (at start-up, not at first login)."""
    with pytest.raises(ConfigError, match=message):
        await make_gw({"p": table})


async def test_bad_provider_name(make_gw: Any) -> None:
    """Provider names are path segments: lower-case letters, digits, _ and -."""
    with pytest.raises(ConfigError, match="provider name"):
        await make_gw({"Bad Name": cfg("github")})


@pytest.mark.parametrize(("kind", "host", "scope"), [
    ("github", "github.com", "read:user user:email"),
    ("facebook", "www.facebook.com", "public_profile email"),
    ("twitter", "twitter.com", "tweet.read users.read offline.access"),
])
async def test_oauth2_presets_build_a_pkce_authorization_url(make_gw: Any, kind: str, host: str,
                                                             scope: str) -> None:
    """Fixed endpoints, default scopes, our callback, state and S256 challenge."""
    gw = await make_gw({"p": cfg(kind)})
    p = gw.providers["p"]
    url = await p.authorization_url(state="st", nonce="n", code_verifier="v" * 43,
                                    params=p.request_params({"login_hint": "bob",
                                                             "state": "evil"}))
    q = query(url)
    assert f"//{host}/" in url
    assert q["client_id"] == "cid" and q["state"] == "st" and q["response_type"] == "code"
    assert q["redirect_uri"] == "http://localhost/.auth/login/p/callback"
    assert q["scope"] == scope and q["login_hint"] == "bob"
    assert q["code_challenge_method"] == "S256" and len(q["code_challenge"]) == 43


async def test_request_params_allow_list(make_gw: Any) -> None:
    """login_params, then allow-listed query params; protected ones never; openid kept."""
    gw = await make_gw({"corp": cfg("oidc", issuer="https://idp.invalid",
                                    login_params={"prompt": "consent", "access_type": "offline"},
                                    allowed_login_params=["resource"])})
    p = gw.providers["corp"]
    got = p.request_params({"prompt": "login", "scope": "email", "resource": "api://x",
                            "redirect_uri": "evil", "nonce": "evil", "code_challenge": "evil",
                            "client_id": "evil", "response_type": "token", "unknown": "x"})
    assert got == {"prompt": "login", "access_type": "offline", "scope": "openid email",
                   "resource": "api://x"}


async def test_microsoft_issuers(make_gw: Any) -> None:
    """aad: tenant in the issuer (default common: checked against the token's tid)."""
    gw = await make_gw({"aad": cfg("aad"), "t": cfg("aad", tenant=TENANT),
                        "msa": cfg("microsoftaccount")})
    common, tenant, msa = gw.providers["aad"], gw.providers["t"], gw.providers["msa"]
    assert isinstance(common, AAD) and isinstance(tenant, AAD)
    assert isinstance(msa, MicrosoftAccount)
    assert common.oidc_issuer == "https://login.microsoftonline.com/common/v2.0"
    assert msa.oidc_issuer == "https://login.microsoftonline.com/consumers/v2.0"
    templated = "https://login.microsoftonline.com/{tenantid}/v2.0"
    assert common.issuer_matches(templated, common.oidc_issuer)
    assert not common.issuer_matches("https://evil.example/v2.0", common.oidc_issuer)
    common._meta = {"issuer": templated}
    assert common.expected_issuer({"tid": TENANT}) == templated.replace("{tenantid}", TENANT)
    assert common.expected_issuer({"tid": "../x"}) == ""
    assert "offline_access" in common.scopes


async def test_google_accepts_both_issuer_spellings(make_gw: Any) -> None:
    """Google's ID tokens say iss = accounts.google.com or https://accounts.google.com."""
    g = (await make_gw({"google": cfg("google")})).providers["google"]
    assert isinstance(g, Google)
    assert g.expected_issuer({"iss": "accounts.google.com"}) == "accounts.google.com"
    assert g.expected_issuer({"iss": "https://evil"}) == "https://accounts.google.com"


async def test_apple_client_secret_is_an_es256_jwt(make_gw: Any, frozen: FrozenClock) -> None:
    """Apple's client secret is minted from the team key: iss team, sub client, aud Apple."""
    key = ECKey.generate_key("P-256")
    gw = await make_gw({"apple": {"type": "apple", "client_id": "com.example.web",
                                  "team_id": "TEAM123", "key_id": "KEY123",
                                  "private_key": key.as_pem(private=True).decode()}})
    apple = gw.providers["apple"]
    assert isinstance(apple, Apple)
    assert apple.client_secret is not None
    token = jwt.decode(apple.client_secret, key, algorithms=["ES256"])
    assert token.header["kid"] == "KEY123"
    assert token.claims["iss"] == "TEAM123" and token.claims["sub"] == "com.example.web"
    assert token.claims["aud"] == "https://appleid.apple.com"
    assert apple.authorize_extra("n") == {"nonce": "n", "response_mode": "form_post"}
    assert apple.response_mode == "form_post"


async def test_provider_http_clients_close(make_gw: Any) -> None:
    """Every provider's HTTP client is closed by Gateway.close()."""
    gw = await make_gw({"gh": cfg("github")})
    p = gw.providers["gh"]
    assert isinstance(p, OAuth2Provider)
    await gw.close()
    assert p.http.is_closed


async def test_build_provider_rejects_a_non_table(make_gw: Any) -> None:
    gw = await make_gw({})
    with pytest.raises(ConfigError, match="table"):
        build_provider("x", "oidc", gw)  # type: ignore[arg-type]
    assert load_providers(gw).keys() == {"local"}
