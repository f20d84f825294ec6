// Helpers shared by the /api/v1/authn end-to-end tests (authn.test.mjs, multinode.test.mjs):
// an independent RFC 6238 TOTP generator, Okta error assertions for okta-auth-js, transaction shape
// checks, the admin Policies API over raw fetch, and user creation with okta-sdk-nodejs.
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import okta from '@okta/okta-sdk-nodejs';
import { OktaAuth } from '@okta/okta-auth-js';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// TOTP (RFC 6238: HMAC-SHA1, 30 s steps, 6 digits), written here so that the test does not trust
// any of the server's code.

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

export function base32Decode(text) {
  const clean = text.replace(/[=\s]/g, '').toUpperCase();
  const out = [];
  let buffer = 0;
  let bits = 0;
  for (const c of clean) {
    const v = BASE32.indexOf(c);
    if (v < 0) throw new Error(`not base32: ${JSON.stringify(text)}`);
    buffer = ((buffer << 5) | v) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      out.push((buffer >> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

export const STEP_SECONDS = 30;
export const stepNow = () => Math.floor(Date.now() / 1000 / STEP_SECONDS);

export function hotp(key, counter, digits = 6) {
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(counter));
  const mac = createHmac('sha1', key).update(msg).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  const binary = ((mac[offset] & 0x7f) << 24) | (mac[offset + 1] << 16) | (mac[offset + 2] << 8) | mac[offset + 3];
  return String(binary % 10 ** digits).padStart(digits, '0');
}

/**
 * An authenticator app for one shared secret. Each `nextCode()` is for a time step later than every
 * code it gave before (a server must refuse a step it has already accepted), starting at the current
 * step. The next step is used at once rather than waited for: RFC 6238 §6 lets a verifier accept one
 * step of drift each way, which Okta and Latchkey do. Only when two steps ahead would be needed does
 * it wait for the clock (so at most ~30 s, and the tests are written to never need it).
 */
export class Authenticator {
  constructor(sharedSecret) {
    this.secret = sharedSecret;
    this.key = base32Decode(sharedSecret);
    this.lastStep = -Infinity;
  }

  codeAt(step) {
    return hotp(this.key, step);
  }

  async nextCode() {
    let step = Math.max(stepNow(), this.lastStep + 1);
    while (step > stepNow() + 1) await sleep(250);
    // Too close to the end of a step, a code for "now" may reach the server in the next one; that
    // is still inside the ±1 window, so no wait is needed here.
    this.lastStep = step;
    this.lastCode = this.codeAt(step);
    return this.lastCode;
  }
}

// ---------------------------------------------------------------------------------------------
// Errors

/**
 * Awaits `promise`, expects okta-auth-js to reject it with an AuthApiError of the given HTTP status
 * and Okta errorCode, checks the envelope, and returns the error.
 */
export async function expectAuthError(promise, status, errorCode, what = '') {
  let err;
  try {
    const value = await promise;
    const shown = value && typeof value === 'object' ? JSON.stringify(value.data ?? value) : String(value);
    assert.fail(`${what ? `${what}: ` : ''}expected HTTP ${status} ${errorCode}, but the call succeeded with ${shown}`);
  } catch (e) {
    err = e;
  }
  if (err instanceof assert.AssertionError) throw err;
  assert.equal(err.name, 'AuthApiError', `${what}: expected an AuthApiError, got ${err.name}: ${err.message}`);
  const body = err.xhr?.responseText;
  assert.equal(err.xhr?.status, status, `${what}: HTTP status; body: ${body}`);
  assert.equal(err.errorCode, errorCode, `${what}: errorCode; body: ${body}`);
  assert.equal(typeof err.errorSummary, 'string', `${what}: errorSummary; body: ${body}`);
  assert.ok(err.errorSummary.length > 0, `${what}: errorSummary should not be empty`);
  assert.equal(typeof err.errorId, 'string', `${what}: errorId; body: ${body}`);
  assert.equal(typeof err.errorLink, 'string', `${what}: errorLink; body: ${body}`);
  assert.ok(Array.isArray(err.errorCauses), `${what}: errorCauses should be an array; body: ${body}`);
  return err;
}

// ---------------------------------------------------------------------------------------------
// Transactions

/** Every `_links` entry anywhere in `value`, with its JSON path. */
function* allLinks(value, path = '$') {
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) yield* allLinks(value[i], `${path}[${i}]`);
  } else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      if (k === '_links' && v && typeof v === 'object') {
        for (const [name, link] of Object.entries(v)) yield { path: `${path}._links.${name}`, name, link };
      }
      if (k !== 'headers') yield* allLinks(v, `${path}.${k}`);
    }
  }
}

/**
 * Checks the shape every Okta authn transaction has, and that `tx.status === status`.
 * Returns tx.data (the raw response JSON).
 */
export function assertTx(tx, status, orgUrl) {
  const data = tx.data;
  const raw = () => JSON.stringify(data, (k, v) => (k === 'headers' ? undefined : v));
  assert.equal(tx.status, status, `transaction status; response: ${raw()}`);
  assert.equal(data.status, status);
  if (status === 'SUCCESS') {
    assert.equal(typeof data.sessionToken, 'string', `SUCCESS carries a sessionToken; response: ${raw()}`);
    assert.ok(data.sessionToken.length >= 20, `sessionToken looks too short: ${data.sessionToken}`);
    assert.equal(tx.sessionToken, data.sessionToken);
    assert.equal(data.stateToken, undefined, `SUCCESS carries no stateToken; response: ${raw()}`);
  } else {
    assert.equal(data.sessionToken, undefined, `only SUCCESS carries a sessionToken; ${status} response: ${raw()}`);
    assert.equal(tx.sessionToken, undefined);
  }
  if (status !== 'LOCKED_OUT' && status !== 'SUCCESS') {
    assert.equal(typeof data.stateToken, 'string', `${status} carries a stateToken; response: ${raw()}`);
    assert.ok(data.stateToken.length >= 20, `stateToken looks too short: ${data.stateToken}`);
  }
  if (status === 'LOCKED_OUT') {
    assert.equal(data.stateToken, undefined, `LOCKED_OUT carries no stateToken; response: ${raw()}`);
  }
  if (data.expiresAt !== undefined || status !== 'LOCKED_OUT') {
    assert.equal(typeof data.expiresAt, 'string', `expiresAt; response: ${raw()}`);
    const at = Date.parse(data.expiresAt);
    assert.ok(!Number.isNaN(at), `expiresAt is not a date-time: ${data.expiresAt}`);
    assert.ok(at > Date.now(), `expiresAt is in the past: ${data.expiresAt}`);
    assert.match(data.expiresAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z$/, 'expiresAt in Okta\'s UTC form');
  }
  for (const { path, name, link } of allLinks(data)) {
    assert.equal(typeof link.href, 'string', `${path}.href`);
    if (orgUrl) assert.ok(link.href.startsWith(`${orgUrl}/`), `${path}.href must be absolute under ${orgUrl}: ${link.href}`);
    if (link.type) continue; // e.g. qrcode: {href, type: "image/png"}
    assert.ok(Array.isArray(link.hints?.allow), `${path}.hints.allow; response: ${raw()}`);
    assert.equal(link.hints.allow.length, 1, `${path}.hints.allow must be one verb for okta-auth-js: ${JSON.stringify(link.hints)}`);
    if (name === 'next') assert.equal(typeof link.name, 'string', `${path}.name`);
  }
  return data;
}

/** The names of the transaction-level links (next is named by next.name). */
export function linkNames(tx) {
  const links = tx.data._links || {};
  return Object.keys(links).map((k) => (k === 'next' ? `next:${links.next.name}` : k)).sort();
}

export function assertUserEmbedded(tx, user) {
  const u = tx.data._embedded?.user;
  assert.ok(u, `_embedded.user is missing: ${JSON.stringify(tx.data._embedded)}`);
  assert.equal(u.id, user.id);
  assert.equal(u.profile?.login, user.profile.login);
  assert.equal(u.profile?.firstName, user.profile.firstName);
  assert.equal(u.profile?.lastName, user.profile.lastName);
  assert.equal(u.credentials, undefined, 'no credentials in _embedded.user');
  assert.equal(tx.user.id, user.id, 'okta-auth-js flattens _embedded.user to tx.user');
}

// ---------------------------------------------------------------------------------------------
// The admin side: users through okta-sdk-nodejs, policies through raw fetch (SSWS).

// Meets the default password policy and shares no part with any login or name used here.
export const PASSWORD = 'Correct-Horse-9';
export const PASSWORD_2 = 'Xk9#mQv2!Lp7wZ';
export const PASSWORD_3 = 'Rb4$tNy8^Hc3jQ';

const RUN = randomBytes(3).toString('hex');
let seq = 0;
export const uniqueLogin = (tag) => `${tag}.${RUN}.${++seq}@example.com`;

export class Admin {
  constructor(orgUrl, token) {
    this.orgUrl = orgUrl;
    this.token = token;
    this.client = new okta.Client({ orgUrl, token, cacheMiddleware: null });
    this.users = this.client.userApi;
  }

  async createUser({ tag = 'authn', password = PASSWORD, activate = true } = {}) {
    const login = uniqueLogin(tag);
    const body = { profile: { firstName: 'Ada', lastName: 'Lovelace', email: login, login } };
    if (password !== null) body.credentials = { password: { value: password } };
    return this.users.createUser({ body, activate });
  }

  async api(method, path, body) {
    const res = await fetch(`${this.orgUrl}${path}`, {
      method,
      headers: {
        Authorization: `SSWS ${this.token}`,
        Accept: 'application/json',
        ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let json;
    try { json = text ? JSON.parse(text) : undefined; } catch { json = undefined; }
    return { status: res.status, headers: res.headers, json, text };
  }

  async apiOk(method, path, body) {
    const r = await this.api(method, path, body);
    assert.equal(r.status, 200, `${method} ${path} -> ${r.status} ${r.text}`);
    return r.json;
  }

  /** The one default policy of an Okta policy type. */
  async policy(type) {
    const list = await this.apiOk('GET', `/api/v1/policies?type=${type}`);
    assert.ok(Array.isArray(list), `GET /api/v1/policies?type=${type} should be an array: ${JSON.stringify(list)}`);
    assert.equal(list.length, 1, `one default ${type} policy expected: ${JSON.stringify(list)}`);
    assert.equal(list[0].type, type);
    return list[0];
  }

  /** Reads the policy, lets `mutate(policy)` change it, PUTs it back and returns the server's answer. */
  async updatePolicy(type, mutate) {
    const policy = await this.policy(type);
    this.dirty = true;
    mutate(policy);
    const updated = await this.apiOk('PUT', `/api/v1/policies/${policy.id}`, policy);
    return updated;
  }

  async signOnRule() {
    const policy = await this.policy('OKTA_SIGN_ON');
    const rules = await this.apiOk('GET', `/api/v1/policies/${policy.id}/rules`);
    assert.ok(Array.isArray(rules) && rules.length >= 1, `sign-on rules: ${JSON.stringify(rules)}`);
    return { policy, rule: rules[0] };
  }

  async updateSignOnRule(mutate) {
    const { policy, rule } = await this.signOnRule();
    this.dirty = true;
    mutate(rule.actions.signon);
    return this.apiOk('PUT', `/api/v1/policies/${policy.id}/rules/${rule.id}`, rule);
  }

  passwordSettings(mutate) {
    return this.updatePolicy('PASSWORD', (p) => mutate(p.settings.password));
  }

  enrollSettings(okta_otp, google_otp) {
    return this.updatePolicy('MFA_ENROLL', (p) => {
      p.settings.factors.okta_otp.enroll.self = okta_otp;
      p.settings.factors.google_otp.enroll.self = google_otp;
    });
  }

  /** Snapshot of the three policies and the sign-on rule, for restore(). */
  async snapshot() {
    const out = {};
    for (const type of ['PASSWORD', 'MFA_ENROLL', 'OKTA_SIGN_ON']) out[type] = await this.policy(type);
    out.rule = (await this.signOnRule()).rule;
    return out;
  }

  async restore(snap) {
    for (const type of ['PASSWORD', 'MFA_ENROLL', 'OKTA_SIGN_ON']) {
      await this.apiOk('PUT', `/api/v1/policies/${snap[type].id}`, snap[type]);
    }
    await this.apiOk('PUT', `/api/v1/policies/${snap.OKTA_SIGN_ON.id}/rules/${snap.rule.id}`, snap.rule);
    this.dirty = false;
  }
}

/** okta-auth-js as a Node app would use it: the org URL as issuer. `headers` go on every request. */
export function authClient(orgUrl, headers) {
  return new OktaAuth({ issuer: orgUrl, ...(headers ? { headers } : {}) });
}
