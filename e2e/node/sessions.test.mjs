// Sessions API, driven through Okta's own Node SDK (@okta/okta-sdk-nodejs 8.1) over a real socket:
// sessionApi (create / get / refresh / revoke, and the cookie-only /me operations) and
// userApi.revokeUserSessions. Session tokens come from POST /api/v1/authn, browser cookies from
// /login/sessionCookieRedirect (see session-kit.mjs).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import okta from '@okta/okta-sdk-nodejs';
import { startServer } from './server.mjs';
import {
  ME_NOT_FOUND, assertMeNotFound, cookieFromToken, expectOktaError, meCall, sessionToken, trustRedirectOrigin,
} from './session-kit.mjs';

// Meets the default password policy and shares no part with any login or name used here.
const PASSWORD = 'Xk9#mQv2!Lp7wZ';
const RUN = randomBytes(3).toString('hex');
let seq = 0;
const uniqueLogin = (tag) => `${tag}.${RUN}.${++seq}@example.com`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let server;
let client;
let sessions;

before(async () => {
  server = await startServer({
    env: { LATCHKEY_AUTHN_RATE_LIMIT_PER_USERNAME: '0', LATCHKEY_AUTHN_RATE_LIMIT_PER_IP: '0' },
  });
  client = new okta.Client({ orgUrl: server.orgUrl, token: server.token, cacheMiddleware: null });
  sessions = client.sessionApi;
  await trustRedirectOrigin(server.orgUrl, server.token);
});

after(async () => {
  if (!server) return;
  const r = await server.stop();
  assert.ok(r.clean, `server did not stop cleanly on SIGTERM: ${JSON.stringify({ code: r.code, signal: r.signal, note: r.note })}\n${r.output.slice(-2000)}`);
});

async function createUser(tag = 'sess') {
  const login = uniqueLogin(tag);
  return client.userApi.createUser({
    body: {
      profile: { firstName: 'Ada', lastName: 'Lovelace', email: login, login },
      credentials: { password: { value: PASSWORD } },
    },
    activate: true,
  });
}

const tokenFor = (user) => sessionToken(server.orgUrl, user.profile.login, PASSWORD);

/** A session made by the admin API from a fresh session token. */
async function apiSession(user) {
  return sessions.createSession({ createSessionRequest: { sessionToken: await tokenFor(user) } });
}

/** A browser session: the sid cookie ("sid=...") from sessionCookieRedirect. */
async function browserCookie(user, cookie) {
  return (await cookieFromToken(server.orgUrl, await tokenFor(user), { cookie })).cookie;
}

function assertDate(value, field) {
  assert.ok(value instanceof Date, `${field} should deserialize to a Date, got ${value}`);
  assert.ok(!Number.isNaN(value.getTime()), `${field} should be a valid date-time, got ${value}`);
}

/** The Okta Session object as okta-sdk-nodejs deserializes it. `me`: links go through /me. */
function assertSession(s, user, { me = false } = {}) {
  assert.equal(typeof s.id, 'string');
  assert.ok(s.id.length > 0, 'session id');
  assert.equal(s.userId, user.id);
  assert.equal(s.login, user.profile.login);
  assert.equal(s.status, 'ACTIVE');
  assertDate(s.createdAt, 'createdAt');
  assertDate(s.expiresAt, 'expiresAt');
  assert.ok(s.expiresAt.getTime() > Date.now(), `expiresAt in the future: ${s.expiresAt.toISOString()}`);
  assert.ok(s.expiresAt.getTime() > s.createdAt.getTime(), 'expiresAt after createdAt');
  assertDate(s.lastPasswordVerification, 'lastPasswordVerification');
  assert.ok(s.lastPasswordVerification.getTime() <= s.createdAt.getTime(), 'password verified before the session began');
  assert.ok(s.lastFactorVerification == null, `no factor was verified: ${s.lastFactorVerification}`);
  assert.deepEqual(s.amr, ['pwd']);
  assert.equal(s.idp?.type, 'OKTA');
  assert.equal(typeof s.idp?.id, 'string');
  assert.ok(s.idp.id.length > 0, 'idp.id');
  const base = me ? `${server.orgUrl}/api/v1/sessions/me` : `${server.orgUrl}/api/v1/sessions/${s.id}`;
  assert.equal(s._links?.self?.href, base, `_links.self: ${JSON.stringify(s._links)}`);
  // The SDK's LinksSelf model keeps only `self`; refresh and user are checked on raw JSON (assertRawLinks).
}

/** `_links` of a Session as the server sends it (raw JSON). */
function assertRawLinks(json, user, { me = false } = {}) {
  const base = me ? `${server.orgUrl}/api/v1/sessions/me` : `${server.orgUrl}/api/v1/sessions/${json.id}`;
  const links = json._links || {};
  assert.equal(links.self?.href, base, `_links.self: ${JSON.stringify(links)}`);
  assert.equal(links.refresh?.href, `${base}/lifecycle/refresh`, `_links.refresh: ${JSON.stringify(links)}`);
  assert.deepEqual(links.refresh?.hints?.allow, ['POST'], `_links.refresh.hints: ${JSON.stringify(links)}`);
  const userHref = me ? `${server.orgUrl}/api/v1/users/me` : `${server.orgUrl}/api/v1/users/${user.id}`;
  assert.equal(links.user?.href, userHref, `_links.user: ${JSON.stringify(links)}`);
  // Okta's recorded answers: `users/me` may be read and updated; another user's link is read-only.
  assert.deepEqual(links.user?.hints?.allow, me ? ['GET', 'POST'] : ['GET'], `_links.user.hints: ${JSON.stringify(links)}`);
}

describe('sessions: admin API by session id', () => {
  test('createSession -> getSession -> refreshSession -> revokeSession -> getSession 404', async () => {
    const user = await createUser();
    const created = await apiSession(user);
    assertSession(created, user);

    const read = await sessions.getSession({ sessionId: created.id });
    assertSession(read, user);
    assert.equal(read.id, created.id);
    assert.equal(read.createdAt.getTime(), created.createdAt.getTime());
    assert.equal(read.expiresAt.getTime(), created.expiresAt.getTime(), 'reading does not move expiresAt');

    // Refresh slides expiresAt from "now": let the clock move first.
    await sleep(50);
    const refreshed = await sessions.refreshSession({ sessionId: created.id });
    assertSession(refreshed, user);
    assert.equal(refreshed.id, created.id);
    assert.equal(refreshed.createdAt.getTime(), created.createdAt.getTime(), 'refresh keeps createdAt');
    assert.ok(refreshed.expiresAt.getTime() > created.expiresAt.getTime(),
      `refresh moves expiresAt later: ${created.expiresAt.toISOString()} -> ${refreshed.expiresAt.toISOString()}`);
    const reread = await sessions.getSession({ sessionId: created.id });
    assert.equal(reread.expiresAt.getTime(), refreshed.expiresAt.getTime(), 'the refreshed expiresAt is stored');

    assert.equal(await sessions.revokeSession({ sessionId: created.id }), undefined, 'revokeSession resolves with no body (204)');
    await expectOktaError(sessions.getSession({ sessionId: created.id }), 404, 'E0000007', { what: 'getSession after revoke' });
    await expectOktaError(sessions.refreshSession({ sessionId: created.id }), 404, 'E0000007', { what: 'refreshSession after revoke' });
    await expectOktaError(sessions.revokeSession({ sessionId: created.id }), 404, 'E0000007', { what: 'revokeSession twice' });
  });

  test('a session token is redeemed once: createSession with it again is 401 E0000004', async () => {
    const user = await createUser();
    const token = await tokenFor(user);
    const first = await sessions.createSession({ createSessionRequest: { sessionToken: token } });
    assertSession(first, user);
    await expectOktaError(sessions.createSession({ createSessionRequest: { sessionToken: token } }), 401, 'E0000004',
      { what: 'second createSession with the same token' });
    // The first session is untouched by the failed replay.
    assert.equal((await sessions.getSession({ sessionId: first.id })).id, first.id);
  });

  test('createSession with an unknown token is 401 E0000004', async () => {
    await expectOktaError(sessions.createSession({ createSessionRequest: { sessionToken: `bogus-${RUN}-0000000000000000000` } }),
      401, 'E0000004');
  });

  test('each createSession is a new session with its own id', async () => {
    const user = await createUser();
    const a = await apiSession(user);
    const b = await apiSession(user);
    assert.notEqual(a.id, b.id);
  });

  test('raw HTTP: POST /api/v1/sessions answers Okta\'s Session JSON with self, refresh and user links', async () => {
    const user = await createUser();
    const res = await fetch(`${server.orgUrl}/api/v1/sessions`, {
      method: 'POST',
      headers: { Authorization: `SSWS ${server.token}`, Accept: 'application/json', 'Content-Type': 'application/json' },
      body: JSON.stringify({ sessionToken: await tokenFor(user) }),
    });
    const text = await res.text();
    assert.equal(res.status, 200, `POST /api/v1/sessions: ${res.status} ${text}`);
    assert.match(res.headers.get('content-type') || '', /^application\/json/, 'content-type');
    const json = JSON.parse(text);
    assert.equal(json.status, 'ACTIVE');
    assert.deepEqual(json.amr, ['pwd']);
    assert.deepEqual(Object.keys(json.idp).sort(), ['id', 'type']);
    for (const f of ['createdAt', 'expiresAt', 'lastPasswordVerification']) {
      assert.match(json[f], /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, `${f} in Okta's UTC form: ${json[f]}`);
    }
    assertRawLinks(json, user);
    // The backend never receives the browser cookie from this API.
    assert.equal(res.headers.getSetCookie().filter((c) => /^\s*sid=/.test(c)).length, 0, 'POST /api/v1/sessions sets no sid cookie');
  });

  test('getSession of an unknown id is 404 E0000007', async () => {
    await expectOktaError(sessions.getSession({ sessionId: '102nosuchsession0000' }), 404, 'E0000007');
  });

  test('refresh with Prefer: return=minimal is 204 with no body, and still slides expiresAt', async () => {
    const user = await createUser();
    const created = await apiSession(user);
    await sleep(50);
    const res = await fetch(`${server.orgUrl}/api/v1/sessions/${created.id}/lifecycle/refresh`, {
      method: 'POST',
      headers: { Authorization: `SSWS ${server.token}`, Accept: 'application/json', Prefer: 'return=minimal' },
    });
    const text = await res.text();
    assert.equal(res.status, 204, `refresh with return=minimal: ${res.status} ${text}`);
    assert.equal(text, '');
    const after = await sessions.getSession({ sessionId: created.id });
    assert.ok(after.expiresAt.getTime() > created.expiresAt.getTime(), 'expiresAt moved');
  });
});

describe('sessions: userApi.revokeUserSessions', () => {
  test('ends every session of that user (API and browser) and no other user\'s', async () => {
    const user = await createUser('revall');
    const other = await createUser('revother');
    const s1 = await apiSession(user);
    const s2 = await apiSession(user);
    const cookie = await browserCookie(user);
    const otherSession = await apiSession(other);
    const otherCookie = await browserCookie(other);
    const mine = await sessions.getCurrentSession({ cookie });
    assert.equal(mine.userId, user.id);

    assert.equal(await client.userApi.revokeUserSessions({ userId: user.id }), undefined, 'revokeUserSessions resolves with no body (204)');

    await expectOktaError(sessions.getSession({ sessionId: s1.id }), 404, 'E0000007', { what: 'first session' });
    await expectOktaError(sessions.getSession({ sessionId: s2.id }), 404, 'E0000007', { what: 'second session' });
    await expectOktaError(sessions.getSession({ sessionId: mine.id }), 404, 'E0000007', { what: 'browser session by id' });
    await expectOktaError(sessions.getCurrentSession({ cookie }), 404, 'E0000007', { summary: ME_NOT_FOUND, what: 'browser session by cookie' });

    assertSession(await sessions.getSession({ sessionId: otherSession.id }), other);
    assert.equal((await sessions.getCurrentSession({ cookie: otherCookie })).userId, other.id);

    // The user can sign in again afterwards, and the new session is not affected.
    assertSession(await apiSession(user), user);
  });

  test('oauthTokens=true is accepted', async () => {
    const user = await createUser('revall');
    const s = await apiSession(user);
    await client.userApi.revokeUserSessions({ userId: user.id, oauthTokens: true });
    await expectOktaError(sessions.getSession({ sessionId: s.id }), 404, 'E0000007');
  });

  test('a user with no sessions: 204 all the same', async () => {
    const user = await createUser('revnone');
    assert.equal(await client.userApi.revokeUserSessions({ userId: user.id }), undefined);
  });

  test('an unknown user is 404 E0000007', async () => {
    await expectOktaError(client.userApi.revokeUserSessions({ userId: '00unosuchuser0000000' }), 404, 'E0000007');
  });
});

describe('sessions: the current session (/api/v1/sessions/me) by browser cookie', () => {
  test('getCurrentSession -> refreshCurrentSession -> closeCurrentSession with the sid cookie', async () => {
    const user = await createUser('me');
    const cookie = await browserCookie(user);

    const me = await sessions.getCurrentSession({ cookie });
    assertSession(me, user, { me: true });
    // The same session, seen by the admin by id.
    const byId = await sessions.getSession({ sessionId: me.id });
    assertSession(byId, user);
    assert.equal(byId.expiresAt.getTime(), me.expiresAt.getTime());

    await sleep(50);
    const refreshed = await sessions.refreshCurrentSession({ cookie });
    assertSession(refreshed, user, { me: true });
    assert.equal(refreshed.id, me.id);
    assert.ok(refreshed.expiresAt.getTime() > me.expiresAt.getTime(),
      `refreshCurrentSession moves expiresAt later: ${me.expiresAt.toISOString()} -> ${refreshed.expiresAt.toISOString()}`);
    assert.equal((await sessions.getSession({ sessionId: me.id })).expiresAt.getTime(), refreshed.expiresAt.getTime());

    assert.equal(await sessions.closeCurrentSession({ cookie }), undefined, 'closeCurrentSession resolves with no body (204)');
    await expectOktaError(sessions.getCurrentSession({ cookie }), 404, 'E0000007', { summary: ME_NOT_FOUND, what: 'getCurrentSession after close' });
    await expectOktaError(sessions.refreshCurrentSession({ cookie }), 404, 'E0000007', { summary: ME_NOT_FOUND, what: 'refreshCurrentSession after close' });
    await expectOktaError(sessions.closeCurrentSession({ cookie }), 404, 'E0000007', { summary: ME_NOT_FOUND, what: 'closeCurrentSession twice' });
    await expectOktaError(sessions.getSession({ sessionId: me.id }), 404, 'E0000007', { what: 'getSession after close' });
  });

  test('without a cookie the /me operations are 404 E0000007 "Not found: Resource not found: me (Session)"', async () => {
    // The SDK still sends the API token: it must not stand in for a browser session.
    for (const [name, call] of [
      ['getCurrentSession', () => sessions.getCurrentSession()],
      ['refreshCurrentSession', () => sessions.refreshCurrentSession()],
      ['closeCurrentSession', () => sessions.closeCurrentSession()],
      ['getCurrentSession with an empty cookie', () => sessions.getCurrentSession({ cookie: '' })],
      ['getCurrentSession with an unknown sid', () => sessions.getCurrentSession({ cookie: `sid=${RUN}nosuchsessioncookie000000000` })],
    ]) {
      await expectOktaError(call(), 404, 'E0000007', { summary: ME_NOT_FOUND, what: name });
    }
  });

  test('the cookie is also found among other cookies, and an admin revoke by id ends it', async () => {
    const user = await createUser('me');
    const cookie = await browserCookie(user);
    const withOthers = `DT=whatever; ${cookie}; theme=dark`;
    const me = await sessions.getCurrentSession({ cookie: withOthers });
    assert.equal(me.userId, user.id);
    await sessions.revokeSession({ sessionId: me.id });
    await expectOktaError(sessions.getCurrentSession({ cookie }), 404, 'E0000007', { summary: ME_NOT_FOUND });
  });

  test('raw HTTP: /me with only the cookie (no API token) works; DELETE clears the cookie', async () => {
    const user = await createUser('me');
    const cookie = await browserCookie(user);
    const r = await meCall(server.orgUrl, 'GET', cookie);
    assert.equal(r.status, 200, `GET /me with only the cookie: ${r.status} ${r.text}`);
    assert.equal(r.json.userId, user.id);
    assertRawLinks(r.json, user, { me: true });
    const refreshed = await meCall(server.orgUrl, 'POST', cookie, '/lifecycle/refresh');
    assert.equal(refreshed.status, 200, `POST /me/lifecycle/refresh: ${refreshed.status} ${refreshed.text}`);
    const del = await meCall(server.orgUrl, 'DELETE', cookie);
    assert.equal(del.status, 204, `DELETE /me: ${del.status} ${del.text}`);
    const cleared = del.headers.getSetCookie().find((c) => /^\s*sid=/.test(c));
    assert.ok(cleared, `DELETE /me clears the sid cookie: ${JSON.stringify(del.headers.getSetCookie())}`);
    assert.match(cleared, /^\s*sid=;|Max-Age=0|Expires=Thu, 01 Jan 1970/i, `cleared cookie: ${cleared}`);
    assertMeNotFound(await meCall(server.orgUrl, 'GET', cookie), 'GET /me after DELETE /me');
  });

  test('session-token rule: a new token in a browser that has a session replaces it', async () => {
    const first = await createUser('rule');
    const second = await createUser('rule');
    const oldCookie = await browserCookie(first);
    const old = await sessions.getCurrentSession({ cookie: oldCookie });
    const newCookie = await browserCookie(second, oldCookie);
    assert.notEqual(newCookie, oldCookie, 'a new sid cookie is set');
    await expectOktaError(sessions.getCurrentSession({ cookie: oldCookie }), 404, 'E0000007', { summary: ME_NOT_FOUND, what: 'the replaced cookie' });
    await expectOktaError(sessions.getSession({ sessionId: old.id }), 404, 'E0000007', { what: 'the replaced session by id' });
    assertSession(await sessions.getCurrentSession({ cookie: newCookie }), second, { me: true });
  });
});
