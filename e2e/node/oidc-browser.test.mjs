// OpenID Connect in a real browser: Debian's headless Chromium loads a single-page app that uses
// okta-auth-js's browser build as an OIDC client (PKCE, public client) of Latchkey, on loopback
// origins (the IdP and the app: same site, different origins):
//   signInWithCredentials, then token.getWithRedirect({ sessionToken }) and handleLoginRedirect;
//   token.getWithoutPrompt({ sessionToken }) (a hidden iframe answered with okta_post_message);
//   signOut (revocation, then RP-initiated logout back to the app).
// And the shared-browser story over OIDC: person A, then person B through authorize?sessionToken=
// in one browser. B's ID token names B, and A's app is told over the back channel that A's
// session ended; with session_token_precedence = cookie (Okta Classic) A stays.
//
// Skipped, with the reason, when Chromium or playwright-core is missing (.ci/run installs them).
import assert from 'node:assert/strict';
import http from 'node:http';
import { readFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { startServer } from './server.mjs';
import { OKTA_AUTH_BUNDLE, adminApi, browserSkipReason, createUser, launchBrowser, screenshot, sessionTokenFor, trustOrigin } from './browser-kit.mjs';

const skip = await browserSkipReason();
if (skip) console.log(`# OIDC browser tests skipped: ${skip}`);

const SERVER_ENV = { LATCHKEY_AUTHN_RATE_LIMIT_PER_USERNAME: '0', LATCHKEY_AUTHN_RATE_LIMIT_PER_IP: '0' };
const PASSWORD = 'Tulip-Lantern-47';
const RUN = randomBytes(3).toString('hex');
const login = (tag) => `${tag}.${RUN}@example.com`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The single-page app: okta-auth-js configured as an OIDC client of `issuer`. */
function appHtml(issuer, clientId) {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Latchkey OIDC e2e app</title>
<script src="/okta-auth-js.min.js"></script></head><body>
<h1>OIDC e2e app</h1><pre id="log"></pre>
<script>
  const logEl = document.getElementById('log');
  const show = (label, value) => { logEl.textContent += label + (value === undefined ? '' : ' ' + JSON.stringify(value)) + '\\n'; };
  const OktaAuthClass = typeof OktaAuth === 'function' ? OktaAuth : OktaAuth.OktaAuth;
  const authClient = new OktaAuthClass({
    issuer: ${JSON.stringify(issuer)},
    clientId: ${JSON.stringify(clientId)},
    redirectUri: location.origin + '/callback',
    postLogoutRedirectUri: location.origin + '/app.html',
    scopes: ['openid', 'profile', 'email'],
    pkce: true,
    restoreOriginalUri: async () => { show('restoreOriginalUri'); },
  });
  const failure = (e) => ({ ok: false, name: e && e.name, message: e && e.message, errorCode: e && e.errorCode });
  window.e2e = {
    async signIn(username, password) {
      const tx = await authClient.signInWithCredentials({ username, password });
      show('signInWithCredentials ->', tx.status);
      return tx.sessionToken;
    },
    getWithRedirect(sessionToken) {
      setTimeout(() => authClient.token.getWithRedirect({ sessionToken }), 0);
      return true;
    },
    async handleRedirect() {
      try {
        await authClient.handleLoginRedirect();
        const idToken = await authClient.tokenManager.get('idToken');
        const accessToken = await authClient.tokenManager.get('accessToken');
        show('handleLoginRedirect -> signed in as', idToken && idToken.claims.preferred_username);
        return { ok: true, claims: idToken && idToken.claims, accessToken: accessToken && accessToken.accessToken };
      } catch (e) { show('handleLoginRedirect failed:', failure(e)); return failure(e); }
    },
    async withoutPrompt(sessionToken) {
      try {
        const res = await authClient.token.getWithoutPrompt({ sessionToken });
        show('getWithoutPrompt -> signed in as', res.tokens.idToken.claims.preferred_username);
        authClient.tokenManager.setTokens(res.tokens);
        return { ok: true, claims: res.tokens.idToken.claims };
      } catch (e) { show('getWithoutPrompt failed:', failure(e)); return failure(e); }
    },
    async userinfo() {
      try { return { ok: true, info: await authClient.token.getUserInfo() }; } catch (e) { return failure(e); }
    },
    signOut() {
      setTimeout(() => authClient.signOut(), 0);
      return true;
    },
  };
  show('ready');
</script></body></html>`;
}

/** Serves the app at /app.html and /callback, okta-auth-js, and a back-channel logout endpoint. */
async function startOidcApp() {
  const bundle = await readFile(OKTA_AUTH_BUNDLE);
  const state = { html: '', logoutTokens: [] };
  const server = http.createServer((req, res) => {
    const { pathname } = new URL(req.url, 'http://app.invalid');
    if (pathname === '/app.html' || pathname === '/callback') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
      res.end(state.html);
    } else if (pathname === '/okta-auth-js.min.js') {
      res.writeHead(200, { 'Content-Type': 'text/javascript; charset=utf-8' });
      res.end(bundle);
    } else if (pathname === '/bcl' && req.method === 'POST') {
      let body = '';
      req.on('data', (c) => { body += c; });
      req.on('end', () => {
        state.logoutTokens.push(new URLSearchParams(body).get('logout_token'));
        res.writeHead(200);
        res.end();
      });
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const origin = `http://127.0.0.1:${server.address().port}`;
  return { origin, state, close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(() => r()); }) };
}

const claimsOf = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString());

async function setUp(env = {}) {
  const server = await startServer({ env: { ...SERVER_ENV, ...env } });
  const app = await startOidcApp();
  await trustOrigin(server, app.origin);
  const created = await adminApi(server, 'POST', '/api/v1/apps', {
    name: 'oidc_client',
    label: `SPA ${RUN}`,
    signOnMode: 'OPENID_CONNECT',
    credentials: { oauthClient: { token_endpoint_auth_method: 'none' } },
    settings: {
      oauthClient: {
        redirect_uris: [`${app.origin}/callback`],
        post_logout_redirect_uris: [`${app.origin}/app.html`],
        backchannel_logout_uri: `${app.origin}/bcl`,
        response_types: ['code'],
        grant_types: ['authorization_code'],
        application_type: 'browser',
      },
    },
  });
  assert.equal(created.status, 200, created.text);
  const clientId = created.json.id;
  app.state.html = appHtml(server.orgUrl, clientId);
  const users = {};
  for (const tag of ['ada', 'bob']) {
    const { id } = await createUser(server, login(tag), PASSWORD);
    users[tag] = { id, login: login(tag) };
    const r = await adminApi(server, 'POST', `/api/v1/apps/${clientId}/users`, { id });
    assert.equal(r.status, 200, r.text);
  }
  return { server, app, clientId, users };
}

/** Runs `fn(browser)` in a fresh Chromium, adding what the page logged to a failure. */
async function withBrowser(fn) {
  const browser = await launchBrowser();
  try {
    return await fn(browser);
  } catch (e) {
    if (browser.consoleLines.length && e && typeof e === 'object') e.message += `\n--- browser console ---\n${browser.consoleLines.join('\n')}`;
    throw e;
  } finally {
    await browser.close();
  }
}

const inPage = (page, name, ...args) => page.evaluate(([n, a]) => window.e2e[n](...a), [name, args]);

/** getWithRedirect with a session token, through authorize to /callback, then handleLoginRedirect. */
async function redirectSignIn(page, app, sessionToken) {
  await page.goto(`${app.origin}/app.html`);
  await page.waitForFunction(() => typeof window.e2e === 'object');
  await Promise.all([page.waitForURL((u) => u.pathname === '/callback', { waitUntil: 'load' }), inPage(page, 'getWithRedirect', sessionToken)]);
  await page.waitForFunction(() => typeof window.e2e === 'object');
  return inPage(page, 'handleRedirect');
}

describe('okta-auth-js as an OIDC client in Chromium', { skip: skip ?? false }, () => {
  let env;
  before(async () => { env = await setUp(); });
  after(async () => {
    await env?.app.close();
    if (env) await env.server.stop();
  });

  test('signInWithCredentials, then getWithRedirect({ sessionToken }) and handleLoginRedirect', async () => {
    await withBrowser(async ({ page }) => {
      await page.goto(`${env.app.origin}/app.html`);
      await page.waitForFunction(() => typeof window.e2e === 'object');
      const token = await inPage(page, 'signIn', env.users.ada.login, PASSWORD);
      assert.ok(token, 'a session token');
      const result = await redirectSignIn(page, env.app, token);
      assert.equal(result.ok, true, JSON.stringify(result));
      assert.equal(result.claims.sub, env.users.ada.id);
      assert.equal(result.claims.aud, env.clientId);
      assert.equal(result.claims.iss, env.server.orgUrl);
      const info = await inPage(page, 'userinfo');
      assert.equal(info.ok, true, JSON.stringify(info));
      assert.equal(info.info.email, env.users.ada.login);
      await screenshot(page, 'oidc-get-with-redirect');
    });
  });

  test('getWithoutPrompt({ sessionToken }) answers in a hidden iframe, then signOut returns to the app', async () => {
    await withBrowser(async ({ page, context }) => {
      await page.goto(`${env.app.origin}/app.html`);
      await page.waitForFunction(() => typeof window.e2e === 'object');
      const token = await sessionTokenFor(env.server, env.users.bob.login, PASSWORD);
      const result = await inPage(page, 'withoutPrompt', token);
      assert.equal(result.ok, true, JSON.stringify(result));
      assert.equal(result.claims.sub, env.users.bob.id);
      assert.ok((await context.cookies()).some((c) => c.name === 'sid'), 'the iframe left a Latchkey session');
      // The page is at /app.html already: wait for the logout answer, then for the page it leads to.
      const [logout] = await Promise.all([
        page.waitForResponse((r) => new URL(r.url()).pathname === '/oauth2/v1/logout'),
        inPage(page, 'signOut'),
      ]);
      assert.equal(logout.status(), 302, 'RP-initiated logout redirects to the registered URI');
      assert.ok((await logout.allHeaders()).location.startsWith(`${env.app.origin}/app.html`));
      await page.waitForLoadState('load');
      const sid = (await context.cookies()).find((c) => c.name === 'sid');
      assert.ok(!sid || sid.value === '', 'signOut ended the Latchkey session');
      await screenshot(page, 'oidc-sign-out');
    });
  });
});

describe('the shared-browser story over OIDC in Chromium', { skip: skip ?? false }, () => {
  test('B arrives as B, and A\'s app hears over the back channel that A\'s session ended', async () => {
    const env = await setUp();
    try {
      await withBrowser(async ({ page }) => {
        const first = await redirectSignIn(page, env.app, await sessionTokenFor(env.server, env.users.ada.login, PASSWORD));
        assert.equal(first.claims.sub, env.users.ada.id, JSON.stringify(first));
        const second = await redirectSignIn(page, env.app, await sessionTokenFor(env.server, env.users.bob.login, PASSWORD));
        assert.equal(second.claims.sub, env.users.bob.id, 'the second person arrives as themselves');
        for (let i = 0; i < 50 && env.app.state.logoutTokens.length === 0; i++) await sleep(100);
        assert.equal(env.app.state.logoutTokens.length, 1, 'one back-channel logout token');
        const logout = claimsOf(env.app.state.logoutTokens[0]);
        assert.equal(logout.sid, first.claims.sid, 'it names A\'s session');
        assert.equal(logout.sub, env.users.ada.id);
        assert.ok(logout.events['http://schemas.openid.net/event/backchannel-logout']);
      });
    } finally {
      await env.app.close();
      await env.server.stop();
    }
  });

  test('with session_token_precedence = cookie (Okta Classic), A stays', async () => {
    const env = await setUp({ LATCHKEY_SESSION_TOKEN_PRECEDENCE: 'cookie' });
    try {
      await withBrowser(async ({ page }) => {
        const first = await redirectSignIn(page, env.app, await sessionTokenFor(env.server, env.users.ada.login, PASSWORD));
        const second = await redirectSignIn(page, env.app, await sessionTokenFor(env.server, env.users.bob.login, PASSWORD));
        assert.equal(second.claims.sub, env.users.ada.id, 'the cookie wins: B arrives as A');
        assert.equal(second.claims.sid, first.claims.sid);
        await sleep(1500);
        assert.equal(env.app.state.logoutTokens.length, 0, 'no session ended');
      });
    } finally {
      await env.app.close();
      await env.server.stop();
    }
  });
});
