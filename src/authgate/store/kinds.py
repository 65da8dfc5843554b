"""Every record kind authgate stores, in one place.

The backend contract has no "list kinds" operation (``scan`` and ``count``
take a kind), so whatever walks a whole store -- ``authgate store migrate``,
``purge`` statistics, ``reseal``, ``stats`` -- needs the list from here. A
component that introduces a new kind must add it below, or migration would
silently leave its records behind; ``tests/store/test_migrate.py`` checks that
every ``KIND`` constant in the package is listed.

The order is the order of migration: what a half-migrated store needs first
(accounts, clients, signing keys) comes before the tokens that refer to them,
and bulky, disposable kinds (audit, throttle) come last.
"""

from __future__ import annotations

KINDS: tuple[str, ...] = (
    "user",            # accounts.KIND
    "client",          # clients.KIND
    "signing_key",     # signing.KIND
    "deny",            # denylist.KIND
    "refresh_token",   # refresh_tokens.KIND
    "code",            # codes.KIND
    "sso",             # sso.KIND
    "gw_session",      # gateway.sessions.KIND
    "gw_login",        # gateway.providers.state.KIND (pending upstream logins, minutes)
    "provider_token",  # gateway.provider_tokens.KIND
    "audit",           # audit.KIND
    "throttle",        # accounts.THROTTLE
)

__all__ = ["KINDS"]
