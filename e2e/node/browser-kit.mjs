// Helpers for the real-browser tests (browser.test.mjs): headless Chromium driven by
// playwright-core, a tiny static "app" served from node:http that loads okta-auth-js's browser
// bundle, and raw-HTTP admin calls against the Latchkey server.
//
// Chromium is Debian's (/usr/bin/chromium, or LATCHKEY_E2E_CHROMIUM); no browser is downloaded.
// `browserSkipReason()` says why the browser tests cannot run here (or null when they can).
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const E2E_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export const CHROMIUM = process.env.LATCHKEY_E2E_CHROMIUM || '/usr/bin/chromium';
/** Screenshots go here (gitignored through e2e/.gitignore). */
export const OUTPUT_DIR = path.join(E2E_DIR, 'test-output', 'browser');
/** okta-auth-js's browser build: a plain script that defines the global `OktaAuth`. */
export const OKTA_AUTH_BUNDLE = path.join(E2E_DIR, 'node_modules', '@okta', 'okta-auth-js', 'dist', 'okta-auth-js.min.js');

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

let playwright = null;

/** Why the browser tests must be skipped here, or null when Chromium and playwright-core are present. */
export async function browserSkipReason() {
  if (!existsSync(CHROMIUM)) {
    return `Chromium not found at ${CHROMIUM}: install Debian's chromium and chromium-driver (.ci/run does) to run the browser tests`;
  }
  if (!existsSync(OKTA_AUTH_BUNDLE)) return `okta-auth-js browser bundle missing at ${OKTA_AUTH_BUNDLE} (run npm ci in e2e/)`;
  try {
    playwright = await import('playwright-core');
  } catch (e) {
    return `playwright-core is not installed (run npm ci in e2e/): ${e.message}`;
  }
  return null;
}

/**
 * A fresh Chromium with its own new user-data-dir (so its own cookie jar). Returns
 * { context, page, close() }; close() also removes the profile.
 */
export async function launchBrowser() {
  const userDataDir = await mkdtemp(path.join(os.tmpdir(), 'latchkey-chromium-'));
  let context;
  try {
    context = await playwright.chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 900, height: 600 },
      timeout: 30000,
    });
  } catch (e) {
    await rm(userDataDir, { recursive: true, force: true });
    throw e;
  }
  context.setDefaultTimeout(15000);
  context.setDefaultNavigationTimeout(15000);
  const page = context.pages()[0] ?? (await context.newPage());
  const consoleLines = [];
  page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
  return {
    context,
    page,
    consoleLines,
    async close() {
      await context.close().catch(() => {});
      await rm(userDataDir, { recursive: true, force: true });
    },
  };
}

/** Saves a PNG of the page under e2e/test-output/browser/ and returns its path. */
export async function screenshot(page, name) {
  await mkdir(OUTPUT_DIR, { recursive: true });
  const file = path.join(OUTPUT_DIR, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/** The `sid` cookies Chromium holds for host 127.0.0.1 (cookies are per host, not per port). */
export async function sidCookies(context) {
  return (await context.cookies()).filter((c) => c.name === 'sid' && c.domain === '127.0.0.1');
}

// ---------------------------------------------------------------------------------------------
// The app: one static page that loads okta-auth-js and exposes a few helpers to the test.

function appHtml(issuer) {
  // Everything the test runs in the page goes through window.e2e, which also writes each step on
  // the page so that the screenshots show what happened.
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Latchkey e2e app</title>
<style>
  body { font: 15px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
  h1 { font-size: 20px; margin: 0 0 8px; }
  code { background: #eef; padding: 1px 4px; }
  pre { background: #f6f6f6; border: 1px solid #ddd; padding: 8px; white-space: pre-wrap; }
</style>
<script src="/okta-auth-js.min.js"></script>
</head><body>
<h1>Latchkey e2e app</h1>
<p>This page: <code id="origin"></code> &middot; IdP: <code id="issuer"></code></p>
<pre id="log"></pre>
<script>
  const ISSUER = ${JSON.stringify(issuer)};
  document.getElementById('origin').textContent = location.href;
  document.getElementById('issuer').textContent = ISSUER;
  const logEl = document.getElementById('log');
  function show(label, value) {
    logEl.textContent += label + (value === undefined ? '' : ' ' + JSON.stringify(value)) + '\\n';
  }
  function failure(e) {
    return {
      ok: false,
      name: e && e.name,
      message: e && e.message,
      errorCode: e && e.errorCode,
      status: e && e.xhr ? e.xhr.status : undefined,
    };
  }
  function plainSession(s) {
    return { status: s.status, id: s.id, login: s.login, userId: s.userId, expiresAt: s.expiresAt, createdAt: s.createdAt };
  }
  const OktaAuthClass = typeof OktaAuth === 'function' ? OktaAuth : OktaAuth.OktaAuth;
  const authClient = new OktaAuthClass({ issuer: ISSUER });
  window.e2e = {
    show,
    async signIn(username, password) {
      try {
        const tx = await authClient.signInWithCredentials({ username, password });
        show('signInWithCredentials ->', tx.status);
        return { ok: true, status: tx.status, sessionToken: tx.sessionToken };
      } catch (e) {
        show('signInWithCredentials failed:', failure(e));
        return failure(e);
      }
    },
    setCookieAndRedirect(sessionToken, redirectUrl) {
      show('session.setCookieAndRedirect ->', redirectUrl);
      // After this call returns, so that the test's evaluate() is not cut off by the navigation.
      setTimeout(() => authClient.session.setCookieAndRedirect(sessionToken, redirectUrl), 0);
      return true;
    },
    async exists() {
      const exists = await authClient.session.exists();
      show('session.exists() ->', exists);
      return exists;
    },
    async get() {
      const s = plainSession(await authClient.session.get());
      show('session.get() ->', { status: s.status, login: s.login, id: s.id });
      return s;
    },
    async refresh() {
      try {
        const s = plainSession(await authClient.session.refresh());
        show('session.refresh() ->', { status: s.status, expiresAt: s.expiresAt });
        return { ok: true, session: s };
      } catch (e) {
        show('session.refresh() failed:', failure(e));
        return failure(e);
      }
    },
    async close() {
      try {
        await authClient.session.close();
        show('session.close() -> done');
        return { ok: true };
      } catch (e) {
        show('session.close() failed:', failure(e));
        return failure(e);
      }
    },
    /** A raw credentialed fetch of the IdP from this page: what CORS lets the page read. */
    async fetchIdp(path, method = 'GET') {
      try {
        const res = await fetch(ISSUER + path, { method, credentials: 'include', headers: { Accept: 'application/json' } });
        const text = await res.text();
        let json;
        try { json = JSON.parse(text); } catch { json = undefined; }
        show(method + ' ' + path + ' ->', res.status);
        return { ok: true, status: res.status, json, text };
      } catch (e) {
        show(method + ' ' + path + ' failed:', String(e));
        return { ok: false, name: e.name, message: e.message };
      }
    },
  };
  show('okta-auth-js loaded; OktaAuth is a ' + typeof OktaAuthClass);
</script>
</body></html>
`;
}

/**
 * Serves the app page at /app.html (and okta-auth-js at /okta-auth-js.min.js) on 127.0.0.1 on a
 * free port. Returns { origin, url(path = '/app.html'), requests, close() }.
 */
export async function startApp(issuer) {
  const bundle = await readFile(OKTA_AUTH_BUNDLE);
  const html = appHtml(issuer);
  const requests = [];
  const server = http.createServer((req, res) => {
    const { pathname } = new URL(req.url, 'http://app.invalid');
    requests.push({ method: req.method, url: req.url, cookie: req.headers.cookie });
    if (pathname === '/app.html') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
      res.end(html);
    } else if (pathname === '/okta-auth-js.min.js') {
      res.writeHead(200, { 'Content-Type': 'text/javascript; charset=utf-8' });
      res.end(bundle);
    } else if (pathname === '/favicon.ico') {
      res.writeHead(204);
      res.end();
    } else {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('not found');
    }
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const origin = `http://127.0.0.1:${server.address().port}`;
  return {
    origin,
    url: (p = '/app.html') => `${origin}${p}`,
    requests,
    close: () => new Promise((resolve) => {
      server.closeAllConnections?.();
      server.close(() => resolve());
    }),
  };
}

/** Opens the app page and waits until okta-auth-js is ready in it. */
export async function openApp(page, url) {
  const response = await page.goto(url, { waitUntil: 'load' });
  assert.equal(response?.status(), 200, `GET ${url}`);
  await page.waitForFunction(() => typeof window.e2e === 'object');
}

/**
 * Runs `start()` (which makes the page navigate) and waits until the page has loaded `target`
 * (a URL whose href starts with it). Returns the final document response.
 */
export async function navigation(page, target, start) {
  const [response] = await Promise.all([
    page.waitForNavigation({ url: (u) => u.href.startsWith(target), waitUntil: 'load' }),
    start(),
  ]);
  return response;
}

/**
 * The redirect hops (status, url, location, set-cookie) that led to a document response, oldest first.
 */
export async function redirectChain(response) {
  const hops = [];
  let request = response?.request().redirectedFrom();
  while (request) {
    const r = await request.response();
    if (r) {
      const headers = await r.allHeaders();
      hops.unshift({ status: r.status(), url: r.url(), location: headers.location, setCookie: headers['set-cookie'] });
    }
    request = request.redirectedFrom();
  }
  return hops;
}

// ---------------------------------------------------------------------------------------------
// The IdP, over raw HTTP (no browser).

/** Admin API with SSWS; returns { status, json, text, headers }. */
export async function adminApi(server, method, p, body) {
  const res = await fetch(`${server.orgUrl}${p}`, {
    method,
    headers: {
      Authorization: `SSWS ${server.token}`,
      Accept: 'application/json',
      ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json;
  try { json = text ? JSON.parse(text) : undefined; } catch { json = undefined; }
  return { status: res.status, json, text, headers: res.headers };
}

export async function trustOrigin(server, origin, scopes = ['CORS', 'REDIRECT']) {
  const r = await adminApi(server, 'POST', '/api/v1/trustedOrigins', {
    name: `app ${origin}`,
    origin,
    scopes: scopes.map((type) => ({ type })),
  });
  assert.equal(r.status, 200, `POST /api/v1/trustedOrigins ${origin} -> ${r.status} ${r.text}`);
  return r.json;
}

export async function createUser(server, login, password) {
  const r = await adminApi(server, 'POST', '/api/v1/users?activate=true', {
    profile: { login, email: login, firstName: 'Grace', lastName: 'Hopper' },
    credentials: { password: { value: password } },
  });
  assert.equal(r.status, 200, `POST /api/v1/users ${login} -> ${r.status} ${r.text}`);
  return r.json;
}

/** POST /api/v1/authn from Node (no Origin header); returns the SUCCESS sessionToken. */
export async function sessionTokenFor(server, username, password) {
  const res = await fetch(`${server.orgUrl}/api/v1/authn`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
    body: JSON.stringify({ username, password }),
  });
  const json = await res.json();
  assert.equal(res.status, 200, `authn ${username}: ${JSON.stringify(json)}`);
  assert.equal(json.status, 'SUCCESS', `authn ${username}: ${JSON.stringify(json)}`);
  assert.equal(typeof json.sessionToken, 'string');
  return json.sessionToken;
}

export function cookieRedirectUrl(server, token, redirectUrl) {
  const q = new URLSearchParams({ token, redirectUrl });
  return `${server.orgUrl}/login/sessionCookieRedirect?${q}`;
}

/** Asserts the session is gone for the admin API (Okta answers 404 for an ended session). */
export async function assertSessionGone(server, id, what) {
  const r = await adminApi(server, 'GET', `/api/v1/sessions/${id}`);
  assert.equal(r.status, 404, `${what}: GET /api/v1/sessions/${id} should be 404, got ${r.status} ${r.text}`);
  assert.equal(r.json?.errorCode, 'E0000007', `${what}: ${r.text}`);
}

export async function assertSessionActive(server, id, login, what) {
  const r = await adminApi(server, 'GET', `/api/v1/sessions/${id}`);
  assert.equal(r.status, 200, `${what}: GET /api/v1/sessions/${id} -> ${r.status} ${r.text}`);
  assert.equal(r.json.status, 'ACTIVE', `${what}: ${r.text}`);
  assert.equal(r.json.login, login, `${what}: ${r.text}`);
  return r.json;
}

/** The `user.session.end` events of the system log. */
export async function sessionEndEvents(server) {
  const filter = encodeURIComponent('eventType eq "user.session.end"');
  const r = await adminApi(server, 'GET', `/api/v1/logs?filter=${filter}`);
  assert.equal(r.status, 200, `GET /api/v1/logs -> ${r.status} ${r.text}`);
  assert.ok(Array.isArray(r.json), r.text);
  return r.json;
}

/** Does a log event name the session `id` (as target or as the event's session)? */
export function eventIsAboutSession(event, id) {
  return (event.target || []).some((t) => t.id === id) || event.authenticationContext?.externalSessionId === id;
}
