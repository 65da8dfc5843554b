"""The header builders and the policy's decisions, as pure functions (the HTTP tests cover wiring)."""

from __future__ import annotations

import base64
import json

import pytest
from starlette.datastructures import Headers

from authgate.errors import ConfigError
from authgate.gateway.forwarded import TrustedProxies, forwarding_headers, hop
from authgate.gateway.headers import (
    NAME_TYP,
    NAMEID_TYP,
    is_identity_header,
    principal_headers,
    provider_label,
    strip_identity,
    token_headers,
)
from authgate.gateway.identity import Identity
from authgate.gateway.policy import compile_pattern, is_browser, is_canonical, original_target
from authgate.gateway.provider_tokens import ProviderTokens


@pytest.mark.parametrize("name", [
    b"X-MS-CLIENT-PRINCIPAL", b"x-ms-client-principal-id", b"X_MS_CLIENT_PRINCIPAL_NAME",
    b"x-MS-client_principal-IDP", b"X-MS-TOKEN-AAD-ACCESS-TOKEN", b"x_ms_token_aad_access_token",
    b"X-Ms-Token-Whatever-Else", b" x-ms-token-aad-id-token",
])
def test_every_spelling_of_an_identity_header_is_recognised(name: bytes) -> None:
    """Case, underscores for dashes and stray whitespace do not hide an identity header."""
    assert is_identity_header(name)


@pytest.mark.parametrize("name", [b"x-ms-request-id", b"x-ms-client", b"x-token-ms", b"accept"])
def test_other_headers_are_not_identity_headers(name: bytes) -> None:
    """Headers outside the two families are left alone."""
    assert not is_identity_header(name)


def test_strip_identity_removes_duplicates_and_keeps_the_rest() -> None:
    """Every copy goes; order and values of other headers stay."""
    raw = [(b"x-ms-client-principal-id", b"a"), (b"accept", b"*/*"),
           (b"X-MS-CLIENT-PRINCIPAL-ID", b"b"), (b"x_ms_token_corp_access_token", b"c")]
    assert strip_identity(raw) == [(b"accept", b"*/*")]


def test_provider_label_upper_cases_and_dashes() -> None:
    """X-MS-TOKEN-<PROVIDER>: upper case, anything not alphanumeric becomes '-'."""
    assert provider_label("aad") == "AAD"
    assert provider_label("oidc:corp_1") == "OIDC-CORP-1"


def _identity(name: str = "Alice", claims: list[tuple[str, str]] | None = None) -> Identity:
    return Identity("corp|u1", "u1", "corp", name, claims or [("email", "a@example.com")])


def test_principal_is_easy_auth_json_in_base64() -> None:
    """auth_typ, claims [{typ,val}], name_typ, role_typ; name and id claims added when absent."""
    headers = dict(principal_headers(_identity()))
    doc = json.loads(base64.b64decode(headers[b"x-ms-client-principal"]))
    assert doc["auth_typ"] == "corp"
    assert {"typ": "email", "val": "a@example.com"} in doc["claims"]
    assert {"typ": NAME_TYP, "val": "Alice"} in doc["claims"]
    assert {"typ": NAMEID_TYP, "val": "u1"} in doc["claims"]
    assert headers[b"x-ms-client-principal-name"] == b"Alice"
    assert headers[b"x-ms-client-principal-idp"] == b"corp"


def test_no_cr_or_lf_ever_reaches_a_header() -> None:
    """A name with CR/LF is left out (never folded); the base64 principal still carries it."""
    headers = dict(principal_headers(_identity("Eve\r\nX-Admin: yes")))
    assert b"x-ms-client-principal-name" not in headers
    assert all(b"\r" not in v and b"\n" not in v for v in headers.values())
    doc = json.loads(base64.b64decode(headers[b"x-ms-client-principal"]))
    assert {"typ": NAME_TYP, "val": "Eve\r\nX-Admin: yes"} in doc["claims"]
    t = ProviderTokens("corp", "u1", access_token="ok\nInjected: 1", id_token="fine")
    assert token_headers(t, ["access_token", "id_token"]) == [(b"x-ms-token-corp-id-token", b"fine")]


def test_token_headers_follow_the_switches() -> None:
    """Only kinds asked for and present; expires_on as ISO 8601 UTC; Twitter's secret."""
    t = ProviderTokens("twitter", "u1", access_token="at", refresh_token=None,
                       expires_on=1_800_000_000, access_token_secret="sec")
    out = dict(token_headers(t, ["access_token", "refresh_token", "expires_on",
                                 "access_token_secret"]))
    assert out == {b"x-ms-token-twitter-access-token": b"at",
                   b"x-ms-token-twitter-expires-on": b"2027-01-15T08:00:00.0000000Z",
                   b"x-ms-token-twitter-access-token-secret": b"sec"}
    assert token_headers(t, ["id_token"]) == []


def test_trusted_proxies_parse_ips_cidrs_and_unix() -> None:
    """Addresses and networks are matched; junk is a configuration error."""
    tp = TrustedProxies(["10.0.0.0/8", "::1", "unix"])
    assert tp.trusts("10.1.2.3") and tp.trusts("::1") and tp.trusts(None)
    assert not tp.trusts("11.0.0.1") and not tp.trusts("not-an-ip")
    assert not TrustedProxies([]).trusts(None)
    with pytest.raises(ConfigError):
        TrustedProxies(["10.0.0.300"])


def test_forwarded_element_quotes_ipv6_and_ports() -> None:
    """RFC 7239 §6: IPv6 nodes in brackets, values that are not tokens quoted."""
    scope = {"type": "http", "scheme": "https", "client": ("2001:db8::1", 5000),
             "headers": [(b"host", b"app.example:8443")]}
    h = hop(scope, TrustedProxies([]))
    out = dict(forwarding_headers(scope, h))
    assert out[b"forwarded"] == b'for="[2001:db8::1]";proto=https;host="app.example:8443"'
    assert out[b"x-forwarded-proto"] == b"https"


@pytest.mark.parametrize(("pattern", "path", "matches"), [
    ("/health", "/health", True), ("/health", "/health/live", True),
    ("/health", "/healthz", False), ("/health/", "/health", True),
    ("/static/*", "/static/app.js", True), ("/static/*", "/static/js/app.js", False),
    ("/static/**", "/static/js/app.js", True), ("/api/v?/ping", "/api/v2/ping", True),
    ("/a.b", "/aXb", False),
])
def test_excluded_path_patterns(pattern: str, path: str, matches: bool) -> None:
    """Plain patterns cover a subtree; * and ? stay in a segment, ** crosses segments."""
    assert bool(compile_pattern(pattern).fullmatch(path)) is matches


@pytest.mark.parametrize(("path", "raw"), [
    ("/health/../admin", None), ("/health/./x", None), ("//health", None), ("/h\\x", None),
    ("/health;jsessionid=1", None), ("/health/%2e", None), ("/health/x", b"/health%2Fx"),
])
def test_paths_that_an_app_might_read_differently_are_not_canonical(path: str,
                                                                    raw: bytes | None) -> None:
    """Only canonical paths can be excluded from authentication."""
    assert not is_canonical(path, raw)


def test_browser_detection() -> None:
    """Only a page navigation without a token counts as a browser that can follow a redirect."""
    html = "text/html,application/xhtml+xml"
    assert is_browser(Headers({"accept": html}))
    assert is_browser(Headers({"accept": html, "sec-fetch-mode": "navigate"}))
    for extra in ({"x-requested-with": "XMLHttpRequest"}, {"authorization": "Bearer x"},
                  {"x-zumo-auth": "x"}, {"sec-fetch-mode": "cors"}):
        assert not is_browser(Headers({"accept": html, **extra}))
    assert not is_browser(Headers({"accept": "application/json"}))
    assert not is_browser(Headers({}))


def test_original_target_keeps_encoding_and_query() -> None:
    """The login redirect comes back to exactly the requested path and query."""
    scope = {"path": "/a b", "raw_path": b"/a%20b", "query_string": b"x=1"}
    assert original_target(scope) == "/a%20b?x=1"
