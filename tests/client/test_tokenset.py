"""TokenSet: absolute expiry from a token response, skew-tolerant, secrets never in repr."""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from authgate.client import TokenSet

NOW = 1_800_000_000.0


def jwt_with(**claims: Any) -> str:
    """An unsigned JWT-shaped string: TokenSet only reads exp/iat as a hint, never verifies."""
    def part(d: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")
    return f"{part({'alg': 'ES256', 'typ': 'at+jwt'})}.{part(claims)}.c2ln"


def test_expires_in_becomes_an_absolute_time_on_our_clock() -> None:
    """expires_in is a duration: added to our clock at receipt."""
    tokens = TokenSet.from_response({"access_token": "opaque", "expires_in": 3600}, now=NOW)
    assert tokens.expires_at == NOW + 3600
    assert not tokens.expires_within(60, NOW + 3539)
    assert tokens.expires_within(60, NOW + 3540)


def test_jwt_exp_is_a_hint_and_the_earlier_reading_wins() -> None:
    """A JWT whose exp comes before now+expires_in (clocks agree, time in transit) wins."""
    token = jwt_with(iat=NOW - 5, exp=NOW + 3595)
    tokens = TokenSet.from_response({"access_token": token, "expires_in": 3600}, now=NOW)
    assert tokens.expires_at == NOW + 3595


def test_clock_ahead_of_the_server_does_not_make_fresh_tokens_look_expired() -> None:
    """Our clock 5 min ahead, a 4-minute token: the absolute exp is in our past -- ignored."""
    server_now = NOW - 300
    token = jwt_with(iat=server_now, exp=server_now + 240)
    tokens = TokenSet.from_response({"access_token": token, "expires_in": 240}, now=NOW)
    assert tokens.expires_at == NOW + 240
    no_expires_in = TokenSet.from_response({"access_token": token}, now=NOW)
    assert no_expires_in.expires_at == NOW + 240  # exp - iat: a duration again


def test_clock_behind_the_server_does_not_stretch_the_lifetime() -> None:
    """Our clock 5 min behind: exp looks 5 min later than it is; the durations win."""
    server_now = NOW + 300
    token = jwt_with(iat=server_now, exp=server_now + 3600)
    tokens = TokenSet.from_response({"access_token": token, "expires_in": 3600}, now=NOW)
    assert tokens.expires_at == NOW + 3600


def test_unknown_expiry_stays_unknown() -> None:
    """No expires_in, no JWT: we cannot guess; the 401 path covers it."""
    tokens = TokenSet.from_response({"access_token": "opaque"}, now=NOW)
    assert tokens.expires_at is None and not tokens.expires_within(60, NOW + 10**9)


def test_refresh_response_keeps_what_it_omits() -> None:
    """RFC 6749 §6: an omitted refresh token, id token or scope means unchanged."""
    before = TokenSet("a1", refresh_token="r1", id_token="i1", scope="openid api")
    after = TokenSet.from_response({"access_token": "a2", "expires_in": "60"}, now=NOW,
                                   previous=before)
    assert (after.refresh_token, after.id_token, after.scope) == ("r1", "i1", "openid api")
    assert after.expires_at == NOW + 60  # a string expires_in is read too


secrets_ = st.text(min_size=1).map(lambda s: "s3cr3t~" + s)


@given(access=secrets_, refresh=secrets_, id_token=secrets_)
def test_repr_never_shows_a_token(access: str, refresh: str, id_token: str) -> None:
    """repr and str show fingerprints only, so a TokenSet can be logged."""
    tokens = TokenSet(access, refresh_token=refresh, id_token=id_token, scope="api")
    for text in (repr(tokens), str(tokens), f"{tokens!r}"):
        assert "s3cr3t~" not in text


def test_round_trips_through_a_dict() -> None:
    tokens = TokenSet("a", expires_at=NOW, refresh_token="r", id_token="i", scope="s",
                      extra={"x": 1})
    assert TokenSet.from_dict(json.loads(json.dumps(tokens.to_dict()))) == tokens


def test_short_lived_tokens_are_due_at_half_life_not_at_once() -> None:
    """A 10 s token with a 60 s leeway is due after 5 s, not from the moment it arrives."""
    tokens = TokenSet.from_response({"access_token": "opaque", "expires_in": 10}, now=NOW)
    assert not tokens.due(60, NOW + 4.9)
    assert tokens.due(60, NOW + 5)
    hour = TokenSet.from_response({"access_token": "opaque", "expires_in": 3600}, now=NOW)
    assert not hour.due(60, NOW + 3539) and hour.due(60, NOW + 3540)
