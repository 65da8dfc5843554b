"""The proxy's one pass over a request's headers: what the app gets, and the credentials."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from authgate.gateway.proxy import _inbound

COOKIE = b"AppServiceAuthSession"


def scope(*headers: tuple[bytes, bytes]) -> dict[str, object]:
    return {"type": "http", "headers": list(headers)}


def test_the_session_cookie_is_taken_out_and_read_like_starlette_reads_it() -> None:
    raw = b"a=1; AppServiceAuthSession=sid.secret; b=2; AppServiceAuthSession=sid.later"
    got = _inbound(scope((b"cookie", raw)), COOKIE)
    assert got.headers == [(b"cookie", b"a=1; b=2")]
    expected = HTTPConnection(scope((b"cookie", raw))).cookies["AppServiceAuthSession"]
    assert got.cookie == expected == "sid.later"


def test_a_cookie_header_with_only_the_session_cookie_is_dropped() -> None:
    got = _inbound(scope((b"cookie", b"AppServiceAuthSession=x.y")), COOKIE)
    assert got.headers == [] and got.cookie == "x.y"


def test_only_the_first_cookie_header_is_read_but_every_one_is_cleaned() -> None:
    got = _inbound(scope((b"cookie", b"a=1"), (b"cookie", b"AppServiceAuthSession=x.y; c=3")),
                   COOKIE)
    assert got.cookie is None
    assert got.headers == [(b"cookie", b"a=1"), (b"cookie", b"c=3")]


def test_a_quoted_value_and_lookalike_names() -> None:
    raw = b'XAppServiceAuthSession=no; AppServiceAuthSession="q\\"v"; AppServiceAuthSessionX=no2'
    got = _inbound(scope((b"cookie", raw)), COOKIE)
    assert got.cookie == HTTPConnection(scope((b"cookie", raw))).cookies["AppServiceAuthSession"]
    assert got.headers == [(b"cookie", b"XAppServiceAuthSession=no; AppServiceAuthSessionX=no2")]


def test_session_token_comes_before_bearer_and_other_schemes_are_not_tokens() -> None:
    both = _inbound(scope((b"authorization", b"Bearer b.b.b"), (b"x-zumo-auth", b"z.z.z")), COOKIE)
    assert both.token == "z.z.z"
    assert _inbound(scope((b"authorization", b"bearer  t.t.t ")), COOKIE).token == "t.t.t"
    basic = _inbound(scope((b"authorization", b"Basic dTpw")), COOKIE)
    assert basic.token is None and basic.headers == [(b"authorization", b"Basic dTpw")]


MIXED = [
    (b"host", b"app.example"), (b"connection", b"keep-alive, X-Secret"), (b"x-secret", b"1"),
    (b"keep-alive", b"timeout=5"), (b"te", b"trailers"), (b"proxy-authorization", b"p"),
    (b"transfer-encoding", b"chunked"), (b"x-forwarded-for", b"6.6.6.6"), (b"forwarded", b"for=x"),
    (b"X_MS_CLIENT_PRINCIPAL_ID", b"admin"), (b"x-ms-token-aad-access-token", b"stolen"),
    (b"expect", b"100-continue"), (b"accept", b"*/*"), (b"content-length", b"12"),
]


def test_hop_by_hop_forwarding_and_identity_headers_never_pass() -> None:
    got = _inbound(scope(*MIXED), COOKIE)
    assert got.headers == [(b"accept", b"*/*"), (b"content-length", b"12")]
    assert got.chunked and got.length == b"12"
    assert got.size == sum(len(k) + len(v) + 4 for k, v in MIXED)
