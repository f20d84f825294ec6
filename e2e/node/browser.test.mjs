// A real browser against Latchkey: Debian's headless Chromium (driven by playwright-core) loads a
// small app page that uses okta-auth-js's browser build, on loopback origins:
//   the IdP              http://127.0.0.1:P1  (latchkey serve)
//   a trusted app        http://127.0.0.1:P2  (trusted origin, scopes CORS + REDIRECT)
//   an untrusted app     http://127.0.0.1:P3  (the same page, not a trusted origin)
// Same site, different origins, as an app beside its IdP would be. Each test uses a new Chromium
// profile (its own cookie jar) and saves a screenshot under e2e/test-output/browser/.
//
// Skipped, with the reason, when /usr/bin/chromium (or LATCHKEY_E2E_CHROMIUM) or playwright-core
// is missing; .ci/run installs Chromium, so in CI these tests run.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { startServer } from './server.mjs';
import {
  adminApi,
  assertSessionActive,
  assertSessionGone,
  browserSkipReason,
  cookieRedirectUrl,
  createUser,
  eventIsAboutSession,
  launchBrowser,
  navigation,
  openApp,
  redirectChain,
  screenshot,
  sessionEndEvents,
  sessionTokenFor,
  sidCookies,
  startApp,
  trustOrigin,
} from './browser-kit.mjs';

const skip = await browserSkipReason();
if (skip) console.log(`# browser tests skipped: ${skip}`);

const SERVER_ENV = {
  LATCHKEY_AUTHN_RATE_LIMIT_PER_USERNAME: '0',
  LATCHKEY_AUTHN_RATE_LIMIT_PER_IP: '0',
};
const PASSWORD = 'Tulip-Lantern-47';
const RUN = randomBytes(3).toString('hex');
const login = (tag) => `${tag}.${RUN}@example.com`;

/** Runs `fn(browser)` in a fresh Chromium; on failure, adds what the page logged to the error. */
async function withBrowser(fn) {
  const browser = await launchBrowser();
  try {
    return await fn(browser);
  } catch (e) {
    if (browser.consoleLines.length && e && typeof e === 'object') {
      e.message = `${e.message}\n--- browser console ---\n${browser.consoleLines.join('\n')}`;
    }
    throw e;
  } finally {
    await browser.close();
  }
}

/** The app page calls e2e.<name>(...args) and returns its (JSON) result. */
const inPage = (page, name, ...args) => page.evaluate(([n, a]) => window.e2e[n](...a), [name, args]);

/** The Set-Cookie of a response that sets a new sid: `sid=<value>; ...` with the loopback attributes. */
function assertSetsSid(setCookie, what) {
  assert.ok(setCookie, `${what}: no Set-Cookie`);
  const sid = setCookie.split('\n').find((c) => c.startsWith('sid='));
  assert.ok(sid, `${what}: no sid in Set-Cookie: ${setCookie}`);
  const [pair, ...attrs] = sid.split(';').map((s) => s.trim());
  assert.ok(pair.length > 'sid='.length, `${what}: empty sid value: ${sid}`);
  const names = attrs.map((a) => a.split('=')[0].toLowerCase());
  for (const a of ['httponly', 'path', 'secure', 'samesite']) assert.ok(names.includes(a), `${what}: ${a} missing in ${sid}`);
  assert.ok(attrs.includes('Path=/'), `${what}: Path=/ expected: ${sid}`);
  assert.ok(attrs.some((a) => /^samesite=none$/i.test(a)), `${what}: SameSite=None expected on loopback: ${sid}`);
  return pair.slice('sid='.length);
}

/** The Set-Cookie of a response that clears sid. */
function assertClearsSid(setCookie, what) {
  assert.ok(setCookie, `${what}: no Set-Cookie`);
  const sid = setCookie.split('\n').find((c) => c.startsWith('sid='));
  assert.ok(sid, `${what}: no sid in Set-Cookie: ${setCookie}`);
  assert.ok(/^sid=;/.test(sid) || /max-age=0/i.test(sid) || /expires=Thu, 01 Jan 1970/i.test(sid), `${what}: sid not cleared: ${sid}`);
}

/** Chromium holds exactly one live sid for 127.0.0.1, with the attributes the server set. */
async function assertBrowserHasSid(context, what) {
  const sids = await sidCookies(context);
  assert.equal(sids.length, 1, `${what}: Chromium should hold one sid cookie, has ${JSON.stringify(sids)}`);
  const [c] = sids;
  assert.equal(c.httpOnly, true, `${what}: ${JSON.stringify(c)}`);
  assert.equal(c.secure, true, `${what}: ${JSON.stringify(c)}`);
  assert.equal(c.sameSite, 'None', `${what}: ${JSON.stringify(c)}`);
  assert.equal(c.path, '/', `${what}: ${JSON.stringify(c)}`);
  return c;
}

async function assertBrowserHasNoSid(context, what) {
  const sids = await sidCookies(context);
  assert.deepEqual(sids, [], `${what}: Chromium still holds a sid cookie`);
}

/** From the app page: /api/v1/sessions/me with credentials must be Okta's 404 (readable through CORS). */
async function assertNoSessionFromPage(page, what) {
  assert.equal(await inPage(page, 'exists'), false, `${what}: session.exists()`);
  const me = await inPage(page, 'fetchIdp', '/api/v1/sessions/me');
  assert.equal(me.ok, true, `${what}: fetch /api/v1/sessions/me failed in the page: ${JSON.stringify(me)}`);
  assert.equal(me.status, 404, `${what}: /api/v1/sessions/me -> ${me.status} ${me.text}`);
  assert.equal(me.json?.errorCode, 'E0000007', `${what}: ${me.text}`);
  assert.equal(me.json?.errorSummary, 'Not found: Resource not found: me (Session)', `${what}: ${me.text}`);
}

/** `url` is the IdP's sign-in page, /login/login.htm, set to return to `fromURI` (any percent-encoding). */
function assertSignInPage(url, server, fromURI, what) {
  const u = new URL(url);
  assert.equal(`${u.origin}${u.pathname}`, `${server.orgUrl}/login/login.htm`, `${what}: ${url}`);
  assert.deepEqual([...u.searchParams.keys()], ['fromURI'], `${what}: ${url}`);
  assert.equal(u.searchParams.get('fromURI'), fromURI, `${what}: ${url}`);
}

/** Navigates the browser to sessionCookieRedirect with `token`; expects to land on `target`. */
async function cookieRedirectTo(page, server, token, target) {
  const response = await page.goto(cookieRedirectUrl(server, token, target), { waitUntil: 'load' });
  assert.equal(page.url(), target, 'the browser should land on the app');
  assert.equal(response.status(), 200);
  const hops = await redirectChain(response);
  assert.equal(hops.length, 1, `one redirect expected: ${JSON.stringify(hops)}`);
  assert.equal(hops[0].status, 302);
  assert.equal(hops[0].location, target);
  await page.waitForFunction(() => typeof window.e2e === 'object');
  return hops[0];
}

/** Starts a server with a trusted app origin and two users on it. */
async function setUpOrg(env = {}) {
  const server = await startServer({ env: { ...SERVER_ENV, ...env } });
  const apps = [];
  try {
    const app = await startApp(server.orgUrl);
    apps.push(app);
    await trustOrigin(server, app.origin);
    const alice = await createUser(server, login('alice'), PASSWORD);
    const bob = await createUser(server, login('bob'), PASSWORD);
    return {
      server,
      app,
      alice: { id: alice.id, login: alice.profile.login },
      bob: { id: bob.id, login: bob.profile.login },
      async stop() {
        await Promise.all(apps.map((a) => a.close()));
        await server.stop();
      },
    };
  } catch (e) {
    await Promise.all(apps.map((a) => a.close()));
    await server.stop();
    throw e;
  }
}

// Each test (not the suite) carries the skip, so that the runner counts them as skipped.
const opts = { skip: skip ?? false };

describe('browser: okta-auth-js in headless Chromium', () => {
  let org;
  let untrusted;

  before(async () => {
    if (skip) return;
    org = await setUpOrg();
    untrusted = await startApp(org.server.orgUrl);
  });

  after(async () => {
    await untrusted?.close();
    await org?.stop();
  });

  test('1. trusted app: signInWithCredentials, setCookieAndRedirect, then session exists/get/refresh/close', opts, async () => {
    const { server, app, alice } = org;
    await withBrowser(async ({ context, page }) => {
      await openApp(page, app.url());
      const signIn = await inPage(page, 'signIn', alice.login, PASSWORD);
      assert.equal(signIn.ok, true, `signInWithCredentials from ${app.origin}: ${JSON.stringify(signIn)}`);
      assert.equal(signIn.status, 'SUCCESS');
      assert.equal(typeof signIn.sessionToken, 'string');

      const target = app.url('/app.html?step=landed');
      const cookieRedirect = page.waitForResponse((r) => r.url().startsWith(`${server.orgUrl}/login/sessionCookieRedirect?`));
      const landed = await navigation(page, target, () => inPage(page, 'setCookieAndRedirect', signIn.sessionToken, target));
      assert.equal(landed.status(), 200);
      assert.equal(page.url(), target, 'back on the app');
      const hop = await cookieRedirect;
      assert.equal(hop.status(), 302);
      const hopHeaders = await hop.allHeaders();
      assert.equal(hopHeaders.location, target);
      const sidValue = assertSetsSid(hopHeaders['set-cookie'], 'sessionCookieRedirect');
      const cookie = await assertBrowserHasSid(context, 'after setCookieAndRedirect');
      assert.equal(cookie.value, sidValue, 'Chromium stored the sid the server set');

      await page.waitForFunction(() => typeof window.e2e === 'object');
      assert.equal(await inPage(page, 'exists'), true, 'session.exists()');
      const session = await inPage(page, 'get');
      assert.equal(session.status, 'ACTIVE');
      assert.equal(session.login, alice.login);
      assert.equal(session.userId, alice.id);
      assert.equal(typeof session.id, 'string');
      await assertSessionActive(server, session.id, alice.login, 'admin view of the browser session');

      const refreshed = await inPage(page, 'refresh');
      assert.equal(refreshed.ok, true, `session.refresh(): ${JSON.stringify(refreshed)}`);
      assert.equal(refreshed.session.status, 'ACTIVE');
      assert.equal(refreshed.session.id, session.id);
      assert.equal(refreshed.session.login, alice.login);
      assert.ok(Date.parse(refreshed.session.expiresAt) >= Date.parse(session.expiresAt),
        `refresh must not shorten the session: ${session.expiresAt} -> ${refreshed.session.expiresAt}`);
      await screenshot(page, '1-trusted-app-signed-in');

      const closed = await inPage(page, 'close');
      assert.equal(closed.ok, true, `session.close(): ${JSON.stringify(closed)}`);
      await assertNoSessionFromPage(page, 'after session.close()');
      await assertBrowserHasNoSid(context, 'after session.close()');
      await assertSessionGone(server, session.id, 'after session.close()');
    });
  });

  test('2. untrusted app origin: the authn call is refused by CORS and makes no session', opts, async () => {
    const { server } = org;
    const carol = await createUser(server, login('carol'), PASSWORD);
    await withBrowser(async ({ context, page }) => {
      const cdp = await context.newCDPSession(page);
      const failed = [];
      const requests = new Map();
      cdp.on('Network.requestWillBeSent', (e) => requests.set(e.requestId, e.request.url));
      cdp.on('Network.loadingFailed', (e) => failed.push({ url: requests.get(e.requestId), errorText: e.errorText, cors: e.corsErrorStatus }));
      await cdp.send('Network.enable');

      await openApp(page, untrusted.url());
      const signIn = await inPage(page, 'signIn', carol.profile.login, PASSWORD);
      await screenshot(page, '2-untrusted-app-refused');
      assert.equal(signIn.ok, false, `signInWithCredentials must fail from the untrusted ${untrusted.origin}: ${JSON.stringify(signIn)}`);
      assert.equal(signIn.sessionToken, undefined);

      const authnFailure = failed.find((f) => f.url === `${server.orgUrl}/api/v1/authn`);
      assert.ok(authnFailure, `Chromium should report the /api/v1/authn request as failed: ${JSON.stringify(failed)}`);
      assert.ok(authnFailure.cors?.corsError, `the failure should be a CORS error: ${JSON.stringify(authnFailure)}`);

      // The same calls without a browser, as the browser sent them: preflight, then the POST.
      const preflight = await fetch(`${server.orgUrl}/api/v1/authn`, {
        method: 'OPTIONS',
        headers: {
          Origin: untrusted.origin,
          'Access-Control-Request-Method': 'POST',
          'Access-Control-Request-Headers': 'content-type,x-okta-user-agent-extended',
        },
      });
      assert.equal(preflight.status, 403, 'preflight from an untrusted origin');
      assert.equal(preflight.headers.get('access-control-allow-origin'), null);
      const post = await fetch(`${server.orgUrl}/api/v1/authn`, {
        method: 'POST',
        headers: { Origin: untrusted.origin, 'Content-Type': 'application/json', Accept: 'application/json' },
        body: JSON.stringify({ username: carol.profile.login, password: PASSWORD }),
      });
      const body = await post.json();
      assert.equal(post.status, 403, `POST /api/v1/authn from an untrusted origin: ${JSON.stringify(body)}`);
      assert.equal(body.errorCode, 'E0000006', JSON.stringify(body));
      assert.equal(body.sessionToken, undefined);
      assert.equal(post.headers.get('access-control-allow-origin'), null);

      // Nothing signed carol in: no lastLogin, and the browser holds no session.
      const user = await adminApi(server, 'GET', `/api/v1/users/${carol.id}`);
      assert.equal(user.status, 200, user.text);
      assert.equal(user.json.lastLogin ?? null, null, `carol never signed in, but lastLogin is ${user.json.lastLogin}`);
      await assertBrowserHasNoSid(context, 'after the refused sign-in');
    });
  });

  test('3. signout by redirect: lands on the trusted app with the session ended and the cookie gone', opts, async () => {
    const { server, app, alice } = org;
    await withBrowser(async ({ context, page }) => {
      const token = await sessionTokenFor(server, alice.login, PASSWORD);
      await cookieRedirectTo(page, server, token, app.url('/app.html?step=signed-in'));
      await assertBrowserHasSid(context, 'after sessionCookieRedirect');
      const session = await inPage(page, 'get');
      assert.equal(session.login, alice.login);

      const back = app.url('/app.html?step=signed-out');
      const response = await page.goto(`${server.orgUrl}/login/signout?fromURI=${encodeURIComponent(back)}`, { waitUntil: 'load' });
      assert.equal(page.url(), back, 'signout should send the browser back to the trusted fromURI');
      const [hop] = await redirectChain(response);
      assert.equal(hop?.status, 302, `signout redirect: ${JSON.stringify(hop)}`);
      assert.equal(hop.location, back);
      assertClearsSid(hop.setCookie, 'signout');
      await page.waitForFunction(() => typeof window.e2e === 'object');

      await assertNoSessionFromPage(page, 'after signout');
      await assertBrowserHasNoSid(context, 'after signout');
      await assertSessionGone(server, session.id, 'after signout');
      await screenshot(page, '3-signed-out');
    });
  });

  test('4. shared browser: B\'s session token replaces A\'s session', opts, async () => {
    const { server, app, alice, bob } = org;
    await withBrowser(async ({ context, page }) => {
      const tokenA = await sessionTokenFor(server, alice.login, PASSWORD);
      const hopA = await cookieRedirectTo(page, server, tokenA, app.url('/app.html?user=a'));
      const sidA = assertSetsSid(hopA.setCookie, 'A\'s sessionCookieRedirect');
      const a = await inPage(page, 'get');
      assert.equal(a.login, alice.login);
      const meA = await inPage(page, 'fetchIdp', '/api/v1/sessions/me');
      assert.equal(meA.status, 200, meA.text);
      assert.equal(meA.json.id, a.id);

      // B signs in on the same page, in the same browser, and is sent through sessionCookieRedirect.
      const signIn = await inPage(page, 'signIn', bob.login, PASSWORD);
      assert.equal(signIn.status, 'SUCCESS', JSON.stringify(signIn));
      const target = app.url('/app.html?user=b');
      const cookieRedirect = page.waitForResponse((r) => r.url().startsWith(`${server.orgUrl}/login/sessionCookieRedirect?`));
      await navigation(page, target, () => inPage(page, 'setCookieAndRedirect', signIn.sessionToken, target));
      assert.equal(page.url(), target, 'B continues to the app');
      const hopB = await cookieRedirect;
      const sidB = assertSetsSid((await hopB.allHeaders())['set-cookie'], 'B\'s sessionCookieRedirect');
      assert.notEqual(sidB, sidA, 'B gets a new sid');
      const cookie = await assertBrowserHasSid(context, 'after B');
      assert.equal(cookie.value, sidB);

      await page.waitForFunction(() => typeof window.e2e === 'object');
      const b = await inPage(page, 'get');
      assert.equal(b.status, 'ACTIVE');
      assert.equal(b.login, bob.login);
      assert.notEqual(b.id, a.id);
      const meB = await inPage(page, 'fetchIdp', '/api/v1/sessions/me');
      assert.equal(meB.status, 200, meB.text);
      assert.equal(meB.json.login, bob.login, 'sessions/me now reports B');
      await screenshot(page, '4-shared-browser-now-b');

      await assertSessionGone(server, a.id, 'A\'s replaced session');
      await assertSessionActive(server, b.id, bob.login, 'B\'s session');
      const ends = (await sessionEndEvents(server)).filter((e) => eventIsAboutSession(e, a.id));
      assert.equal(ends.length, 1, `one user.session.end for A's session ${a.id}: ${JSON.stringify(ends)}`);
      assert.equal(ends[0].outcome?.reason, 'REPLACED_BY_SESSION_TOKEN', JSON.stringify(ends[0]));
    });
  });

  test('5. LATCHKEY_SESSION_TOKEN_PRECEDENCE=cookie: A\'s session stays and B\'s token is left unused', opts, async () => {
    const classic = await setUpOrg({ LATCHKEY_SESSION_TOKEN_PRECEDENCE: 'cookie' });
    try {
      const { server, app, alice, bob } = classic;
      const tokenB = await sessionTokenFor(server, bob.login, PASSWORD);
      await withBrowser(async ({ context, page }) => {
        const tokenA = await sessionTokenFor(server, alice.login, PASSWORD);
        const hopA = await cookieRedirectTo(page, server, tokenA, app.url('/app.html?user=a'));
        const sidA = assertSetsSid(hopA.setCookie, 'A\'s sessionCookieRedirect');
        const a = await inPage(page, 'get');
        assert.equal(a.login, alice.login);

        const target = app.url('/app.html?user=b');
        await cookieRedirectTo(page, server, tokenB, target);
        const cookie = await assertBrowserHasSid(context, 'after B\'s token');
        assert.equal(cookie.value, sidA, 'the sid is still A\'s');
        const still = await inPage(page, 'get');
        assert.equal(still.login, alice.login, 'the existing session wins');
        assert.equal(still.id, a.id);
        await screenshot(page, '5-cookie-precedence-still-a');
        await assertSessionActive(server, a.id, alice.login, 'A\'s session');
        const ends = (await sessionEndEvents(server)).filter((e) => eventIsAboutSession(e, a.id));
        assert.deepEqual(ends, [], 'A\'s session was not ended');
      });

      // B's token was not spent: it still makes B's session, in another browser.
      await withBrowser(async ({ context, page }) => {
        await cookieRedirectTo(page, server, tokenB, app.url('/app.html?user=b-elsewhere'));
        await assertBrowserHasSid(context, 'B in a browser of its own');
        const b = await inPage(page, 'get');
        assert.equal(b.login, bob.login);
      });
    } finally {
      await classic.stop();
    }
  });

  test('6. invalid or used token while A\'s session exists: A\'s session ends, the cookie goes, sign-in page next', opts, async () => {
    const { server, app, alice } = org;
    await withBrowser(async ({ context, page }) => {
      for (const kind of ['invalid', 'used']) {
        const tokenA = await sessionTokenFor(server, alice.login, PASSWORD);
        await cookieRedirectTo(page, server, tokenA, app.url(`/app.html?step=${kind}-signed-in`));
        await assertBrowserHasSid(context, `${kind}: A signed in`);
        const a = await inPage(page, 'get');
        assert.equal(a.login, alice.login);
        if (kind === 'invalid') await screenshot(page, '6-before-invalid-token');

        const bad = kind === 'invalid' ? `not-a-session-token-${randomBytes(12).toString('hex')}` : tokenA;
        const target = app.url(`/app.html?step=${kind}-after`);
        const response = await page.goto(cookieRedirectUrl(server, bad, target), { waitUntil: 'load' });
        assertSignInPage(page.url(), server, target, `${kind} token: where the browser ended up`);
        const [hop] = await redirectChain(response);
        assert.equal(hop?.status, 302, `${kind} token: ${JSON.stringify(hop)}`);
        assertSignInPage(hop.location, server, target, `${kind} token: Location`);
        assert.equal(hop.location, page.url());
        assertClearsSid(hop.setCookie, `${kind} token`);

        await assertBrowserHasNoSid(context, `${kind} token`);
        await assertSessionGone(server, a.id, `${kind} token: A's session`);
        await openApp(page, app.url(`/app.html?step=${kind}-back-on-app`));
        await assertNoSessionFromPage(page, `${kind} token`);
      }
    });
  });
});
