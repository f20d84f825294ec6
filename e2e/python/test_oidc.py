"""OpenID Connect, checked by Authlib (PyPI) as the relying party, with client_secret_post.

The app is created with Okta's own Python SDK (its OpenIdConnectApplication model must read
Latchkey's JSON). Authlib's OAuth2Session runs the authorization code flow with PKCE and a
sessionToken, refresh, introspection and revocation; the ID token is checked with joserfc against
the JWKS named by discovery; RP-initiated logout returns only to the registered URI.
"""

from __future__ import annotations

import json
import secrets
import urllib.parse

import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.jwk import KeySet
from okta.models import CreateUserRequest, OpenIdConnectApplication

PASSWORD = "Xk9#mQv2!Lp7wZ"
RUN = secrets.token_hex(3)
REDIRECT = "https://rp.example.com/callback"
AFTER_LOGOUT = "https://rp.example.com/signed-out"


async def create_app(client) -> tuple[str, str]:
    app = OpenIdConnectApplication.from_dict(
        {
            "name": "oidc_client",
            "label": f"Authlib RP {RUN}",
            "signOnMode": "OPENID_CONNECT",
            "credentials": {"oauthClient": {"token_endpoint_auth_method": "client_secret_post"}},
            "settings": {
                "oauthClient": {
                    "redirect_uris": [REDIRECT],
                    "post_logout_redirect_uris": [AFTER_LOGOUT],
                    "response_types": ["code"],
                    "grant_types": ["authorization_code", "refresh_token"],
                    "application_type": "web",
                    "refresh_token": {"rotation_type": "ROTATE", "leeway": 0},
                }
            },
        }
    )
    created, _, err = await client.create_application(app)
    assert err is None, err
    assert str(getattr(created.sign_on_mode, "value", created.sign_on_mode)) == "OPENID_CONNECT"
    secret = created.credentials.oauth_client.client_secret
    assert secret, "the secret is shown at creation"
    return created.id, secret


async def create_user(server, client, app_id: str) -> tuple[str, str]:
    login = f"authlib.{RUN}@example.com"
    body = CreateUserRequest.from_dict(
        {
            "profile": {"firstName": "Ada", "lastName": "Lovelace", "email": login, "login": login},
            "credentials": {"password": {"value": PASSWORD}},
        }
    )
    user, _, err = await client.create_user(body, activate=True)
    assert err is None, err
    r = requests.post(
        f"{server.org_url}/api/v1/apps/{app_id}/users",
        headers={"Authorization": f"SSWS {server.token}"},
        json={"id": user.id},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return user.id, login


def session_token(org_url: str, login: str) -> str:
    r = requests.post(f"{org_url}/api/v1/authn", json={"username": login, "password": PASSWORD}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["sessionToken"]


@pytest.mark.asyncio
async def test_authlib_runs_the_code_flow_refresh_introspection_revocation_and_logout(server, client):
    app_id, secret = await create_app(client)
    user_id, login = await create_user(server, client, app_id)
    discovery = requests.get(f"{server.org_url}/.well-known/openid-configuration", timeout=10).json()
    assert discovery["issuer"] == server.org_url

    rp = OAuth2Session(
        app_id,
        secret,
        scope="openid profile email offline_access",
        redirect_uri=REDIRECT,
        token_endpoint_auth_method="client_secret_post",
        code_challenge_method="S256",
    )
    verifier = generate_token(48)
    nonce = generate_token(20)
    url, state = rp.create_authorization_url(
        discovery["authorization_endpoint"],
        code_verifier=verifier,
        nonce=nonce,
        sessionToken=session_token(server.org_url, login),
    )
    browser = requests.Session()
    answer = browser.get(url, allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    callback = answer.headers["Location"]
    assert callback.startswith(REDIRECT), callback
    tokens = rp.fetch_token(discovery["token_endpoint"], authorization_response=callback, code_verifier=verifier)
    assert tokens["token_type"] == "Bearer"
    assert "refresh_token" in tokens

    keys = KeySet.import_key_set(requests.get(discovery["jwks_uri"], timeout=10).json())
    id_token = jwt.decode(tokens["id_token"], keys, algorithms=["RS256"])
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": server.org_url},
        aud={"essential": True, "value": app_id},
        nonce={"essential": True, "value": nonce},
        sub={"essential": True, "value": user_id},
    ).validate(id_token.claims)
    assert id_token.claims["email"] == login

    info = rp.get(discovery["userinfo_endpoint"]).json()
    assert info["sub"] == user_id and info["preferred_username"] == login

    first_refresh = tokens["refresh_token"]
    refreshed = rp.refresh_token(discovery["token_endpoint"], refresh_token=first_refresh)
    assert refreshed["refresh_token"] != first_refresh, "rotated"
    introspected = rp.introspect_token(discovery["introspection_endpoint"], token=refreshed["access_token"]).json()
    assert introspected["active"] is True and introspected["client_id"] == app_id
    assert rp.introspect_token(discovery["introspection_endpoint"], token=first_refresh).json() == {"active": False}

    revoked = rp.revoke_token(discovery["revocation_endpoint"], token=refreshed["refresh_token"])
    assert revoked.status_code == 200
    after = rp.introspect_token(discovery["introspection_endpoint"], token=refreshed["access_token"]).json()
    assert after == {"active": False}, "the grant's access token went with its refresh token"

    query = urllib.parse.urlencode(
        {"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": AFTER_LOGOUT, "state": "bye"}
    )
    logout = browser.get(f"{discovery['end_session_endpoint']}?{query}", allow_redirects=False, timeout=10)
    assert logout.status_code == 302 and logout.headers["Location"] == f"{AFTER_LOGOUT}?state=bye"


@pytest.mark.asyncio
async def test_authlib_sees_oauth_errors_in_the_standard_shape(server, client):
    app_id, secret = await create_app(client)
    discovery = requests.get(f"{server.org_url}/.well-known/openid-configuration", timeout=10).json()
    r = requests.post(
        discovery["token_endpoint"],
        data={"grant_type": "authorization_code", "code": "nope", "redirect_uri": REDIRECT, "client_id": app_id, "client_secret": secret},
        timeout=10,
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    r = requests.post(
        discovery["token_endpoint"],
        data={"grant_type": "authorization_code", "code": "nope", "client_id": app_id, "client_secret": "wrong"},
        timeout=10,
    )
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    assert set(json.loads(r.text)) == {"error", "error_description"}
