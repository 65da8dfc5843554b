"""Two real ``authgate serve`` processes on one store behave as one (issue 4, item 6).

Per backend (PostgreSQL, then Redis) two instances, A and B, are started on
free ports with the same config and the same keys (from the environment), as
behind a load balancer. Users and clients are made in this process through
an :class:`AuthGate` on the same store; codes are issued in-process and
exchanged over HTTP, so no browser is needed. The clock is the real one.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from authgate.accounts import User
from authgate.codes import CodeGrant
from authgate.gateway.provider_tokens import ProviderTokens, ProviderTokenStore
from authgate.hashing import new_id, new_token
from authgate.oauth import pkce
from authgate.service import AuthGate

from ._instances import REDIRECT, Instances, opened_gate

VERIFIER = "v" * 43
POLL = 0.05


async def setup_client(gate: AuthGate) -> tuple[str, str]:
    client_id = f"app-{new_id(4)}"
    _client, secret = await gate.clients.add(client_id, redirect_uris=[REDIRECT],
                                             scopes=["openid", "profile", "offline_access"])
    assert secret is not None
    return client_id, secret


async def login(http: httpx.AsyncClient, base: str, gate: AuthGate, client: tuple[str, str],
                user: User) -> dict[str, Any]:
    """The code grant, its code issued in-process and exchanged at ``base``."""
    code = await gate.codes.issue(CodeGrant(
        client_id=client[0], user_id=user.id, redirect_uri=REDIRECT, scope="openid offline_access",
        family=new_id(), auth_time=gate.clock.now(), code_challenge=pkce.s256(VERIFIER)))
    r = await http.post(f"{base}/.auth/oauth2/token", auth=client, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
        "code_verifier": VERIFIER})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def refresh(http: httpx.AsyncClient, base: str, client: tuple[str, str], token: str) -> httpx.Response:
    return await http.post(f"{base}/.auth/oauth2/token", auth=client,
                           data={"grant_type": "refresh_token", "refresh_token": token})


async def active(http: httpx.AsyncClient, base: str, client: tuple[str, str], token: str) -> bool:
    r = await http.post(f"{base}/.auth/oauth2/introspect", auth=client, data={"token": token})
    assert r.status_code == 200, r.text
    return bool(r.json()["active"])


async def inactive_after(http: httpx.AsyncClient, base: str, client: tuple[str, str], token: str,
                         since: float, limit: float = 1.0) -> float:
    """Poll every 50 ms until the token is refused; seconds from ``since`` (fails past ``limit``)."""
    while await active(http, base, client, token):
        assert time.monotonic() - since <= limit, f"{base} still accepts the token after {limit} s"
        await asyncio.sleep(POLL)
    return time.monotonic() - since


async def test_a_rotated_refresh_token_presented_to_the_other_instance_is_reuse(
        instances: Instances, record_property: Any) -> None:
    """Rotated on A, replayed on B after the 1 s grace: invalid_grant, family dead on both."""
    a, b = instances.urls
    async with opened_gate(instances) as gate, httpx.AsyncClient(timeout=10) as http:
        client = await setup_client(gate)
        user = await gate.accounts.add(f"u{new_id(4)}", "correct horse battery")
        first = await login(http, a, gate, client, user)
        r = await refresh(http, a, client, first["refresh_token"])
        assert r.status_code == 200, r.text
        second = r.json()
        assert await active(http, a, client, second["access_token"])
        assert await active(http, b, client, second["access_token"])
        await asyncio.sleep(instances.grace + 0.2)

        r = await refresh(http, b, client, first["refresh_token"])
        assert r.status_code == 400 and r.json()["error"] == "invalid_grant", r.text
        revoked_at = time.monotonic()
        r = await refresh(http, a, client, second["refresh_token"])  # the successor died with it
        assert r.status_code == 400 and r.json()["error"] == "invalid_grant", r.text
        assert not await active(http, b, client, second["access_token"])
        seen = await inactive_after(http, a, client, second["access_token"], revoked_at)
    record_property("reuse_seen_by_A_s", round(seen, 3))
    print(f"\n[{instances.name}] family revoked on B, A refuses its access token {seen * 1000:.0f} ms later")


async def test_sign_out_everywhere_is_seen_by_the_other_instance_within_a_second(
        instances: Instances, record_property: Any) -> None:
    """``authgate tokens revoke --user`` and an RFC 7009 revocation at A reach B in < 1 s."""
    a, b = instances.urls
    async with opened_gate(instances) as gate, httpx.AsyncClient(timeout=10) as http:
        client = await setup_client(gate)
        user = await gate.accounts.add(f"u{new_id(4)}", "correct horse battery")
        tokens = await login(http, a, gate, client, user)
        assert await active(http, b, client, tokens["access_token"])

        # 1. The operator's command, from a third process.
        cli = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "authgate", "--config", str(instances.config), "tokens", "revoke",
            "--user", user.username, env=instances.env, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL)
        try:
            out, _ = await asyncio.wait_for(cli.communicate(), 30)
        finally:
            if cli.returncode is None:
                cli.kill()
                await cli.wait()
        done = time.monotonic()
        assert cli.returncode == 0 and b"out everywhere" in out, out.decode()
        by_cli = await inactive_after(http, b, client, tokens["access_token"], done)
        r = await refresh(http, b, client, tokens["refresh_token"])
        assert r.status_code == 400, r.text

        # 2. A client revoking one access token at A (RFC 7009). Another user: tokens issued
        # within the second of a sign-out-everywhere count as issued before it (iat is whole seconds).
        someone = await gate.accounts.add(f"u{new_id(4)}", "correct horse battery")
        other = await login(http, a, gate, client, someone)
        await asyncio.sleep(1.05)  # B's 1 s re-check is due: this introspection re-reads the store,
        assert await active(http, b, client, other["access_token"])  # and the next is 1 s away
        r = await http.post(f"{a}/.auth/oauth2/revoke", auth=client, data={"token": other["access_token"]})
        assert r.status_code == 200, r.text
        by_endpoint = await inactive_after(http, b, client, other["access_token"], time.monotonic())
        assert by_endpoint < 0.5, "B saw the revocation only through its 1 s re-check, not a notification"
    record_property("signout_cli_to_B_s", round(by_cli, 3))
    record_property("revocation_A_to_B_s", round(by_endpoint, 3))
    print(f"\n[{instances.name}] B refuses the token {by_cli * 1000:.0f} ms after the CLI exited, "
          f"{by_endpoint * 1000:.0f} ms after A answered the revocation")


async def test_provider_refresh_is_single_flight_across_processes(
        instances: Instances, tmp_path: Path) -> None:
    """Two processes refresh one expired grant at once: one provider call, one lock holder at a time."""
    user_key = f"stub|{new_id(4)}"
    async with opened_gate(instances) as gate:
        await ProviderTokenStore(gate.store).save(user_key, ProviderTokens(
            "stub", "u-1", access_token="old", refresh_token=new_token("rt_"), expires_on=time.time() - 10))
    log = tmp_path / "refresh.log"
    worker = Path(__file__).with_name("_refresh_worker.py")
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, str(worker), str(instances.config), user_key, str(log), env=instances.env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        for _ in range(2)]
    try:
        for p in procs:
            assert p.stdout is not None
            line = await asyncio.wait_for(p.stdout.readline(), 30)
            assert line == b"ready\n", line + await p.stdout.read()
        for p in procs:  # both go at once
            assert p.stdin is not None
            p.stdin.write(b"go\n")
            await p.stdin.drain()
        outputs = [(await asyncio.wait_for(p.communicate(), 30))[0].decode() for p in procs]
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()
    assert all(p.returncode == 0 for p in procs), outputs
    events = sorted((float(t), e, int(pid)) for e, pid, t in
                    (line.split() for line in log.read_text().splitlines()))
    kinds = [e for _, e, _ in events]
    assert kinds.count("refresh-start") == 1, events  # exactly one provider refresh
    assert kinds.count("lock-enter") == 2, events  # both contended for the lock...
    holders = [e for e in kinds if e.startswith("lock-")]
    assert holders == ["lock-enter", "lock-exit"] * 2, events  # ...and held it one after the other
    refresher = next(pid for _, e, pid in events if e == "refresh-start")
    assert [o.split()[-1] for o in outputs] == [f"at-{refresher}"] * 2  # the second reused the result
