// The shared-browser flow end to end (docs/shared-browser.md), in headless Chromium, with three independent
// programs around Latchkey:
//   - the kiosk portal of examples/kiosk-portal (Node/Express + axios, run unchanged as
//     `node examples/kiosk-portal/server.js`): POST /api/v1/authn, then
//     res.redirect(embedLink + '?sessionToken=' + token);
//   - e2e/saml/sp_app.py, a strict pysaml2 SP web app (its own key, signed AuthnRequests);
//   - for the multi-node case, a round-robin HTTP proxy (below) in front of two Latchkey nodes on
//     one PostgreSQL database; each request may land on either node.
//
// Cases (each in a fresh Chromium with its own cookie jar):
//   1. token precedence (the default): A through the kiosk reaches the SP as A; then B through the
//      kiosk in the same browser reaches the SP as B; A's IdP session (its id read from
//      /api/v1/sessions/me with the browser's cookie while A was signed in) is gone for the admin
//      API (404 E0000007) and the system log says REPLACED_BY_SESSION_TOKEN.
//   2. cookie precedence (LATCHKEY_SESSION_TOKEN_PRECEDENCE=cookie, a second server): the same
//      steps and B arrives at the SP as A (Okta Classic's behaviour), A's session still active.
//   3. SP-initiated. How we read the issue ("the SP sends B to Latchkey with an AuthnRequest; B gets
//      the sign-in page because the portal ended A's session, or is signed in by the token"):
//      (i)  A through the kiosk; A signs out at the portal, whose backend ends A's sessions with
//           DELETE /api/v1/users/{id}/sessions (the example's /logout, API token); B then uses the
//           SP's own "sign in" (/login: a signed AuthnRequest to Latchkey). Latchkey ignores the
//           dead cookie and shows its sign-in page; B signs in there and the SP gets B's Response
//           in reply to its request (InResponseTo).
//      (ii) A through the kiosk; B's session token (from the same /api/v1/authn the portal calls)
//           is appended to the SP's AuthnRequest URL (the SSO URL accepts ?sessionToken=, as in
//           Okta): B is signed in by the token, no sign-in page, and A's session ends.
//   4. invalid token: after A through the kiosk, the browser follows the embed link with a bogus
//      token; A's session ends (404, INVALID_SESSION_TOKEN in the log) and the browser is on the
//      sign-in page; B signs in there and reaches the SP as B. Then a used token (A's kiosk token,
//      replayed) also ends B's session and shows the sign-in page: tokens are single-use.
//   5. two nodes behind the round-robin proxy: case 1 again; the proxy counts browser requests on
//      both nodes. Skipped without LATCHKEY_TEST_DATABASE_URL.
//
// Skipped, with the reason, when Chromium/playwright-core or the SAML SP tools are missing. The
// kiosk portal's packages are installed by `e2e/run --install-only`; if they are missing this file
// runs `npm ci` in examples/kiosk-portal itself. Screenshots: e2e/test-output/shared-browser/.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import okta from '@okta/okta-sdk-nodejs';
import { E2E_DIR, PYTHON, SAML_DIR, genSpKeys, samlToolsSkipReason } from '../saml/sp-tools.mjs';
import {
  assertSessionActive, assertSessionGone, browserSkipReason, eventIsAboutSession, launchBrowser, sessionEndEvents,
} from './browser-kit.mjs';
import { appMetadata, createSamlApp, signOnSettings, startSpApp } from './saml-kit.mjs';
import { startRoundRobinProxy } from './proxy-kit.mjs';
import { startCluster, startServer } from './server.mjs';
import { sessionToken } from './session-kit.mjs';

const skipReason = (await browserSkipReason()) ?? (await samlToolsSkipReason());
if (skipReason) console.log(`# shared-browser tests skipped: ${skipReason}`);
const DB = process.env.LATCHKEY_TEST_DATABASE_URL;
const clusterSkip = skipReason ?? (DB ? false : 'LATCHKEY_TEST_DATABASE_URL is not set: two nodes need PostgreSQL (e.g. postgres://postgres@127.0.0.1:5432/postgres)');

const KIOSK_DIR = path.resolve(E2E_DIR, '..', 'examples', 'kiosk-portal');
const OUTPUT_DIR = path.join(E2E_DIR, 'test-output', 'shared-browser');
const PASSWORD = 'Kq7#vWx2!Rt9pZ';
const RUN = randomBytes(3).toString('hex');
const NO_RATE_LIMITS = { LATCHKEY_AUTHN_RATE_LIMIT_PER_USERNAME: '0', LATCHKEY_AUTHN_RATE_LIMIT_PER_IP: '0' };

async function shot(page, name) {
  mkdirSync(OUTPUT_DIR, { recursive: true });
  await page.screenshot({ path: path.join(OUTPUT_DIR, `${name}.png`), fullPage: true });
}

// ---------------------------------------------------------------------------------------------
// The kiosk portal example, as a child process.

function sh(cmd, args, { cwd, timeoutMs }) {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { cwd, timeout: timeoutMs, maxBuffer: 4 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')} in ${cwd} failed: ${err.message}\n${stdout}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

/** `npm ci` in examples/kiosk-portal unless its node_modules has express and axios already. */
async function ensureKioskPackages() {
  const have = ['express', 'axios'].every((p) => existsSync(path.join(KIOSK_DIR, 'node_modules', p, 'package.json')));
  if (!have) await sh('npm', ['ci', '--no-audit', '--no-fund'], { cwd: KIOSK_DIR, timeoutMs: 180_000 });
}

/**
 * Starts `node examples/kiosk-portal/server.js` on a free loopback port. Resolves
 * { url, output(), stop() }.
 */
async function startKiosk({ latchkeyUrl, embedLink, apiToken, readyTimeoutMs = 15_000 }) {
  const child = spawn(process.execPath, [path.join(KIOSK_DIR, 'server.js')], {
    cwd: KIOSK_DIR,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, LATCHKEY_URL: latchkeyUrl, EMBED_LINK: embedLink, LATCHKEY_API_TOKEN: apiToken ?? '', PORT: '0', HOST: '127.0.0.1' },
  });
  const exited = new Promise((r) => child.once('exit', (code, signal) => r({ code, signal })));
  process.once('exit', () => { try { child.kill('SIGKILL'); } catch { /* gone */ } });
  let out = '';
  for (const s of [child.stdout, child.stderr]) s.on('data', (d) => { out = (out + d).slice(-8000); });
  let timer;
  const url = await new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`kiosk portal not listening within ${readyTimeoutMs} ms\n${out}`)), readyTimeoutMs);
    child.stdout.on('data', () => {
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) resolve(m[1]);
    });
    exited.then(({ code, signal }) => reject(new Error(`kiosk portal exited (code=${code}, signal=${signal})\n${out}`)));
  }).catch(async (e) => {
    child.kill('SIGKILL');
    await exited;
    throw e;
  }).finally(() => clearTimeout(timer));
  return {
    url,
    output: () => out,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return exited;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      const r = await exited;
      clearTimeout(t);
      return r;
    },
  };
}


// ---------------------------------------------------------------------------------------------
// One organisation: a SAML app for the pysaml2 SP, users A and B assigned to it, the kiosk portal
// pointed at the app's embed link.

async function setUpOrg(org, tag) {
  const { orgUrl, token } = org;
  const dir = mkdtempSync(path.join(os.tmpdir(), `latchkey-shared-browser-${tag}-`));
  const stops = [];
  const stopAll = async () => {
    for (const s of stops.reverse()) await s().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const client = new okta.Client({ orgUrl, token, cacheMiddleware: null });
    const keys = await genSpKeys(dir, 'sp');
    const entityId = `https://sp.example.test/${tag}/${RUN}`;
    const mdFile = path.join(dir, 'idp-metadata.xml');
    const spApp = await startSpApp({ python: PYTHON, script: path.join(SAML_DIR, 'sp_app.py'), idpMetadata: mdFile, entityId, key: keys.key, cert: keys.cert });
    stops.push(() => spApp.stop());
    const attr = (name, value) => ({ type: 'EXPRESSION', name, namespace: 'urn:oasis:names:tc:SAML:2.0:attrname-format:unspecified', values: [value] });
    const app = await createSamlApp(client, `Shared-browser SP (${tag})`, signOnSettings({
      acs: spApp.acs,
      audience: entityId,
      certB64: keys.cert_b64,
      extra: { attributeStatements: [attr('email', 'user.email'), attr('firstName', 'user.firstName'), attr('lastName', 'user.lastName')] },
    }), org);
    writeFileSync(mdFile, (await appMetadata(orgUrl, token, app.id)).xml);
    const users = {};
    for (const [key, first] of [['A', 'Ada'], ['B', 'Bea']]) {
      const login = `${key.toLowerCase()}.${tag}.${RUN}@example.com`;
      const user = await client.userApi.createUser({
        body: { profile: { firstName: first, lastName: `Kiosk${key}`, email: login, login }, credentials: { password: { value: PASSWORD } } },
        activate: true,
      });
      await client.applicationApi.assignUserToApplication({ appId: app.id, appUser: { id: user.id } });
      users[key] = { id: user.id, login, firstName: first };
    }
    const embedLink = app._links.appLinks[0].href;
    assert.ok(embedLink.startsWith(`${orgUrl}/home/`), embedLink);
    const kiosk = await startKiosk({ latchkeyUrl: orgUrl, embedLink, apiToken: token });
    stops.push(() => kiosk.stop());
    return { orgUrl, token, org, client, spApp, app, users, embedLink, kiosk, stop: stopAll };
  } catch (e) {
    await stopAll();
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// Browser steps.

/** Signs `user` in at the kiosk; resolves when the SP's ACS page has loaded; returns its #who text. */
async function throughKiosk(page, o, user) {
  await page.goto(`${o.kiosk.url}/`);
  await page.getByLabel('Username').fill(user.login);
  await page.getByLabel('Password').fill(PASSWORD);
  await Promise.all([
    page.waitForURL(o.spApp.acs, { timeout: 15_000 }),
    page.getByRole('button', { name: 'Sign in and open the app' }).click(),
  ]);
  await page.locator('#who').waitFor();
  return page.locator('#who').innerText();
}

/** /api/v1/sessions/me with the browser's own cookies (Playwright's request API, no CORS). */
async function me(context, orgUrl) {
  const r = await context.request.get(`${orgUrl}/api/v1/sessions/me`, { headers: { Accept: 'application/json' }, timeout: 10_000 });
  const text = await r.text();
  return { status: r.status(), json: text ? JSON.parse(text) : null, text };
}

async function activeSession(context, o, user, what) {
  const r = await me(context, o.orgUrl);
  assert.equal(r.status, 200, `${what}: /api/v1/sessions/me -> ${r.status} ${r.text}`);
  assert.equal(r.json.login, user.login, `${what}: ${r.text}`);
  assert.equal(r.json.status, 'ACTIVE', `${what}: ${r.text}`);
  return r.json;
}

async function spWhoami(o) {
  const res = await fetch(`${o.spApp.baseUrl}/whoami`, { signal: AbortSignal.timeout(5000) });
  assert.equal(res.status, 200);
  return res.json();
}

async function assertAtSpAs(page, o, user, what) {
  assert.equal(await page.locator('#who').innerText(), `Signed in as ${user.login}`, `${what}\n${await page.content()}`);
  const attrs = await page.locator('#attributes').innerText();
  assert.match(attrs, new RegExp(`firstName\\s+${user.firstName}`), `${what}: attributes ${attrs}`);
  assert.match(attrs, new RegExp(`email\\s+${user.login.replace(/\./g, '\\.')}`), `${what}: attributes ${attrs}`);
  assert.equal((await spWhoami(o)).name_id, user.login, `${what}: the SP verified ${user.login}`);
}

function assertOnSignInPage(page, o, what) {
  const u = new URL(page.url());
  assert.equal(`${u.origin}${u.pathname}`, `${o.orgUrl}/login/login.htm`, `${what}: on Latchkey's sign-in page, not ${page.url()}`);
  return u;
}

async function signInOnHostedPage(page, o, user) {
  await page.getByLabel('Username').fill(user.login);
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await Promise.all([
    page.waitForURL(o.spApp.acs, { timeout: 15_000 }),
    page.getByRole('button', { name: 'Sign in' }).click(),
  ]);
  await page.locator('#who').waitFor();
}

async function endEvents(o, sessionId) {
  return (await sessionEndEvents(o.org)).filter((e) => eventIsAboutSession(e, sessionId));
}

/** Case 1 (and 5): A then B through the kiosk in one browser; B arrives as B, A's session gone. */
async function tokenPrecedenceFlow(o, prefix) {
  const browser = await launchBrowser();
  try {
    const { page, context } = browser;
    const { A, B } = o.users;
    await throughKiosk(page, o, A);
    await shot(page, `${prefix}-1-a-at-sp`);
    await assertAtSpAs(page, o, A, 'A through the kiosk');
    const sessionA = await activeSession(context, o, A, 'A signed in');

    assert.equal(await throughKiosk(page, o, B), `Signed in as ${B.login}`, 'B through the kiosk in the same browser arrives as B');
    await shot(page, `${prefix}-2-b-at-sp`);
    await assertAtSpAs(page, o, B, 'B through the kiosk');
    const sessionB = await activeSession(context, o, B, 'B signed in');
    assert.notEqual(sessionB.id, sessionA.id);
    await assertSessionGone(o.org, sessionA.id, 'A\'s session after B\'s token');
    await assertSessionActive(o.org, sessionB.id, B.login, 'B\'s session');
    const ends = await endEvents(o, sessionA.id);
    assert.equal(ends.length, 1, JSON.stringify(ends));
    assert.equal(ends[0].outcome?.reason, 'REPLACED_BY_SESSION_TOKEN', JSON.stringify(ends[0]));
    return { sessionA, sessionB };
  } finally {
    await browser.close();
  }
}

// ---------------------------------------------------------------------------------------------

describe('shared browser, one node (SQLite): kiosk portal example + pysaml2 SP in Chromium', { skip: skipReason ?? false }, () => {
  let server;
  let o;

  before(async () => {
    await ensureKioskPackages();
    server = await startServer({ env: NO_RATE_LIMITS });
    o = await setUpOrg(server, 'one');
  });

  after(async () => {
    if (o) await o.stop();
    if (server) {
      const r = await server.stop();
      assert.ok(r.clean, `server did not stop cleanly: ${JSON.stringify({ code: r.code, signal: r.signal, note: r.note })}\n${r.output.slice(-2000)}`);
    }
  });

  test('1. token precedence (default): A then B through the kiosk; the SP sees B; A\'s IdP session is revoked', async () => {
    await tokenPrecedenceFlow(o, 'token');
  });

  test('3(i). SP-initiated: the portal\'s backend logout ends A\'s session; the SP\'s AuthnRequest gets the sign-in page; B signs in and arrives as B', async () => {
    const browser = await launchBrowser();
    try {
      const { page, context } = browser;
      const { A, B } = o.users;
      await throughKiosk(page, o, A);
      await assertAtSpAs(page, o, A, 'A through the kiosk');
      const sessionA = await activeSession(context, o, A, 'A signed in');

      // A signs out at the portal: its backend calls DELETE /api/v1/users/{id}/sessions.
      await page.goto(`${o.kiosk.url}/logout`);
      await Promise.all([
        page.waitForURL(`${o.kiosk.url}/logout`),
        page.getByRole('button', { name: 'End the sessions from the backend' }).click(),
      ]);
      assert.match(await page.locator('#result').innerText(), new RegExp(`every Latchkey session of ${A.login.replace(/\./g, '\\.')} has ended`));
      await shot(page, 'spi-1-portal-backend-logout');
      await assertSessionGone(o.org, sessionA.id, 'A\'s session after the portal\'s backend logout');
      assert.equal((await me(context, o.orgUrl)).status, 404, 'the browser\'s cookie no longer names a session');

      // B at the SP's own sign-in link: AuthnRequest -> Latchkey's sign-in page.
      await page.goto(`${o.spApp.login}?relay_state=${encodeURIComponent('/b-desk')}`);
      const signIn = assertOnSignInPage(page, o, 'SP-initiated after the portal logout');
      assert.match(signIn.searchParams.get('fromURI') ?? '', /^\/app\/[^/]+\/exk\w+\/sso\/saml\?resume=/);
      await shot(page, 'spi-2-sign-in-page');
      await signInOnHostedPage(page, o, B);
      await shot(page, 'spi-3-b-at-sp');
      await assertAtSpAs(page, o, B, 'B after SP-initiated sign-in');
      assert.equal(await page.locator('#flow').innerText(), 'SP-initiated');
      const who = await spWhoami(o);
      assert.equal(who.solicited, true);
      assert.ok(who.in_response_to, 'the Response answers the SP\'s AuthnRequest');
      await activeSession(context, o, B, 'B signed in on the hosted page');
    } finally {
      await browser.close();
    }
  });

  test('3(ii). SP-initiated with B\'s session token on the SSO URL: B is signed in by the token, A\'s session ends', async () => {
    const browser = await launchBrowser();
    try {
      const { page, context } = browser;
      const { A, B } = o.users;
      await throughKiosk(page, o, A);
      const sessionA = await activeSession(context, o, A, 'A signed in');

      // The SP's /login answers 302 to Latchkey's SSO URL with a signed AuthnRequest (the request
      // id is now outstanding at the SP); the browser goes there with B's token appended.
      const r = await context.request.get(o.spApp.login, { maxRedirects: 0, timeout: 10_000 });
      assert.equal(r.status(), 302);
      const sso = new URL(r.headers().location);
      assert.equal(sso.origin, o.orgUrl);
      assert.match(sso.pathname, /^\/app\/[^/]+\/exk\w+\/sso\/saml$/);
      assert.ok(sso.searchParams.get('SAMLRequest'));
      sso.searchParams.set('sessionToken', await sessionToken(o.orgUrl, B.login, PASSWORD));
      const visited = [];
      page.on('framenavigated', (f) => { if (f === page.mainFrame()) visited.push(f.url()); });
      await Promise.all([page.waitForURL(o.spApp.acs, { timeout: 15_000 }), page.goto(sso.href)]);
      await page.locator('#who').waitFor();
      await shot(page, 'spi-token-b-at-sp');
      assert.ok(!visited.some((u) => u.includes('/login/login.htm')), `no sign-in page on the way: ${visited.join(' -> ')}`);
      await assertAtSpAs(page, o, B, 'B by token on the SSO URL');
      assert.equal(await page.locator('#flow').innerText(), 'SP-initiated');
      await assertSessionGone(o.org, sessionA.id, 'A\'s session after B\'s token on the SSO URL');
      await activeSession(context, o, B, 'B signed in by the token');
    } finally {
      await browser.close();
    }
  });

  test('4. invalid token: A\'s session ends and the browser gets the sign-in page; a used token does the same', async () => {
    const browser = await launchBrowser();
    try {
      const { page, context } = browser;
      const { A, B } = o.users;
      const tokens = [];
      page.on('request', (req) => {
        const t = new URL(req.url()).searchParams.get('sessionToken');
        if (t && req.url().startsWith(o.embedLink)) tokens.push(t);
      });
      await throughKiosk(page, o, A);
      assert.equal(tokens.length, 1, 'the kiosk sent the browser to the embed link with a token');
      const sessionA = await activeSession(context, o, A, 'A signed in');

      await page.goto(`${o.embedLink}?sessionToken=${'bogus' + randomBytes(12).toString('hex')}`);
      const signIn = assertOnSignInPage(page, o, 'bogus token');
      await shot(page, 'invalid-1-sign-in-page');
      await assertSessionGone(o.org, sessionA.id, 'A\'s session after a bogus token');
      const ends = await endEvents(o, sessionA.id);
      assert.equal(ends.length, 1, JSON.stringify(ends));
      assert.equal(ends[0].outcome?.reason, 'INVALID_SESSION_TOKEN', JSON.stringify(ends[0]));
      assert.equal((await me(context, o.orgUrl)).status, 404);
      assert.ok(signIn.searchParams.get('fromURI'), 'the sign-in page knows where to go back to');

      // From this sign-in page B signs in and the app launch continues: the SP gets B.
      await signInOnHostedPage(page, o, B);
      await shot(page, 'invalid-2-b-at-sp');
      await assertAtSpAs(page, o, B, 'B after the sign-in page');
      const sessionB = await activeSession(context, o, B, 'B signed in on the hosted page');

      // A's kiosk token again (already redeemed): single-use, so it counts as invalid too.
      await page.goto(`${o.embedLink}?sessionToken=${encodeURIComponent(tokens[0])}`);
      assertOnSignInPage(page, o, 'used token');
      await assertSessionGone(o.org, sessionB.id, 'B\'s session after a used token');
    } finally {
      await browser.close();
    }
  });
});

describe('shared browser, LATCHKEY_SESSION_TOKEN_PRECEDENCE=cookie (Okta Classic)', { skip: skipReason ?? false }, () => {
  let server;
  let o;

  before(async () => {
    await ensureKioskPackages();
    server = await startServer({ env: { ...NO_RATE_LIMITS, LATCHKEY_SESSION_TOKEN_PRECEDENCE: 'cookie' } });
    o = await setUpOrg(server, 'cookie');
  });

  after(async () => {
    if (o) await o.stop();
    if (server) {
      const r = await server.stop();
      assert.ok(r.clean, `server did not stop cleanly: ${JSON.stringify({ code: r.code, signal: r.signal, note: r.note })}\n${r.output.slice(-2000)}`);
    }
  });

  test('2. cookie precedence: B goes through the kiosk after A and arrives at the SP as A', async () => {
    const browser = await launchBrowser();
    try {
      const { page, context } = browser;
      const { A, B } = o.users;
      await throughKiosk(page, o, A);
      await assertAtSpAs(page, o, A, 'A through the kiosk');
      const sessionA = await activeSession(context, o, A, 'A signed in');

      assert.equal(await throughKiosk(page, o, B), `Signed in as ${A.login}`, 'Okta Classic: B arrives as A');
      await shot(page, 'cookie-b-arrives-as-a');
      await assertAtSpAs(page, o, A, 'B through the kiosk, cookie precedence');
      await assertSessionActive(o.org, sessionA.id, A.login, 'A\'s session is kept');
      assert.equal((await activeSession(context, o, A, 'still A')).id, sessionA.id);
      assert.deepEqual(await endEvents(o, sessionA.id), []);
    } finally {
      await browser.close();
    }
  });
});

describe('shared browser, two nodes on one PostgreSQL behind a round-robin proxy', { skip: clusterSkip }, () => {
  let proxy;
  let cluster;
  let o;

  before(async () => {
    await ensureKioskPackages();
    proxy = await startRoundRobinProxy();
    cluster = await startCluster({ nodes: 2, env: NO_RATE_LIMITS, publicUrl: proxy.url });
    proxy.setUpstreams(cluster.nodes.map((n) => Number(new URL(n.nodeUrl).port)));
    o = await setUpOrg({ orgUrl: proxy.url, token: cluster.token }, 'cluster');
  });

  after(async () => {
    if (o) await o.stop();
    if (cluster) {
      const results = await cluster.stop();
      for (const r of results) {
        assert.ok(r.clean, `a node did not stop cleanly: ${JSON.stringify({ code: r.code, signal: r.signal, note: r.note })}\n${r.output.slice(-2000)}`);
      }
    }
    if (proxy) await proxy.close();
  });

  test('5. A then B through the kiosk, each request on either node: the SP sees B, A\'s session is revoked on both', async () => {
    const before = proxy.counts();
    const from = proxy.log().length;
    const { sessionA, sessionB } = await tokenPrecedenceFlow(o, 'cluster');
    const used = proxy.counts().map((n, i) => n - before[i]);
    const hops = proxy.log().slice(from);
    // authn (kiosk), embed link, sessions/me, admin checks: about ten requests, alternating.
    assert.ok(used.every((n) => n >= 3), `both nodes served the flow: ${JSON.stringify(used)}\n${hops.join('\n')}`);
    const embeds = hops.filter((h) => / GET \/home\//.test(h));
    assert.equal(embeds.length, 2, hops.join('\n'));
    // Two consecutive requests through the proxy land on different nodes: each one says A's
    // session is gone and B's is active.
    for (let i = 0; i < 2; i++) {
      const c0 = proxy.counts();
      await assertSessionGone(o.org, sessionA.id, `A's session, request ${i}`);
      await assertSessionActive(o.org, sessionB.id, o.users.B.login, `B's session, request ${i}`);
      const d = proxy.counts().map((n, j) => n - c0[j]);
      assert.deepEqual(d, [1, 1], `one request on each node: ${JSON.stringify(d)}`);
    }
  });
});
