// OpenID Connect, checked by relying-party libraries this team did not write: openid-client (npm,
// discovery, authorization code + PKCE with a sessionToken, ID token signatures against the JWKS,
// userinfo) for both of Okta's authorization servers, and @okta/jwt-verifier for the `default`
// server's access and ID tokens. The apps are created with Okta's own Node SDK.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as oidc from 'openid-client';
import OktaJwtVerifier from '@okta/jwt-verifier';
import okta from '@okta/okta-sdk-nodejs';
import { startServer } from './server.mjs';
import { sessionToken } from './session-kit.mjs';

const PASSWORD = 'Xk9#mQv2!Lp7wZ';
const REDIRECT = 'https://rp.example.com/callback';
const AFTER_LOGOUT = 'https://rp.example.com/signed-out';
const RUN = randomBytes(3).toString('hex');

let server;
let client;
let app;
let secret;
const users = {};

before(async () => {
  server = await startServer({ env: { LATCHKEY_AUTHN_RATE_LIMIT_PER_USERNAME: '0', LATCHKEY_AUTHN_RATE_LIMIT_PER_IP: '0' } });
  client = new okta.Client({ orgUrl: server.orgUrl, token: server.token, cacheMiddleware: null });
  app = await client.applicationApi.createApplication({
    application: {
      name: 'oidc_client',
      label: `RP ${RUN}`,
      signOnMode: 'OPENID_CONNECT',
      credentials: { oauthClient: { token_endpoint_auth_method: 'client_secret_basic' } },
      settings: {
        oauthClient: {
          redirect_uris: [REDIRECT],
          post_logout_redirect_uris: [AFTER_LOGOUT],
          response_types: ['code'],
          grant_types: ['authorization_code', 'refresh_token'],
          application_type: 'web',
        },
      },
    },
  });
  secret = app.credentials.oauthClient.client_secret;
  for (const name of ['ada', 'bob']) {
    const login = `${name}.${RUN}@example.com`;
    const user = await client.userApi.createUser({
      body: { profile: { firstName: name, lastName: 'Test', email: login, login }, credentials: { password: { value: PASSWORD } } },
      activate: true,
    });
    users[name] = { id: user.id, login };
    await client.applicationApi.assignUserToApplication({ appId: app.id, appUser: { id: user.id } });
  }
});

after(async () => {
  if (!server) return;
  const r = await server.stop();
  assert.ok(r.clean, `server did not stop cleanly: ${r.output.slice(-2000)}`);
});

/** A relying party configured by discovery for `issuer`, checking ID token signatures. */
async function relyingParty(issuer, clientSecret = secret) {
  const config = await oidc.discovery(new URL(issuer), app.id, clientSecret, oidc.ClientSecretBasic(clientSecret), {
    execute: [oidc.allowInsecureRequests],
  });
  oidc.enableNonRepudiationChecks(config);
  return config;
}

/** Runs the authorization request in a cookie-less "browser" with a fresh sessionToken; returns the callback URL. */
async function authorize(config, login, params) {
  const token = await sessionToken(server.orgUrl, login, PASSWORD);
  const url = oidc.buildAuthorizationUrl(config, { redirect_uri: REDIRECT, ...params, sessionToken: token });
  const res = await fetch(url, { redirect: 'manual' });
  assert.equal(res.status, 302, `authorize -> ${res.status} ${await res.text()}`);
  return new URL(res.headers.get('location'));
}

async function codeFlow(issuer, login, scope = 'openid profile email') {
  const config = await relyingParty(issuer);
  const verifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const nonce = oidc.randomNonce();
  const callback = await authorize(config, login, {
    scope,
    state,
    nonce,
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
  });
  const tokens = await oidc.authorizationCodeGrant(config, callback, {
    pkceCodeVerifier: verifier,
    expectedState: state,
    expectedNonce: nonce,
    idTokenExpected: true,
  });
  return { config, tokens, callback };
}

describe('openid-client against the org authorization server', () => {
  test('discovery names the org URL as issuer and only what is served', async () => {
    const config = await relyingParty(server.orgUrl);
    const meta = config.serverMetadata();
    assert.equal(meta.issuer, server.orgUrl);
    assert.equal(meta.token_endpoint, `${server.orgUrl}/oauth2/v1/token`);
    assert.deepEqual(meta.code_challenge_methods_supported, ['S256']);
  });

  test('code + PKCE with a sessionToken: the ID token verifies and names the user; userinfo agrees', async () => {
    const { config, tokens } = await codeFlow(server.orgUrl, users.ada.login);
    const claims = tokens.claims();
    assert.equal(claims.sub, users.ada.id);
    assert.equal(claims.email, users.ada.login);
    assert.equal(claims.aud, app.id);
    assert.deepEqual(claims.amr, ['pwd']);
    const info = await oidc.fetchUserInfo(config, tokens.access_token, claims.sub);
    assert.equal(info.preferred_username, users.ada.login);
    assert.equal(info.name, 'ada Test');
  });

  test('a wrong client secret is invalid_client', async () => {
    const config = await relyingParty(server.orgUrl, 'wrong-secret');
    const verifier = oidc.randomPKCECodeVerifier();
    const callback = await authorize(config, users.ada.login, {
      scope: 'openid',
      state: 's',
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
    });
    const error = await oidc
      .authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier, expectedState: 's' })
      .then(() => null, (e) => e);
    // RFC 6749 §5.2: 401 with a Basic challenge when the client used HTTP Basic.
    assert.ok(error instanceof oidc.WWWAuthenticateChallengeError, `${error}`);
    assert.equal(error.response.status, 401);
    assert.equal(error.cause[0].scheme, 'basic');
    assert.equal((await error.response.json()).error, 'invalid_client');
  });

  test('a code redeemed twice: the second is invalid_grant', async () => {
    const { callback } = await codeFlow(server.orgUrl, users.bob.login);
    const code = callback.searchParams.get('code');
    const res = await fetch(`${server.orgUrl}/oauth2/v1/token`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${Buffer.from(`${app.id}:${secret}`).toString('base64')}`,
      },
      body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: REDIRECT }),
    });
    assert.equal(res.status, 400);
    assert.equal((await res.json()).error, 'invalid_grant');
  });
});

describe('openid-client: refresh, introspection, revocation and logout', () => {
  test('a refresh token rotates; introspection and revocation agree; logout returns to the registered URI', async () => {
    const { config, tokens } = await codeFlow(server.orgUrl, users.ada.login, 'openid email offline_access');
    assert.ok(tokens.refresh_token, 'offline_access gives a refresh token');
    const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token);
    assert.notEqual(refreshed.refresh_token, tokens.refresh_token, 'rotated');
    assert.equal(refreshed.claims().sub, users.ada.id);
    const live = await oidc.tokenIntrospection(config, refreshed.access_token);
    assert.equal(live.active, true);
    assert.equal(live.client_id, app.id);
    assert.equal((await oidc.tokenIntrospection(config, tokens.refresh_token)).active, false, 'the rotated token is spent');
    await oidc.tokenRevocation(config, refreshed.refresh_token);
    assert.equal((await oidc.tokenIntrospection(config, refreshed.access_token)).active, false, 'revoked with its refresh token');
    await assert.rejects(oidc.refreshTokenGrant(config, refreshed.refresh_token), (e) => e.error === 'invalid_grant' || e.code === 'OAUTH_RESPONSE_BODY_ERROR');

    const end = oidc.buildEndSessionUrl(config, { id_token_hint: tokens.id_token, post_logout_redirect_uri: AFTER_LOGOUT, state: 'bye' });
    const res = await fetch(end, { redirect: 'manual' });
    assert.equal(res.status, 302);
    assert.equal(res.headers.get('location'), `${AFTER_LOGOUT}?state=bye`);
  });
});

describe('the default custom authorization server', () => {
  test('openid-client runs the code flow; @okta/jwt-verifier accepts the access and ID tokens', async () => {
    const issuer = `${server.orgUrl}/oauth2/default`;
    const { tokens } = await codeFlow(issuer, users.bob.login, 'openid profile');
    assert.equal(tokens.claims().iss, issuer);
    const verifier = new OktaJwtVerifier({ issuer, clientId: app.id, testing: { disableHttpsCheck: true } });
    const access = await verifier.verifyAccessToken(tokens.access_token, 'api://default');
    assert.equal(access.claims.uid, users.bob.id);
    assert.equal(access.claims.cid, app.id);
    assert.deepEqual(access.claims.scp, ['openid', 'profile']);
    const id = await verifier.verifyIdToken(tokens.id_token, app.id, tokens.claims().nonce);
    assert.equal(id.claims.sub, users.bob.id);
  });
});
