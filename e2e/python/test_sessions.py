"""Sessions API, driven through Okta's own Python SDK (PyPI `okta` 3.4.6) over a real socket.

okta 3.4.6 can read, refresh and revoke a session and revoke all of a user's sessions, but has no
create_session: sessions are made here with raw HTTP (POST /api/v1/authn for a session token, then
POST /api/v1/sessions). Its models are strict pydantic, so a Session that does not match Okta's
schema (amr / status / idp.type enums, date-times) fails while deserializing.
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import datetime, timezone

import aiohttp
import pytest

from okta.errors.okta_api_error import OktaAPIError
from okta.models import CreateUserRequest, Session, User
from okta.models.session_authentication_method import SessionAuthenticationMethod
from okta.models.session_identity_provider_type import SessionIdentityProviderType
from okta.models.session_status import SessionStatus

from conftest import start_server

PASSWORD = "Xk9#mQv2!Lp7wZ"
RUN = secrets.token_hex(3)
_seq = 0


@pytest.fixture(scope="module")
def server():
    """This module's server: no authn rate limits (every test signs in several times)."""
    srv = start_server(env={"LATCHKEY_AUTHN_RATE_LIMIT_PER_USERNAME": "0", "LATCHKEY_AUTHN_RATE_LIMIT_PER_IP": "0"})
    yield srv
    result = srv.stop()
    assert result["clean"], (
        f"server did not stop cleanly on SIGTERM: code={result['code']} {result.get('note', '')}\n"
        f"{result['output'][-2000:]}"
    )


def unique_login(tag: str) -> str:
    global _seq
    _seq += 1
    return f"{tag}.{RUN}.{_seq}@example.com"


async def create_user(client, tag: str = "pysess") -> User:
    login = unique_login(tag)
    body = CreateUserRequest.from_dict({
        "profile": {"firstName": "Ada", "lastName": "Lovelace", "email": login, "login": login},
        "credentials": {"password": {"value": PASSWORD}},
    })
    user, _, err = await client.create_user(body, activate=True)
    assert err is None, f"create_user failed: {err}"
    assert isinstance(user, User)
    return user


async def raw(server, method: str, path: str, json_body=None, admin: bool = True):
    """(status, parsed JSON or None, text) of one plain HTTP call."""
    headers = {"Accept": "application/json"}
    if admin:
        headers["Authorization"] = f"SSWS {server.token}"
    async with aiohttp.ClientSession() as http:
        async with http.request(method, f"{server.org_url}{path}", json=json_body, headers=headers) as r:
            text = await r.text()
            try:
                data = await r.json(content_type=None) if text else None
            except ValueError:
                data = None
            return r.status, data, text


async def session_token(server, user: User) -> str:
    status, body, text = await raw(
        server, "POST", "/api/v1/authn", {"username": user.profile.login, "password": PASSWORD}, admin=False
    )
    assert status == 200, f"POST /api/v1/authn -> {status} {text}"
    assert body["status"] == "SUCCESS", text
    return body["sessionToken"]


async def create_session(server, user: User) -> dict:
    """A session for `user` through the admin API (raw HTTP: the SDK has no create_session)."""
    status, body, text = await raw(server, "POST", "/api/v1/sessions", {"sessionToken": await session_token(server, user)})
    assert status == 200, f"POST /api/v1/sessions -> {status} {text}"
    assert body["userId"] == user.id, text
    return body


def error_of(result: tuple):
    """The error of an SDK call. Calls typed as returning nothing (revoke_session, ...) give a
    2-tuple (response, error) on failure instead of the usual (data, response, error)."""
    return result[-1]


def assert_okta_error(err, status: int, code: str) -> None:
    assert isinstance(err, OktaAPIError), f"expected OktaAPIError, got {type(err).__name__}: {err}"
    assert err.status == status, err.message
    assert err.error_code == code, err.message
    assert err.error_summary, "errorSummary should not be empty"
    assert err.error_id, "errorId should not be empty"
    assert isinstance(err.error_causes, list)


def assert_session(s, user: User, session_id: str | None = None) -> None:
    assert isinstance(s, Session), f"expected a Session model, got {type(s).__name__}: {s!r}"
    if session_id is not None:
        assert s.id == session_id
    assert s.user_id == user.id
    assert s.login == user.profile.login
    assert s.status == SessionStatus.ACTIVE
    assert s.amr == [SessionAuthenticationMethod.PWD]
    assert s.idp is not None and s.idp.type == SessionIdentityProviderType.OKTA
    assert s.idp.id, "idp.id"
    for name in ("created_at", "expires_at", "last_password_verification"):
        value = getattr(s, name)
        assert isinstance(value, datetime), f"{name} should parse to a datetime, got {value!r}"
        assert value.tzinfo is not None and value.utcoffset().total_seconds() == 0, f"{name} should be UTC: {value!r}"
    assert s.last_factor_verification is None, f"no factor was verified: {s.last_factor_verification!r}"
    assert s.expires_at > s.created_at
    assert s.expires_at > datetime.now(timezone.utc)
    assert s.last_password_verification <= s.created_at
    assert s.links is not None and s.links.var_self is not None, f"_links.self: {s.links!r}"


async def test_get_session_parses_into_okta_models(client, server):
    user = await create_user(client)
    created = await create_session(server, user)
    session, resp, err = await client.get_session(created["id"])
    assert err is None, err
    assert resp.status_code == 200
    assert_session(session, user, created["id"])
    assert session.links.var_self.href == f"{server.org_url}/api/v1/sessions/{created['id']}"
    assert session.expires_at.isoformat(timespec="milliseconds").replace("+00:00", "Z") == created["expiresAt"]


async def test_refresh_session_moves_expires_at_later(client, server):
    user = await create_user(client)
    created = await create_session(server, user)
    before, _, err = await client.get_session(created["id"])
    assert err is None, err
    await asyncio.sleep(0.05)  # refresh slides expiresAt from "now"
    refreshed, resp, err = await client.refresh_session(created["id"])
    assert err is None, err
    assert resp.status_code == 200
    assert_session(refreshed, user, created["id"])
    assert refreshed.created_at == before.created_at, "refresh keeps createdAt"
    assert refreshed.expires_at > before.expires_at, f"{before.expires_at} -> {refreshed.expires_at}"
    again, _, err = await client.get_session(created["id"])
    assert err is None, err
    assert again.expires_at == refreshed.expires_at, "the refreshed expiresAt is stored"


async def test_revoke_session_then_get_session_is_e0000007(client, server):
    user = await create_user(client)
    created = await create_session(server, user)
    result = await client.revoke_session(created["id"])
    assert error_of(result) is None, error_of(result)
    data, resp, _ = result
    assert data is None
    assert resp.status_code == 204

    result = await client.get_session(created["id"])
    assert result[0] is None
    assert_okta_error(error_of(result), 404, "E0000007")
    assert_okta_error(error_of(await client.refresh_session(created["id"])), 404, "E0000007")
    # Revoking twice: the session is gone.
    again = await client.revoke_session(created["id"])
    assert len(again) == 2, f"a failed revoke_session is a (response, error) pair: {again!r}"
    assert_okta_error(error_of(again), 404, "E0000007")


async def test_get_session_unknown_id_is_e0000007(client):
    result = await client.get_session("102nosuchsession0000")
    assert_okta_error(error_of(result), 404, "E0000007")


async def test_revoke_user_sessions_ends_only_that_users_sessions(client, server):
    user = await create_user(client, "pyrevall")
    other = await create_user(client, "pyrevother")
    mine = [await create_session(server, user) for _ in range(2)]
    theirs = await create_session(server, other)

    result = await client.revoke_user_sessions(user.id, oauth_tokens=True)
    assert error_of(result) is None, error_of(result)
    assert result[1].status_code == 204

    for s in mine:
        assert_okta_error(error_of(await client.get_session(s["id"])), 404, "E0000007")
    still, _, err = await client.get_session(theirs["id"])
    assert err is None, err
    assert_session(still, other, theirs["id"])

    # Afterwards the user can start a new session, which is not affected.
    fresh = await create_session(server, user)
    session, _, err = await client.get_session(fresh["id"])
    assert err is None, err
    assert_session(session, user, fresh["id"])


async def test_revoke_user_sessions_without_oauth_tokens_and_for_unknown_user(client, server):
    user = await create_user(client, "pyrevall")
    s = await create_session(server, user)
    result = await client.revoke_user_sessions(user.id)
    assert error_of(result) is None, error_of(result)
    assert_okta_error(error_of(await client.get_session(s["id"])), 404, "E0000007")

    result = await client.revoke_user_sessions("00unosuchuser0000000")
    assert_okta_error(error_of(result), 404, "E0000007")
