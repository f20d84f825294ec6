// Helpers shared by the Sessions API end-to-end tests (sessions.test.mjs, multinode.test.mjs):
// session tokens from the primary authentication API, the `sid` cookie from
// /login/sessionCookieRedirect, raw /api/v1/sessions/me calls that carry only that cookie, and an
// Okta error assertion for okta-sdk-nodejs. Everything here speaks plain HTTP with fetch, so the
// test sees exactly what a browser or a backend would.
import assert from 'node:assert/strict';

/** Where sessionCookieRedirect sends the browser; its origin must be trusted (trustRedirectOrigin). */
export const APP_ORIGIN = 'https://app.example.com';
export const APP_CALLBACK = `${APP_ORIGIN}/signed-in`;

/** Trusts APP_ORIGIN for REDIRECT and CORS through the Trusted Origins API (SSWS). */
export async function trustRedirectOrigin(orgUrl, token, name = 'e2e sessions app') {
  const res = await fetch(`${orgUrl}/api/v1/trustedOrigins`, {
    method: 'POST',
    headers: { Authorization: `SSWS ${token}`, Accept: 'application/json', 'Content-Type': 'application/json' },
    body: JSON.stringify({ name, origin: APP_ORIGIN, scopes: [{ type: 'REDIRECT' }, { type: 'CORS' }] }),
  });
  const text = await res.text();
  assert.equal(res.status, 200, `POST /api/v1/trustedOrigins -> ${res.status} ${text}`);
  return JSON.parse(text);
}

/** `POST /api/v1/authn` with a password (no API token, as a browser would): the sessionToken. */
export async function sessionToken(orgUrl, login, password) {
  const res = await fetch(`${orgUrl}/api/v1/authn`, {
    method: 'POST',
    headers: { Accept: 'application/json', 'Content-Type': 'application/json' },
    body: JSON.stringify({ username: login, password }),
  });
  const text = await res.text();
  assert.equal(res.status, 200, `POST /api/v1/authn for ${login} -> ${res.status} ${text}`);
  const body = JSON.parse(text);
  assert.equal(body.status, 'SUCCESS', `authn status for ${login}: ${text}`);
  assert.equal(typeof body.sessionToken, 'string', `SUCCESS carries a sessionToken: ${text}`);
  return body.sessionToken;
}

/** The `sid=...` pair from the Set-Cookie headers of a response, or null. */
export function sidFrom(res) {
  for (const line of res.headers.getSetCookie()) {
    const m = /^\s*sid=([^;]*)/.exec(line);
    if (m) return { pair: `sid=${m[1]}`, value: m[1], header: line };
  }
  return null;
}

/**
 * The browser side of `GET /login/sessionCookieRedirect?token=...&redirectUrl=...`, redirects NOT
 * followed. `cookie` is the Cookie header the browser already holds (or none). Expects the 302 to
 * the trusted redirectUrl and a new `sid` cookie; returns { cookie: "sid=...", res, setCookie }.
 */
export async function cookieFromToken(orgUrl, token, { cookie, redirectUrl = APP_CALLBACK } = {}) {
  const url = `${orgUrl}/login/sessionCookieRedirect?token=${encodeURIComponent(token)}&redirectUrl=${encodeURIComponent(redirectUrl)}`;
  const res = await fetch(url, { redirect: 'manual', headers: cookie ? { Cookie: cookie } : {} });
  const body = await res.text();
  const shown = `${res.status} location=${res.headers.get('location')} set-cookie=${JSON.stringify(res.headers.getSetCookie())} ${body.slice(0, 300)}`;
  assert.equal(res.status, 302, `sessionCookieRedirect should redirect: ${shown}`);
  assert.equal(res.headers.get('location'), redirectUrl, `sessionCookieRedirect goes on to the redirectUrl: ${shown}`);
  const sid = sidFrom(res);
  assert.ok(sid && sid.value.length >= 20, `sessionCookieRedirect sets a sid cookie: ${shown}`);
  assert.match(sid.header, /;\s*Path=\/(;|$)/i, `sid cookie has Path=/: ${sid.header}`);
  assert.match(sid.header, /;\s*HttpOnly(;|$)/i, `sid cookie is HttpOnly: ${sid.header}`);
  return { cookie: sid.pair, res, setCookie: sid.header };
}

/**
 * A raw call on /api/v1/sessions/me[...] carrying only the browser cookie (no API token).
 * Returns { status, json, text, headers }.
 */
export async function meCall(orgUrl, method, cookie, suffix = '') {
  const res = await fetch(`${orgUrl}/api/v1/sessions/me${suffix}`, {
    method,
    headers: { Accept: 'application/json', ...(cookie ? { Cookie: cookie } : {}) },
  });
  const text = await res.text();
  let json;
  try { json = text ? JSON.parse(text) : undefined; } catch { json = undefined; }
  return { status: res.status, json, text, headers: res.headers };
}

/** Okta's answer to /api/v1/sessions/me without a live session cookie. */
export const ME_NOT_FOUND = 'Not found: Resource not found: me (Session)';

export function assertMeNotFound(r, what) {
  assert.equal(r.status, 404, `${what}: expected 404, got ${r.status} ${r.text}`);
  assert.equal(r.json?.errorCode, 'E0000007', `${what}: ${r.text}`);
  assert.equal(r.json?.errorSummary, ME_NOT_FOUND, `${what}: ${r.text}`);
}

/**
 * Awaits `promise`, expects okta-sdk-nodejs to reject it with an OktaApiError of the given HTTP
 * status and errorCode (and errorSummary, when given), checks the envelope, returns the error.
 */
export async function expectOktaError(promise, status, errorCode, { summary, what = '' } = {}) {
  let err;
  try {
    const value = await promise;
    assert.fail(`${what ? `${what}: ` : ''}expected HTTP ${status} ${errorCode}, but the call succeeded with ${JSON.stringify(value)}`);
  } catch (e) {
    err = e;
  }
  if (err instanceof assert.AssertionError) throw err;
  const p = what ? `${what}: ` : '';
  assert.equal(err.name, 'OktaApiError', `${p}expected an OktaApiError (JSON error body), got ${err.name}: ${err.message}`);
  assert.equal(err.status, status, `${p}HTTP status; error was: ${err.message}`);
  assert.equal(err.errorCode, errorCode, `${p}errorCode; error was: ${err.message}`);
  if (summary !== undefined) assert.equal(err.errorSummary, summary, `${p}errorSummary`);
  assert.equal(typeof err.errorSummary, 'string');
  assert.ok(err.errorSummary.length > 0, `${p}errorSummary should not be empty`);
  assert.equal(typeof err.errorId, 'string', `${p}errorId should be a string`);
  assert.ok(err.errorId.length > 0, `${p}errorId should not be empty`);
  assert.equal(typeof err.errorLink, 'string', `${p}errorLink should be a string`);
  assert.ok(Array.isArray(err.errorCauses), `${p}errorCauses should be an array, got ${JSON.stringify(err.errorCauses)}`);
  return err;
}
