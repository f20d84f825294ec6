// Users API, driven through Okta's own Node SDK (@okta/okta-sdk-nodejs 8.1) over a real socket.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import okta from '@okta/okta-sdk-nodejs';
import { startServer } from './server.mjs';

// Meets the default policy (8+ chars, lower, upper, digit) and shares no part with any login/name below.
const PASSWORD = 'Xk9#mQv2!Lp7wZ';
const PASSWORD_2 = 'Rb4$tNy8^Hc3jQ';
const PASSWORD_3 = 'Gd6&fWs1*Jx5uV';

const RUN = randomBytes(3).toString('hex');
let seq = 0;
const uniqueLogin = (tag) => `${tag}.${RUN}.${++seq}@example.com`;
const profileFor = (login, extra = {}) => ({ firstName: 'Ada', lastName: 'Lovelace', email: login, login, ...extra });

let server;
let client;

before(async () => {
  server = await startServer();
  client = new okta.Client({ orgUrl: server.orgUrl, token: server.token, cacheMiddleware: null });
});

after(async () => {
  if (!server) return;
  const r = await server.stop();
  assert.ok(r.clean, `server did not stop cleanly on SIGTERM: ${JSON.stringify({ code: r.code, signal: r.signal, note: r.note })}\n${r.output.slice(-2000)}`);
});

async function createUser({ tag = 'user', activate = true, password = PASSWORD, profile = {} } = {}) {
  const login = uniqueLogin(tag);
  const body = { profile: profileFor(login, profile) };
  if (password !== null) body.credentials = { password: { value: password } };
  return client.userApi.createUser({ body, activate });
}

async function collect(collection) {
  const out = [];
  for await (const item of collection) out.push(item);
  return out;
}

// Awaits `promise`, expects it to reject with an OktaApiError of the given HTTP status and errorCode,
// and checks the Okta error envelope. Returns the error.
async function expectOktaError(promise, status, errorCode) {
  let err;
  try {
    const value = await promise;
    assert.fail(`expected HTTP ${status} ${errorCode}, but the call succeeded with ${JSON.stringify(value)}`);
  } catch (e) {
    err = e;
  }
  if (err instanceof assert.AssertionError) throw err;
  assert.equal(err.name, 'OktaApiError', `expected an OktaApiError (JSON error body), got ${err.name}: ${err.message}`);
  assert.equal(err.status, status, `HTTP status; error was: ${err.message}`);
  assert.equal(err.errorCode, errorCode, `errorCode; error was: ${err.message}`);
  assert.equal(typeof err.errorSummary, 'string');
  assert.ok(err.errorSummary.length > 0, 'errorSummary should not be empty');
  assert.equal(typeof err.errorId, 'string', 'errorId should be a string');
  assert.ok(err.errorId.length > 0, 'errorId should not be empty');
  assert.equal(typeof err.errorLink, 'string', 'errorLink should be a string');
  assert.ok(Array.isArray(err.errorCauses), `errorCauses should be an array, got ${JSON.stringify(err.errorCauses)}`);
  return err;
}

function assertDate(value, field) {
  assert.ok(value instanceof Date, `${field} should deserialize to a Date, got ${value}`);
  assert.ok(!Number.isNaN(value.getTime()), `${field} should be a valid date-time, got ${value}`);
}

describe('users: create and read', () => {
  test('createUser activate=true gives an ACTIVE user and never echoes the password', async () => {
    const user = await createUser({ tag: 'active' });
    assert.match(user.id, /^\S+$/);
    assert.equal(user.status, 'ACTIVE');
    assert.match(user.profile.login, /^active\./);
    assert.equal(user.profile.email, user.profile.login);
    assert.equal(user.profile.firstName, 'Ada');
    assert.equal(user.profile.lastName, 'Lovelace');
    assertDate(user.created, 'created');
    assertDate(user.lastUpdated, 'lastUpdated');
    assertDate(user.activated, 'activated');
    assert.equal(user.credentials?.password?.value, undefined, 'password value must not be returned');
  });

  test('createUser activate=false gives a STAGED user', async () => {
    const user = await createUser({ tag: 'staged', activate: false });
    assert.equal(user.status, 'STAGED');
    assert.ok(user.activated == null, `a STAGED user has no activated date, got ${user.activated}`);
    const fetched = await client.userApi.getUser({ userId: user.id });
    assert.equal(fetched.status, 'STAGED');
  });

  test('getUser by id and by login return the same user', async () => {
    const created = await createUser({ tag: 'lookup' });
    const byId = await client.userApi.getUser({ userId: created.id });
    const byLogin = await client.userApi.getUser({ userId: created.profile.login });
    for (const u of [byId, byLogin]) {
      assert.equal(u.id, created.id);
      assert.equal(u.profile.login, created.profile.login);
      assert.equal(u.status, 'ACTIVE');
      assertDate(u.created, 'created');
    }
    assert.equal(byId.created.getTime(), created.created.getTime());
  });

  test('logins are case-insensitive: lookup and duplicate check', async () => {
    const created = await createUser({ tag: 'case' });
    const upper = created.profile.login.toUpperCase();
    assert.equal((await client.userApi.getUser({ userId: upper })).id, created.id);
    await expectOktaError(client.userApi.createUser({
      body: { profile: profileFor(upper), credentials: { password: { value: PASSWORD } } },
      activate: false,
    }), 400, 'E0000001');
  });

  test('getUser of an unknown id is 404 E0000007', async () => {
    await expectOktaError(client.userApi.getUser({ userId: '00unosuchuser0000000' }), 404, 'E0000007');
  });
});

describe('users: listing, pagination, search and filter', () => {
  const pageUsers = [];
  const prefix = `page.${RUN}.`;
  let requests = [];
  // Record the URL now: the SDK reuses one request object for every page of a collection.
  const onRequest = (req) => requests.push(String(req.url));

  before(async () => {
    // 4 ACTIVE + 3 STAGED, all sharing a login prefix.
    for (let i = 0; i < 7; i++) {
      const login = `${prefix}${i}@example.com`;
      pageUsers.push(await client.userApi.createUser({
        body: { profile: profileFor(login), credentials: { password: { value: PASSWORD } } },
        activate: i < 4,
      }));
    }
    client.requestExecutor.on('request', onRequest);
  });
  after(() => client.requestExecutor.off('request', onRequest));

  // Iterates a collection, recording which HTTP request (page) each item arrived with.
  async function collectPages(collection) {
    requests = [];
    const pages = [];
    for await (const item of collection) {
      const page = requests.length;
      (pages[page - 1] ||= []).push(item);
    }
    return { items: pages.flat(), pages: pages.filter(Boolean), urls: requests.slice() };
  }

  test('listUsers limit=2 follows rel="next" across pages and sees each user exactly once', async () => {
    const { items, pages, urls } = await collectPages(await client.userApi.listUsers({ limit: 2 }));
    const ids = items.map((u) => u.id);
    assert.equal(new Set(ids).size, ids.length, `duplicate users across pages: ${ids}`);
    for (const u of pageUsers) {
      assert.equal(ids.filter((id) => id === u.id).length, 1, `user ${u.profile.login} should be listed exactly once`);
    }
    assert.ok(urls.length >= 4, `expected at least 4 page requests for >=7 users at limit=2, got ${urls.length}: ${urls}`);
    for (const page of pages) assert.ok(page.length <= 2, `a page held ${page.length} users with limit=2`);
    for (const url of urls) {
      const u = new URL(url);
      assert.equal(u.origin, server.orgUrl, `next link should point at the public URL, got ${url}`);
      assert.equal(u.pathname, '/api/v1/users');
      assert.equal(u.searchParams.get('limit'), '2', `next link should keep limit=2: ${url}`);
    }
    for (const url of urls.slice(1)) {
      assert.ok(new URL(url).searchParams.get('after'), `next link should carry an after cursor: ${url}`);
    }
    for (const u of items) assertDate(u.created, 'created');
  });

  test('search profile.login sw, paged with limit=3, finds exactly the prefixed users', async () => {
    const { items, urls } = await collectPages(await client.userApi.listUsers({ search: `profile.login sw "${prefix}"`, limit: 3 }));
    assert.deepEqual(items.map((u) => u.id).sort(), pageUsers.map((u) => u.id).sort());
    assert.ok(urls.length >= 3, `7 results at limit=3 need at least 3 requests, got ${urls.length}: ${urls}`);
    for (const url of urls.slice(1)) {
      assert.equal(new URL(url).searchParams.get('search'), `profile.login sw "${prefix}"`, `next link should keep search: ${url}`);
    }
  });

  test('search status eq "STAGED" returns only STAGED users', async () => {
    const items = await collect(await client.userApi.listUsers({ search: 'status eq "STAGED"' }));
    assert.ok(items.length >= 3);
    for (const u of items) assert.equal(u.status, 'STAGED', `${u.profile.login} is ${u.status}`);
    const ids = new Set(items.map((u) => u.id));
    for (const u of pageUsers.slice(4)) assert.ok(ids.has(u.id), `${u.profile.login} (STAGED) missing`);
    for (const u of pageUsers.slice(0, 4)) assert.ok(!ids.has(u.id), `${u.profile.login} (ACTIVE) should not match`);
  });

  test('search combining sw and status with "and"', async () => {
    const items = await collect(await client.userApi.listUsers({ search: `profile.login sw "${prefix}" and status eq "ACTIVE"` }));
    assert.deepEqual(items.map((u) => u.id).sort(), pageUsers.slice(0, 4).map((u) => u.id).sort());
  });

  test('filter status eq "ACTIVE" returns only ACTIVE users', async () => {
    const items = await collect(await client.userApi.listUsers({ filter: 'status eq "ACTIVE"' }));
    for (const u of items) assert.equal(u.status, 'ACTIVE', `${u.profile.login} is ${u.status}`);
    const ids = new Set(items.map((u) => u.id));
    for (const u of pageUsers.slice(0, 4)) assert.ok(ids.has(u.id), `${u.profile.login} (ACTIVE) missing`);
    for (const u of pageUsers.slice(4)) assert.ok(!ids.has(u.id), `${u.profile.login} (STAGED) should not match`);
  });

  test('filter profile.login eq finds exactly one user', async () => {
    const target = pageUsers[5];
    const items = await collect(await client.userApi.listUsers({ filter: `profile.login eq "${target.profile.login}"` }));
    assert.deepEqual(items.map((u) => u.id), [target.id]);
  });

  test('filter that matches nothing gives an empty list', async () => {
    const items = await collect(await client.userApi.listUsers({ filter: `profile.login eq "nobody.${RUN}@example.com"` }));
    assert.deepEqual(items, []);
  });
});

describe('users: profile updates', () => {
  test('updateUser (POST) merges profile fields; replaceUser (PUT) replaces the whole profile', async () => {
    const user = await createUser({ tag: 'update' });
    const login = user.profile.login;

    const updated = await client.userApi.updateUser({ userId: user.id, user: { profile: { nickName: 'Countess', title: 'Analyst' } } });
    assert.equal(updated.id, user.id);
    assert.equal(updated.profile.nickName, 'Countess');
    assert.equal(updated.profile.title, 'Analyst');
    assert.equal(updated.profile.firstName, 'Ada', 'partial update must keep fields not sent');
    assert.equal(updated.profile.login, login);
    assert.ok(updated.lastUpdated.getTime() >= user.lastUpdated.getTime());

    const replaced = await client.userApi.replaceUser({
      userId: user.id,
      user: { profile: { login, email: login, firstName: 'Grace', lastName: 'Hopper' } },
    });
    assert.equal(replaced.profile.firstName, 'Grace');
    assert.equal(replaced.profile.lastName, 'Hopper');
    assert.equal(replaced.profile.nickName, undefined, 'PUT must drop profile fields that were not sent');
    assert.equal(replaced.profile.title, undefined, 'PUT must drop profile fields that were not sent');

    const fetched = await client.userApi.getUser({ userId: user.id });
    assert.equal(fetched.profile.firstName, 'Grace');
    assert.equal(fetched.profile.nickName, undefined);
    assert.equal(fetched.status, 'ACTIVE');

    // A PUT without credentials leaves the password alone.
    await client.userApi.changePassword({
      userId: user.id,
      changePasswordRequest: { oldPassword: { value: PASSWORD }, newPassword: { value: PASSWORD_2 } },
    });
  });
});

describe('users: lifecycle', () => {
  test('activateUser sendEmail=false on a STAGED user returns an activation token and activates it', async () => {
    const user = await createUser({ tag: 'activate', activate: false });
    assert.equal(user.status, 'STAGED');
    const token = await client.userApi.activateUser({ userId: user.id, sendEmail: false });
    assert.equal(typeof token.activationToken, 'string');
    assert.ok(token.activationToken.length > 0, 'activationToken should not be empty');
    const activated = await client.userApi.getUser({ userId: user.id });
    assert.equal(activated.status, 'ACTIVE', 'a user with a password becomes ACTIVE on activation');
    assertDate(activated.activated, 'activated');
  });

  test('activating a STAGED user without a password makes it PROVISIONED', async () => {
    const user = await createUser({ tag: 'nopw', activate: false, password: null });
    assert.equal(user.status, 'STAGED');
    const token = await client.userApi.activateUser({ userId: user.id, sendEmail: false });
    assert.ok(token.activationToken, 'activationToken should be returned with sendEmail=false');
    assert.equal((await client.userApi.getUser({ userId: user.id })).status, 'PROVISIONED');
  });

  test('suspend / unsuspend', async () => {
    const user = await createUser({ tag: 'suspend' });
    await client.userApi.suspendUser({ userId: user.id });
    assert.equal((await client.userApi.getUser({ userId: user.id })).status, 'SUSPENDED');
    await client.userApi.unsuspendUser({ userId: user.id });
    assert.equal((await client.userApi.getUser({ userId: user.id })).status, 'ACTIVE');
  });

  test('suspending a STAGED user is 403 E0000038', async () => {
    const user = await createUser({ tag: 'nosuspend', activate: false });
    await expectOktaError(client.userApi.suspendUser({ userId: user.id }), 403, 'E0000038');
    assert.equal((await client.userApi.getUser({ userId: user.id })).status, 'STAGED');
  });

  test('unlocking a user that is not LOCKED_OUT is 403 E0000038', async () => {
    const user = await createUser({ tag: 'unlock' });
    await expectOktaError(client.userApi.unlockUser({ userId: user.id }), 403, 'E0000038');
    assert.equal((await client.userApi.getUser({ userId: user.id })).status, 'ACTIVE');
  });

  test('deactivateUser makes an ACTIVE user DEPROVISIONED', async () => {
    const user = await createUser({ tag: 'deactivate' });
    await client.userApi.deactivateUser({ userId: user.id });
    assert.equal((await client.userApi.getUser({ userId: user.id })).status, 'DEPROVISIONED');
  });

  test('expirePassword returns the user with status PASSWORD_EXPIRED', async () => {
    const user = await createUser({ tag: 'expire' });
    const expired = await client.userApi.expirePassword({ userId: user.id });
    assert.equal(expired.id, user.id);
    assert.equal(expired.status, 'PASSWORD_EXPIRED');
    assert.equal((await client.userApi.getUser({ userId: user.id })).status, 'PASSWORD_EXPIRED');
  });

  test('reset_password (generateResetPasswordToken sendEmail=false) returns a reset URL and puts the user in RECOVERY', async () => {
    const user = await createUser({ tag: 'reset' });
    const reset = await client.userApi.generateResetPasswordToken({ userId: user.id, sendEmail: false });
    assert.equal(typeof reset.resetPasswordUrl, 'string');
    assert.ok(reset.resetPasswordUrl.length > 0, 'resetPasswordUrl should not be empty');
    assert.equal((await client.userApi.getUser({ userId: user.id })).status, 'RECOVERY');
  });

  test('deleteUser deactivates first, deletes second, then the user is 404 E0000007', async () => {
    const user = await createUser({ tag: 'delete' });
    await client.userApi.deleteUser({ userId: user.id });
    assert.equal((await client.userApi.getUser({ userId: user.id })).status, 'DEPROVISIONED');
    await client.userApi.deleteUser({ userId: user.id });
    await expectOktaError(client.userApi.getUser({ userId: user.id }), 404, 'E0000007');
    await expectOktaError(client.userApi.getUser({ userId: user.profile.login }), 404, 'E0000007');
    await expectOktaError(client.userApi.deleteUser({ userId: user.id }), 404, 'E0000007');
  });
});

describe('users: credentials and errors', () => {
  test('changePassword with the right old password works; a wrong one is 403 E0000014', async () => {
    const user = await createUser({ tag: 'chpw' });
    const creds = await client.userApi.changePassword({
      userId: user.id,
      changePasswordRequest: { oldPassword: { value: PASSWORD }, newPassword: { value: PASSWORD_2 } },
    });
    assert.equal(creds.password?.value, undefined, 'password value must not be returned');

    // PASSWORD is no longer the current password.
    await expectOktaError(client.userApi.changePassword({
      userId: user.id,
      changePasswordRequest: { oldPassword: { value: PASSWORD }, newPassword: { value: PASSWORD_3 } },
    }), 403, 'E0000014');

    // The failed attempt did not change anything: PASSWORD_2 is still current.
    await client.userApi.changePassword({
      userId: user.id,
      changePasswordRequest: { oldPassword: { value: PASSWORD_2 }, newPassword: { value: PASSWORD_3 } },
    });
  });

  test('a password that fails the default policy is 400 E0000001', async () => {
    for (const weak of ['Ab1', 'alllowercase1', 'ALLUPPERCASE1', 'NoDigitsHere']) {
      const login = uniqueLogin('weak');
      const err = await expectOktaError(client.userApi.createUser({
        body: { profile: profileFor(login), credentials: { password: { value: weak } } },
        activate: true,
      }), 400, 'E0000001');
      assert.ok(err.errorCauses.length >= 1, `errorCauses should explain the rejected password ${weak}`);
      await expectOktaError(client.userApi.getUser({ userId: login }), 404, 'E0000007');
    }
  });

  test('a password containing part of the username is 400 E0000001', async () => {
    const login = uniqueLogin('quokka');
    await expectOktaError(client.userApi.createUser({
      body: { profile: profileFor(login), credentials: { password: { value: 'Aquokka99Z' } } },
      activate: true,
    }), 400, 'E0000001');
  });

  test('a duplicate login is 400 E0000001 with the Okta cause', async () => {
    const first = await createUser({ tag: 'dup' });
    const err = await expectOktaError(client.userApi.createUser({
      body: { profile: profileFor(first.profile.login), credentials: { password: { value: PASSWORD } } },
      activate: true,
    }), 400, 'E0000001');
    const summaries = err.errorCauses.map((c) => c.errorSummary);
    assert.ok(
      summaries.includes('login: An object with this field already exists in the current organization'),
      `errorCauses: ${JSON.stringify(err.errorCauses)}`,
    );
  });

  test('a bad API token is 401 E0000011', async () => {
    const bad = new okta.Client({ orgUrl: server.orgUrl, token: 'not-a-real-token', cacheMiddleware: null });
    await expectOktaError(collect(await bad.userApi.listUsers({ limit: 1 })), 401, 'E0000011');
    await expectOktaError(bad.userApi.getUser({ userId: 'anyone@example.com' }), 401, 'E0000011');
  });

  test('raw HTTP: "SSWS<token>" without a space is accepted too', async () => {
    const res = await fetch(`${server.orgUrl}/api/v1/users?limit=1`, {
      headers: { Authorization: `SSWS${server.token}`, Accept: 'application/json' },
    });
    assert.equal(res.status, 200, await res.clone().text());
    assert.ok(Array.isArray(await res.json()));
  });
});
