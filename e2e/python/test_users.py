"""Users API, driven through Okta's own Python SDK (PyPI `okta` 3.4.6) over a real socket.

okta 3.x calls return (data, response, error) tuples; models are strict pydantic, so a response
that does not match Okta's schema (enum values, date-times, ...) fails while deserializing.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from okta.errors.okta_api_error import OktaAPIError
from okta.models import CreateUserRequest, User
from okta.pagination import PaginationHelper, paginate_pages

from conftest import make_client

PASSWORD = "Xk9#mQv2!Lp7wZ"
RUN = secrets.token_hex(3)
_seq = 0


def unique_login(tag: str) -> str:
    global _seq
    _seq += 1
    return f"{tag}.{RUN}.{_seq}@example.com"


def create_body(login: str, password: str | None = PASSWORD) -> CreateUserRequest:
    body = {"profile": {"firstName": "Ada", "lastName": "Lovelace", "email": login, "login": login}}
    if password is not None:
        body["credentials"] = {"password": {"value": password}}
    return CreateUserRequest.from_dict(body)


async def create_user(client, tag: str = "py", activate: bool = True) -> User:
    user, _, err = await client.create_user(create_body(unique_login(tag)), activate=activate)
    assert err is None, f"create_user failed: {err}"
    assert isinstance(user, User)
    return user


async def get_status(client, user_id: str) -> str:
    user, _, err = await client.get_user(user_id)
    assert err is None, f"get_user failed: {err}"
    return user.status.value


def error_of(result: tuple):
    """The error of an SDK call. Calls typed as returning `Success` (suspend_user, ...) give a
    2-tuple (response, error) on failure instead of the usual (data, response, error)."""
    return result[-1]


def assert_okta_error(err, status: int, code: str) -> None:
    assert isinstance(err, OktaAPIError), f"expected OktaAPIError, got {type(err).__name__}: {err}"
    assert err.status == status, err.message
    assert err.error_code == code, err.message
    assert err.error_summary, "errorSummary should not be empty"
    assert err.error_id, "errorId should not be empty"
    assert isinstance(err.error_causes, list)


async def test_create_user_activate_true_is_active(client):
    login = unique_login("active")
    user, resp, err = await client.create_user(create_body(login), activate=True)
    assert err is None, err
    assert resp.status_code == 200
    assert user.id
    assert user.status.value == "ACTIVE"
    assert user.profile.login == login
    assert user.profile.email == login
    assert user.profile.first_name == "Ada"
    assert isinstance(user.created, datetime)
    assert isinstance(user.last_updated, datetime)
    assert user.credentials is None or user.credentials.password is None or user.credentials.password.value is None, \
        "password value must not be returned"


async def test_create_user_activate_false_is_staged(client):
    user = await create_user(client, "staged", activate=False)
    assert user.status.value == "STAGED"
    assert await get_status(client, user.id) == "STAGED"


async def test_get_user_by_id_and_by_login(client):
    created = await create_user(client, "lookup")
    by_id, _, err = await client.get_user(created.id)
    assert err is None, err
    by_login, _, err = await client.get_user(created.profile.login)
    assert err is None, err
    for u in (by_id, by_login):
        assert u.id == created.id
        assert u.profile.login == created.profile.login
        assert u.status.value == "ACTIVE"
        assert u.created == created.created


async def test_list_users_pages_with_after_cursor(client):
    prefix = f"pypage.{RUN}."
    created = []
    for i in range(5):
        login = f"{prefix}{i}@example.com"
        user, _, err = await client.create_user(create_body(login), activate=True)
        assert err is None, err
        created.append(user.id)

    # All users, limit=2, following the after cursor from the Link rel="next" header by hand.
    seen = []
    after = None
    requests = 0
    while True:
        users, resp, err = await client.list_users(limit=2, after=after)
        requests += 1
        assert err is None, err
        assert len(users) <= 2, f"a page held {len(users)} users with limit=2"
        seen.extend(u.id for u in users)
        after = PaginationHelper.extract_next_cursor(resp.headers)
        if not after:
            break
        assert requests < 50, "pagination does not terminate"
    assert len(seen) == len(set(seen)), f"duplicates across pages: {seen}"
    for uid in created:
        assert seen.count(uid) == 1, f"{uid} should be listed exactly once"
    assert requests >= 3, f"5+ users at limit=2 need at least 3 pages, got {requests}"

    # The SDK's own paginator with a search.
    pages = [page async for page, _, _ in paginate_pages(client.list_users, limit=2, search=f'profile.login sw "{prefix}"')]
    assert len(pages) >= 3, f"5 results at limit=2 need at least 3 pages, got {len(pages)}"
    assert sorted(u.id for page in pages for u in page) == sorted(created)


async def test_list_users_filter_status(client):
    staged = await create_user(client, "pyfilter", activate=False)
    users, _, err = await client.list_users(filter='status eq "STAGED"')
    assert err is None, err
    assert staged.id in {u.id for u in users}
    assert all(u.status.value == "STAGED" for u in users), [u.status for u in users]


async def test_lifecycle_activate_suspend_unsuspend_deactivate(client):
    user = await create_user(client, "pylife", activate=False)

    token, _, err = await client.activate_user(user.id, send_email=False)
    assert err is None, err
    assert token.activation_token, f"activationToken should be returned with sendEmail=false, got {token}"
    assert await get_status(client, user.id) == "ACTIVE"

    err = error_of(await client.suspend_user(user.id))
    assert err is None, err
    assert await get_status(client, user.id) == "SUSPENDED"

    err = error_of(await client.unsuspend_user(user.id))
    assert err is None, err
    assert await get_status(client, user.id) == "ACTIVE"

    err = error_of(await client.deactivate_user(user.id))
    assert err is None, err
    assert await get_status(client, user.id) == "DEPROVISIONED"


async def test_lifecycle_not_allowed_is_403_e0000038(client):
    user = await create_user(client, "pynosuspend", activate=False)
    err = error_of(await client.suspend_user(user.id))
    assert_okta_error(err, 403, "E0000038")
    assert await get_status(client, user.id) == "STAGED"


async def test_delete_twice_then_404(client):
    user = await create_user(client, "pydelete")
    err = error_of(await client.delete_user(user.id))
    assert err is None, err
    assert await get_status(client, user.id) == "DEPROVISIONED"
    err = error_of(await client.delete_user(user.id))
    assert err is None, err
    found, _, err = await client.get_user(user.id)
    assert found is None
    assert_okta_error(err, 404, "E0000007")


async def test_unknown_user_is_404_e0000007(client):
    user, _, err = await client.get_user("00unosuchuser0000000")
    assert user is None
    assert_okta_error(err, 404, "E0000007")


async def test_duplicate_login_is_400_e0000001(client):
    first = await create_user(client, "pydup")
    user, _, err = await client.create_user(create_body(first.profile.login), activate=True)
    assert user is None
    assert_okta_error(err, 400, "E0000001")
    assert "login: An object with this field already exists in the current organization" in [
        c.get("errorSummary") for c in err.error_causes
    ], err.error_causes


async def test_bad_token_is_401_e0000011(server):
    async with make_client(server.org_url, "not-a-real-token") as bad:
        users, _, err = await bad.list_users()
        assert users is None
        assert_okta_error(err, 401, "E0000011")
