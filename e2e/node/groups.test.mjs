// Groups API (Okta's Groups, group rules, apps assigned to groups), driven through Okta's own Node
// SDK (@okta/okta-sdk-nodejs 8.1: client.groupApi, client.applicationApi, client.userApi) over a
// real socket; and SSO granted through a group: a SAML app assigned to a group only, with GROUP
// attribute statements, signed in through the embed link and checked by both SP stacks (pysaml2 and
// node-saml, see e2e/saml/).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import okta from '@okta/okta-sdk-nodejs';
import { startServer } from './server.mjs';
import { expectOktaError, sessionToken } from './session-kit.mjs';
import {
  EMAIL_FORMAT, appMetadata, assertBothOk, assertSsoPosted, assertSsoRefused, createSamlApp, embedSso, saveMetadata, signOnSettings,
} from './saml-kit.mjs';
import { samlToolsSkipReason, verifyWithBoth } from '../saml/sp-tools.mjs';

const samlSkip = await samlToolsSkipReason();
if (samlSkip) console.log(`# SAML group SSO tests skipped: ${samlSkip}`);

const PASSWORD = 'Xk9#mQv2!Lp7wZ';
const RULE_EXPR = 'urn:okta:expression:1.0';
const UNSPECIFIED = 'urn:oasis:names:tc:SAML:2.0:attrname-format:unspecified';
const RUN = randomBytes(3).toString('hex');
let seq = 0;
const uniqueLogin = (tag) => `${tag}.${RUN}.${++seq}@example.com`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let server;
let client;
let everyone;
// Ids of objects whose system-log events are checked at the end.
const audit = { created: null, updated: null, deleted: null, member: null, memberGroup: null, app: null, appGroup: null, rule: null };

before(async () => {
  server = await startServer({ env: { LATCHKEY_AUTHN_RATE_LIMIT_PER_USERNAME: '0', LATCHKEY_AUTHN_RATE_LIMIT_PER_IP: '0' } });
  client = new okta.Client({ orgUrl: server.orgUrl, token: server.token, cacheMiddleware: null });
});

after(async () => {
  if (!server) return;
  const r = await server.stop();
  assert.ok(r.clean, `server did not stop cleanly on SIGTERM: ${JSON.stringify({ code: r.code, signal: r.signal, note: r.note })}\n${r.output.slice(-2000)}`);
});

async function createUser(tag, profile = {}, { groupIds } = {}) {
  const login = uniqueLogin(tag);
  const body = {
    profile: { firstName: 'Ada', lastName: 'Lovelace', email: login, login, ...profile },
    credentials: { password: { value: PASSWORD } },
  };
  if (groupIds) body.groupIds = groupIds;
  return client.userApi.createUser({ body, activate: true });
}

const createGroup = (name, description) =>
  client.groupApi.createGroup({ group: { profile: description === undefined ? { name } : { name, description } } });

async function collect(collection) {
  const out = [];
  for await (const item of collection) out.push(item);
  return out;
}

const ids = (items) => items.map((x) => x.id).sort();
const groupUserIds = async (groupId) => ids(await collect(await client.groupApi.listGroupUsers({ groupId })));
const userGroupIds = async (userId) => ids(await collect(await client.userApi.listUserGroups({ userId })));

function assertDate(value, field) {
  assert.ok(value instanceof Date, `${field} should deserialize to a Date, got ${value}`);
  assert.ok(!Number.isNaN(value.getTime()), `${field} should be a valid date-time, got ${value}`);
}

/** Checks the JSON of an OKTA_GROUP / BUILT_IN group as the SDK deserialized it. */
function assertGroupShape(g, { name, description, type = 'OKTA_GROUP' } = {}) {
  assert.equal(g.constructor.name, 'Group');
  assert.match(g.id, /^00g[0-9A-Za-z]{17}$/, `group id: ${g.id}`);
  assertDate(g.created, 'created');
  assertDate(g.lastUpdated, 'lastUpdated');
  assertDate(g.lastMembershipUpdated, 'lastMembershipUpdated');
  assert.deepEqual(g.objectClass, ['okta:user_group']);
  assert.equal(g.type, type);
  if (name !== undefined) assert.equal(g.profile.name, name);
  if (description !== undefined) assert.equal(g.profile.description, description);
  assert.ok(Array.isArray(g._links.logo) && g._links.logo.length > 0, `_links.logo is a non-empty array: ${JSON.stringify(g._links)}`);
  for (const l of g._links.logo) assert.match(l.href, /^http/);
  assert.equal(g._links.users.href, `${server.orgUrl}/api/v1/groups/${g.id}/users`);
  assert.equal(g._links.apps.href, `${server.orgUrl}/api/v1/groups/${g.id}/apps`);
}

// Iterates a collection, recording which HTTP request (page) each item arrived with.
async function collectPages(collection) {
  const urls = [];
  // Record the URL at once: the SDK reuses one request object for every page of a collection.
  const onRequest = (req) => urls.push(String(req.url));
  client.requestExecutor.on('request', onRequest);
  const pages = [];
  try {
    for await (const item of collection) (pages[urls.length - 1] ||= []).push(item);
  } finally {
    client.requestExecutor.off('request', onRequest);
  }
  return { items: pages.flat(), pages: pages.filter(Boolean), urls };
}

/** The group rule body Okta documents (type group_rule, an Okta expression, one target group). */
const ruleBody = (name, expression, groupIds, exclude = []) => ({
  type: 'group_rule',
  name,
  conditions: { expression: { value: expression, type: RULE_EXPR }, people: { users: { exclude } } },
  actions: { assignUserToGroups: { groupIds } },
});

describe('groups: create, read, replace, delete', () => {
  test('createGroup gives an OKTA_GROUP in Okta\'s shape; getGroup reads it back', async () => {
    const g = await createGroup(`Engineering ${RUN}`, 'The engineers');
    assertGroupShape(g, { name: `Engineering ${RUN}`, description: 'The engineers' });
    assert.equal(g.created.getTime(), g.lastUpdated.getTime(), 'a new group: created == lastUpdated');
    audit.created = g.id;
    const again = await client.groupApi.getGroup({ groupId: g.id });
    assertGroupShape(again, { name: `Engineering ${RUN}`, description: 'The engineers' });
    assert.equal(again.created.getTime(), g.created.getTime());
    assert.equal(again.lastUpdated.getTime(), g.lastUpdated.getTime());
  });

  test('group names are unique case-insensitively (create and replace): 400 E0000001', async () => {
    const name = `Unique ${RUN}`;
    await createGroup(name);
    for (const clash of [name, name.toUpperCase(), name.toLowerCase()]) {
      const err = await expectOktaError(createGroup(clash), 400, 'E0000001', { what: `create ${clash}` });
      assert.deepEqual(err.errorCauses.map((c) => c.errorSummary), ['name: An object with this field already exists in the current organization']);
    }
    const other = await createGroup(`Other ${RUN}`);
    const err = await expectOktaError(client.groupApi.replaceGroup({ groupId: other.id, group: { profile: { name: name.toUpperCase() } } }), 400, 'E0000001', { what: 'replace to a taken name' });
    assert.deepEqual(err.errorCauses.map((c) => c.errorSummary), ['name: An object with this field already exists in the current organization']);
    // A group may keep its own name with another case.
    const renamed = await client.groupApi.replaceGroup({ groupId: other.id, group: { profile: { name: `OTHER ${RUN}` } } });
    assert.equal(renamed.profile.name, `OTHER ${RUN}`);
    // The built-in group's name is taken too.
    await expectOktaError(createGroup('everyone'), 400, 'E0000001', { what: 'create "everyone"' });
  });

  test('replaceGroup (PUT) replaces the whole profile and moves lastUpdated', async () => {
    const g = await createGroup(`Replace ${RUN}`, 'before');
    await sleep(20);
    const put = await client.groupApi.replaceGroup({ groupId: g.id, group: { profile: { name: `Replaced ${RUN}` } } });
    assertGroupShape(put, { name: `Replaced ${RUN}` });
    assert.ok(put.profile.description == null, `PUT without description drops it, got ${JSON.stringify(put.profile)}`);
    assert.ok(put.lastUpdated.getTime() > g.lastUpdated.getTime(), 'lastUpdated moves');
    assert.equal(put.created.getTime(), g.created.getTime(), 'created stays');
    const got = await client.groupApi.getGroup({ groupId: g.id });
    assert.equal(got.profile.name, `Replaced ${RUN}`);
    assert.ok(got.profile.description == null);
    audit.updated = g.id;
    // The old name is free again.
    assertGroupShape(await createGroup(`Replace ${RUN}`), { name: `Replace ${RUN}` });
  });

  test('deleteGroup: 204, then 404 E0000007; the memberships go with it', async () => {
    const g = await createGroup(`Doomed ${RUN}`);
    const u = await createUser('doomed');
    await client.groupApi.assignUserToGroup({ groupId: g.id, userId: u.id });
    assert.ok((await userGroupIds(u.id)).includes(g.id));
    await client.groupApi.deleteGroup({ groupId: g.id });
    audit.deleted = g.id;
    await expectOktaError(client.groupApi.getGroup({ groupId: g.id }), 404, 'E0000007', { what: 'getGroup after delete' });
    await expectOktaError(client.groupApi.deleteGroup({ groupId: g.id }), 404, 'E0000007', { what: 'deleteGroup twice' });
    await expectOktaError(client.groupApi.replaceGroup({ groupId: g.id, group: { profile: { name: 'x' } } }), 404, 'E0000007', { what: 'replaceGroup after delete' });
    assert.ok(!(await userGroupIds(u.id)).includes(g.id), 'listUserGroups no longer shows a deleted group');
    const all = await collect(await client.groupApi.listGroups());
    assert.ok(!all.some((x) => x.id === g.id), 'listGroups no longer shows a deleted group');
  });

  test('unknown ids: 404 E0000007', async () => {
    const u = await createUser('unknown');
    const g = await createGroup(`Known ${RUN}`);
    await expectOktaError(client.groupApi.getGroup({ groupId: '00gnosuchgroup000000' }), 404, 'E0000007');
    await expectOktaError(client.groupApi.assignUserToGroup({ groupId: '00gnosuchgroup000000', userId: u.id }), 404, 'E0000007', { what: 'unknown group' });
    await expectOktaError(client.groupApi.assignUserToGroup({ groupId: g.id, userId: '00unosuchuser0000000' }), 404, 'E0000007', { what: 'unknown user' });
    await expectOktaError(client.groupApi.listGroupUsers({ groupId: '00gnosuchgroup000000' }).then(collect), 404, 'E0000007', { what: 'listGroupUsers' });
    await expectOktaError(client.userApi.listUserGroups({ userId: '00unosuchuser0000000' }).then(collect), 404, 'E0000007', { what: 'listUserGroups' });
  });
});

describe('groups: the built-in Everyone', () => {
  before(async () => {
    const builtIn = await collect(await client.groupApi.listGroups({ filter: 'type eq "BUILT_IN"' }));
    assert.equal(builtIn.length, 1, `exactly one BUILT_IN group: ${JSON.stringify(builtIn.map((g) => g.profile))}`);
    everyone = builtIn[0];
  });

  test('Everyone is BUILT_IN and holds every user', async () => {
    assertGroupShape(everyone, { name: 'Everyone', type: 'BUILT_IN' });
    const u = await createUser('everyone');
    assert.ok((await groupUserIds(everyone.id)).includes(u.id), 'a new user is in Everyone');
    assert.ok((await userGroupIds(u.id)).includes(everyone.id), 'listUserGroups shows Everyone');
    const users = await collect(await client.userApi.listUsers());
    assert.deepEqual(await groupUserIds(everyone.id), ids(users), 'Everyone lists exactly the org\'s users');
  });

  test('Everyone cannot be replaced or deleted (403 E0000006) nor have members added (E0000060) or removed (403 E0000006)', async () => {
    const u = await createUser('everyone-err');
    await expectOktaError(client.groupApi.replaceGroup({ groupId: everyone.id, group: { profile: { name: `Not everyone ${RUN}` } } }), 403, 'E0000006', { what: 'PUT Everyone' });
    await expectOktaError(client.groupApi.deleteGroup({ groupId: everyone.id }), 403, 'E0000006', { what: 'DELETE Everyone' });
    await expectOktaError(client.groupApi.assignUserToGroup({ groupId: everyone.id, userId: u.id }), 400, 'E0000060', { what: 'add to Everyone' });
    await expectOktaError(client.groupApi.unassignUserFromGroup({ groupId: everyone.id, userId: u.id }), 403, 'E0000006', { what: 'remove from Everyone' });
    const still = await client.groupApi.getGroup({ groupId: everyone.id });
    assertGroupShape(still, { name: 'Everyone', type: 'BUILT_IN' });
    assert.ok((await groupUserIds(everyone.id)).includes(u.id), 'the user is still in Everyone');
  });
});

describe('groups: listing with q, filter, search, expand=stats and paging', () => {
  const prefix = `list-${RUN}-`;
  const mine = [];
  let t0;

  before(async () => {
    for (let i = 0; i < 7; i++) {
      mine.push(await createGroup(`${prefix}${i}`, `listed ${i}`));
      await sleep(5); // distinct lastUpdated milliseconds for the comparisons below
    }
    // Others that must not match the prefix.
    await createGroup(`x${prefix}other`);
    t0 = mine[3].lastUpdated;
  });

  test('listGroups limit=2 follows rel="next" across pages and sees each group exactly once', async () => {
    const { items, pages, urls } = await collectPages(await client.groupApi.listGroups({ limit: 2 }));
    const seen = items.map((g) => g.id);
    assert.equal(new Set(seen).size, seen.length, `duplicate groups across pages: ${seen}`);
    for (const g of [...mine, everyone]) assert.equal(seen.filter((id) => id === g.id).length, 1, `${g.profile.name} listed once`);
    assert.ok(urls.length >= 5, `>= 9 groups at limit=2 take >= 5 requests, got ${urls.length}: ${urls}`);
    for (const page of pages) assert.ok(page.length <= 2, `a page held ${page.length} groups with limit=2`);
    for (const url of urls) {
      const u = new URL(url);
      assert.equal(u.origin, server.orgUrl);
      assert.equal(u.pathname, '/api/v1/groups');
      assert.equal(u.searchParams.get('limit'), '2', `next link keeps limit=2: ${url}`);
    }
    for (const url of urls.slice(1)) assert.ok(new URL(url).searchParams.get('after'), `next link carries after: ${url}`);
    for (const g of items) assertGroupShape(g, { type: g.id === everyone.id ? 'BUILT_IN' : 'OKTA_GROUP' });
  });

  test('q is a name prefix; paged with limit=3 it keeps q', async () => {
    const { items, urls } = await collectPages(await client.groupApi.listGroups({ q: prefix, limit: 3 }));
    assert.deepEqual(ids(items), ids(mine));
    assert.ok(urls.length >= 3, `7 results at limit=3 take >= 3 requests: ${urls}`);
    for (const url of urls.slice(1)) assert.equal(new URL(url).searchParams.get('q'), prefix, `next link keeps q: ${url}`);
    assert.deepEqual(ids(await collect(await client.groupApi.listGroups({ q: `${prefix}5` }))), [mine[5].id]);
    assert.deepEqual(await collect(await client.groupApi.listGroups({ q: `nothing-${RUN}` })), []);
  });

  test('filter: type, id, lastUpdated and lastMembershipUpdated comparisons', async () => {
    const okta = await collect(await client.groupApi.listGroups({ filter: 'type eq "OKTA_GROUP"' }));
    assert.ok(okta.every((g) => g.type === 'OKTA_GROUP'));
    assert.ok(!okta.some((g) => g.id === everyone.id), 'Everyone is not an OKTA_GROUP');
    for (const g of mine) assert.ok(okta.some((x) => x.id === g.id), `${g.profile.name} is an OKTA_GROUP`);

    assert.deepEqual(ids(await collect(await client.groupApi.listGroups({ filter: `id eq "${mine[2].id}"` }))), [mine[2].id]);

    const since = t0.toISOString();
    const newer = await collect(await client.groupApi.listGroups({ filter: `lastUpdated gt "${since}"` }));
    for (const g of newer) assert.ok(g.lastUpdated.getTime() > t0.getTime(), `${g.profile.name} lastUpdated ${g.lastUpdated.toISOString()} > ${since}`);
    for (const g of mine.slice(4)) assert.ok(newer.some((x) => x.id === g.id), `${g.profile.name} was updated after ${since}`);
    for (const g of mine.slice(0, 4)) assert.ok(!newer.some((x) => x.id === g.id), `${g.profile.name} was not updated after ${since}`);

    const combined = await collect(await client.groupApi.listGroups({ filter: `type eq "OKTA_GROUP" and lastUpdated ge "${since}"` }));
    for (const g of mine.slice(3)) assert.ok(combined.some((x) => x.id === g.id), `${g.profile.name} matches "and"`);
    assert.ok(!combined.some((x) => x.id === mine[2].id));

    await sleep(20);
    const t1 = new Date();
    await sleep(20);
    const u = await createUser('lmu');
    await client.groupApi.assignUserToGroup({ groupId: mine[1].id, userId: u.id });
    const moved = await collect(await client.groupApi.listGroups({ filter: `lastMembershipUpdated gt "${t1.toISOString()}" and type eq "OKTA_GROUP"` }));
    assert.ok(moved.some((g) => g.id === mine[1].id), 'the group whose members changed matches lastMembershipUpdated gt');
    for (const g of [mine[0], mine[2], mine[6]]) assert.ok(!moved.some((x) => x.id === g.id), `${g.profile.name} had no membership change`);
  });

  test('search: profile.name sw / eq, type eq, combined with and', async () => {
    assert.deepEqual(ids(await collect(await client.groupApi.listGroups({ search: `profile.name sw "${prefix}"` }))), ids(mine));
    assert.deepEqual(ids(await collect(await client.groupApi.listGroups({ search: `profile.name eq "${prefix}4"` }))), [mine[4].id]);
    assert.deepEqual(ids(await collect(await client.groupApi.listGroups({ search: 'type eq "BUILT_IN"' }))), [everyone.id]);
    assert.deepEqual(ids(await collect(await client.groupApi.listGroups({ search: `profile.name sw "${prefix}" and type eq "OKTA_GROUP"` }))), ids(mine));
    const { items, urls } = await collectPages(await client.groupApi.listGroups({ search: `profile.name sw "${prefix}"`, limit: 2 }));
    assert.deepEqual(ids(items), ids(mine));
    assert.ok(urls.length >= 4, `7 results at limit=2 take >= 4 requests: ${urls}`);
    for (const url of urls.slice(1)) assert.equal(new URL(url).searchParams.get('search'), `profile.name sw "${prefix}"`, `next link keeps search: ${url}`);
  });

  test('expand=stats embeds usersCount and appsCount', async () => {
    const g = await createGroup(`stats-${RUN}`);
    const users = [await createUser('stats'), await createUser('stats')];
    for (const u of users) await client.groupApi.assignUserToGroup({ groupId: g.id, userId: u.id });
    const app = await createSamlApp(client, `Stats ${RUN}`, signOnSettings({ acs: 'http://127.0.0.1:9/stats/acs', audience: `https://stats.example.test/${RUN}` }));
    await client.applicationApi.assignGroupToApplication({ appId: app.id, groupId: g.id, applicationGroupAssignment: {} });
    const [withStats] = await collect(await client.groupApi.listGroups({ q: `stats-${RUN}`, expand: 'stats' }));
    assert.equal(withStats?.id, g.id);
    assert.equal(withStats._embedded?.stats?.usersCount, 2, `_embedded: ${JSON.stringify(withStats._embedded)}`);
    assert.equal(withStats._embedded?.stats?.appsCount, 1, `_embedded: ${JSON.stringify(withStats._embedded)}`);
    const all = await collect(await client.groupApi.listGroups({ filter: 'type eq "BUILT_IN"', expand: 'stats' }));
    const orgUsers = await collect(await client.userApi.listUsers());
    assert.equal(all[0]._embedded?.stats?.usersCount, orgUsers.length, 'Everyone counts every user');
    const plain = await collect(await client.groupApi.listGroups({ q: `stats-${RUN}` }));
    assert.equal(plain[0]._embedded?.stats, undefined, 'no stats without expand');
  });
});

describe('groups: membership', () => {
  test('assign and unassign are idempotent 204s; listGroupUsers pages; listUserGroups; lastMembershipUpdated moves', async () => {
    const g = await createGroup(`Members ${RUN}`);
    const users = [];
    for (let i = 0; i < 5; i++) users.push(await createUser('member'));
    await sleep(20);
    for (const u of users) {
      await client.groupApi.assignUserToGroup({ groupId: g.id, userId: u.id });
      await client.groupApi.assignUserToGroup({ groupId: g.id, userId: u.id }); // again: still 204
    }
    audit.member = users[0].id;
    audit.memberGroup = g.id;
    const afterAdd = await client.groupApi.getGroup({ groupId: g.id });
    assert.ok(afterAdd.lastMembershipUpdated.getTime() > g.lastMembershipUpdated.getTime(), 'lastMembershipUpdated moves when members are added');

    const { items, pages, urls } = await collectPages(await client.groupApi.listGroupUsers({ groupId: g.id, limit: 2 }));
    assert.deepEqual(ids(items), ids(users), 'each member listed once');
    assert.equal(new Set(items.map((u) => u.id)).size, items.length);
    assert.ok(urls.length >= 3, `5 members at limit=2 take >= 3 requests: ${urls}`);
    for (const page of pages) assert.ok(page.length <= 2);
    for (const url of urls.slice(1)) {
      const u = new URL(url);
      assert.equal(u.pathname, `/api/v1/groups/${g.id}/users`);
      assert.equal(u.searchParams.get('limit'), '2');
      assert.ok(u.searchParams.get('after'));
    }
    for (const u of items) {
      assert.equal(u.constructor.name, 'User');
      assert.equal(u.status, 'ACTIVE');
      assertDate(u.created, 'created');
    }

    const groups = await collect(await client.userApi.listUserGroups({ userId: users[0].id }));
    assert.deepEqual(ids(groups), [everyone.id, g.id].sort());
    for (const x of groups) assertGroupShape(x, { type: x.id === everyone.id ? 'BUILT_IN' : 'OKTA_GROUP' });

    await sleep(20);
    await client.groupApi.unassignUserFromGroup({ groupId: g.id, userId: users[0].id });
    await client.groupApi.unassignUserFromGroup({ groupId: g.id, userId: users[0].id }); // again: still 204
    assert.deepEqual(await groupUserIds(g.id), ids(users.slice(1)));
    assert.deepEqual(await userGroupIds(users[0].id), [everyone.id]);
    const afterRemove = await client.groupApi.getGroup({ groupId: g.id });
    assert.ok(afterRemove.lastMembershipUpdated.getTime() > afterAdd.lastMembershipUpdated.getTime(), 'lastMembershipUpdated moves when a member is removed');
    assert.equal(afterRemove.lastUpdated.getTime(), g.lastUpdated.getTime(), 'membership changes do not touch lastUpdated (the profile\'s)');
  });

  test('createUser with groupIds puts the user in those groups; an unknown group is 404 E0000007 and creates no user', async () => {
    const g1 = await createGroup(`Onboard A ${RUN}`);
    const g2 = await createGroup(`Onboard B ${RUN}`);
    const u = await createUser('groupids', {}, { groupIds: [g1.id, g2.id] });
    assert.deepEqual(await userGroupIds(u.id), [everyone.id, g1.id, g2.id].sort());
    assert.ok((await groupUserIds(g1.id)).includes(u.id));

    const login = uniqueLogin('groupids-bad');
    await expectOktaError(client.userApi.createUser({
      body: { profile: { firstName: 'No', lastName: 'Body', email: login, login }, credentials: { password: { value: PASSWORD } }, groupIds: [g1.id, '00gnosuchgroup000000'] },
      activate: true,
    }), 404, 'E0000007', { what: 'createUser with an unknown group' });
    await expectOktaError(client.userApi.getUser({ userId: login }), 404, 'E0000007', { what: 'the user was not created' });
    const found = await collect(await client.userApi.listUsers({ search: `profile.login eq "${login}"` }));
    assert.deepEqual(found, []);
    assert.deepEqual(await groupUserIds(g1.id), [u.id], 'no half-made member either');
  });
});

describe('groups: group rules', () => {
  const K = RUN;

  test('createGroupRule gives an INACTIVE rule in Okta\'s shape; get, list, replace while INACTIVE; an invalid expression is refused', async () => {
    const target = await createGroup(`Rule shape ${K}`);
    const rule = await client.groupApi.createGroupRule({ groupRule: ruleBody(`shape ${K}`, `user.department == "Shape-${K}"`, [target.id]) });
    audit.rule = rule.id;
    assert.equal(rule.constructor.name, 'GroupRule');
    assert.match(rule.id, /^0pr\w+$/, `rule id: ${rule.id}`);
    assert.equal(rule.type, 'group_rule');
    assert.equal(rule.status, 'INACTIVE');
    assert.equal(rule.name, `shape ${K}`);
    assertDate(rule.created, 'created');
    assertDate(rule.lastUpdated, 'lastUpdated');
    assert.equal(rule.conditions.expression.value, `user.department == "Shape-${K}"`);
    assert.equal(rule.conditions.expression.type, RULE_EXPR);
    assert.deepEqual(rule.conditions.people?.users?.exclude, []);
    assert.deepEqual(rule.actions.assignUserToGroups.groupIds, [target.id]);

    const got = await client.groupApi.getGroupRule({ ruleId: rule.id });
    assert.equal(got.id, rule.id);
    assert.equal(got.status, 'INACTIVE');
    assert.equal(got.conditions.expression.value, rule.conditions.expression.value);
    const listed = await collect(await client.groupApi.listGroupRules());
    assert.ok(listed.some((r) => r.id === rule.id && r.name === `shape ${K}`), 'listGroupRules has the rule');
    for (const r of listed) assert.equal(r.constructor.name, 'GroupRule');

    await sleep(20);
    got.name = `shape renamed ${K}`;
    got.conditions.expression.value = `user.department == "Shape2-${K}"`;
    const put = await client.groupApi.replaceGroupRule({ ruleId: rule.id, groupRule: got });
    assert.equal(put.name, `shape renamed ${K}`);
    assert.equal(put.conditions.expression.value, `user.department == "Shape2-${K}"`);
    assert.equal(put.status, 'INACTIVE');
    assert.ok(put.lastUpdated.getTime() > rule.lastUpdated.getTime(), 'lastUpdated moves');

    // PUT only while INACTIVE.
    await client.groupApi.activateGroupRule({ ruleId: rule.id });
    assert.equal((await client.groupApi.getGroupRule({ ruleId: rule.id })).status, 'ACTIVE');
    const active = await client.groupApi.getGroupRule({ ruleId: rule.id });
    active.name = `not while active ${K}`;
    await expectOktaError(client.groupApi.replaceGroupRule({ ruleId: rule.id, groupRule: active }), 400, 'E0000001', { what: 'PUT an ACTIVE rule' });
    assert.equal((await client.groupApi.getGroupRule({ ruleId: rule.id })).name, `shape renamed ${K}`);
    await client.groupApi.deactivateGroupRule({ ruleId: rule.id });
    assert.equal((await client.groupApi.getGroupRule({ ruleId: rule.id })).status, 'INACTIVE');

    for (const expr of [`user.department == `, `user.department = "x"`, `String.stringContains(user.email`, `user.department`]) {
      const err = await expectOktaError(client.groupApi.createGroupRule({ groupRule: ruleBody(`bad ${K}`, expr, [target.id]) }), 400, 'E0000001', { summary: 'Api validation failed: validateRule', what: `invalid expression ${expr}` });
      assert.equal(err.errorCauses.length, 1, JSON.stringify(err.errorCauses));
      assert.match(err.errorCauses[0].errorSummary, /position \d+/, `the cause names the position: ${err.errorCauses[0].errorSummary}`);
    }
    assert.ok(!(await collect(await client.groupApi.listGroupRules())).some((r) => r.name === `bad ${K}`), 'no invalid rule was stored');
    await expectOktaError(client.groupApi.getGroupRule({ ruleId: '0prnosuchrule0000000' }), 404, 'E0000007');
  });

  test('activation fills the group from existing users; new users and profile changes follow; deactivation removes only the rule\'s memberships', async () => {
    const dept = `Eng-${K}`;
    const target = await createGroup(`Engineers ${K}`);
    const e1 = await createUser('eng', { department: dept });
    const e2 = await createUser('eng', { department: dept });
    const sales = await createUser('sales', { department: `Sales-${K}` });
    const manual = await createUser('manual', { department: `Sales-${K}` });
    await client.groupApi.assignUserToGroup({ groupId: target.id, userId: manual.id });

    const rule = await client.groupApi.createGroupRule({ groupRule: ruleBody(`engineers ${K}`, `user.department == "${dept}"`, [target.id]) });
    assert.deepEqual(await groupUserIds(target.id), [manual.id], 'an INACTIVE rule does nothing');
    await client.groupApi.activateGroupRule({ ruleId: rule.id });
    assert.equal((await client.groupApi.getGroupRule({ ruleId: rule.id })).status, 'ACTIVE');
    assert.deepEqual(await groupUserIds(target.id), ids([manual, e1, e2]), 'activation applies the rule to existing users');
    assert.ok((await userGroupIds(e1.id)).includes(target.id));

    // A new user who matches lands in the group at once.
    const e3 = await createUser('eng-new', { department: dept });
    assert.deepEqual(await userGroupIds(e3.id), [everyone.id, target.id].sort(), 'a new matching user is in the rule\'s group');
    const s2 = await createUser('sales-new', { department: `Sales-${K}` });
    assert.deepEqual(await userGroupIds(s2.id), [everyone.id], 'a new non-matching user is not');

    // A profile change into the rule adds, and out of it removes (Okta re-evaluates rules on profile changes).
    await client.userApi.updateUser({ userId: sales.id, user: { profile: { department: dept } } });
    assert.ok((await groupUserIds(target.id)).includes(sales.id), 'a profile change into the rule adds the user');
    await client.userApi.updateUser({ userId: e2.id, user: { profile: { department: `Sales-${K}` } } });
    assert.ok(!(await groupUserIds(target.id)).includes(e2.id), 'a profile change out of the rule removes the rule\'s membership');
    assert.deepEqual(await groupUserIds(target.id), ids([manual, e1, e3, sales]));

    await client.groupApi.deactivateGroupRule({ ruleId: rule.id });
    assert.equal((await client.groupApi.getGroupRule({ ruleId: rule.id })).status, 'INACTIVE');
    assert.deepEqual(await groupUserIds(target.id), [manual.id], 'deactivation removes the rule\'s memberships, keeps the one made by hand');
    const e4 = await createUser('eng-after', { department: dept });
    assert.deepEqual(await userGroupIds(e4.id), [everyone.id], 'an INACTIVE rule does not apply to new users');

    // Activate again: it applies once more.
    await client.groupApi.activateGroupRule({ ruleId: rule.id });
    assert.deepEqual(await groupUserIds(target.id), ids([manual, e1, e3, sales, e4]));
    await client.groupApi.deactivateGroupRule({ ruleId: rule.id });
  });

  test('expressions: ==, &&/AND, ||/OR, !, String.stringContains, isMemberOfAnyGroup; people.users.exclude', async () => {
    const eng = `Eng-x-${K}`;
    const ops = `Ops-x-${K}`;
    const a = await createUser('xa', { department: eng, city: 'Paris' });
    const b = await createUser('xb', { department: eng, city: 'Oslo' });
    const c = await createUser('xc', { department: ops, city: 'Paris' });
    const d = await createUser(`vip${K}`, { department: ops, city: 'Rome' });
    const source = await createGroup(`Source ${K}`);
    for (const u of [a, c]) await client.groupApi.assignUserToGroup({ groupId: source.id, userId: u.id });
    const cases = [
      ['eq', `user.department == "${eng}"`, [a, b]],
      ['and', `user.department == "${eng}" && user.city == "Paris"`, [a]],
      ['AND', `user.department == "${eng}" AND user.city == "Oslo"`, [b]],
      ['or', `user.department == "${eng}" || user.department == "${ops}"`, [a, b, c, d]],
      ['OR', `(user.department == "${ops}" OR user.department == "${eng}") AND (user.city == "Rome" OR user.city == "Oslo")`, [b, d]],
      ['not', `user.department == "${ops}" && !(user.city == "Paris")`, [d]],
      ['contains', `String.stringContains(user.email, "vip${K}")`, [d]],
      ['member', `isMemberOfAnyGroup("${source.id}")`, [a, c]],
      ['exclude', `user.department == "${eng}"`, [b], [a.id]],
    ];
    const made = [];
    for (const [i, [tag, expr, , exclude = []]] of cases.entries()) {
      // Names are unique case-insensitively: 'and' and 'AND' need the index.
      const g = await createGroup(`Expr ${i} ${tag} ${K}`);
      const rule = await client.groupApi.createGroupRule({ groupRule: ruleBody(`expr ${tag} ${K}`, expr, [g.id], exclude) });
      assert.equal(rule.conditions.expression.value, expr);
      assert.deepEqual(rule.conditions.people?.users?.exclude ?? [], exclude);
      await client.groupApi.activateGroupRule({ ruleId: rule.id });
      made.push({ g, rule });
    }
    for (const [i, [tag, expr, expected]] of cases.entries()) {
      assert.deepEqual(await groupUserIds(made[i].g.id), ids(expected), `${tag}: ${expr}`);
    }
    for (const { rule } of made) await client.groupApi.deactivateGroupRule({ ruleId: rule.id });
  });

  test('deleteGroupRule: 202; default keeps the rule\'s memberships, removeUsers=true removes them', async () => {
    const dept = `Del-${K}`;
    const u = await createUser('del', { department: dept });
    const keep = await createGroup(`Keep ${K}`);
    const drop = await createGroup(`Drop ${K}`);
    const r1 = await client.groupApi.createGroupRule({ groupRule: ruleBody(`keep ${K}`, `user.department == "${dept}"`, [keep.id]) });
    const r2 = await client.groupApi.createGroupRule({ groupRule: ruleBody(`drop ${K}`, `user.department == "${dept}"`, [drop.id]) });
    await client.groupApi.activateGroupRule({ ruleId: r1.id });
    await client.groupApi.activateGroupRule({ ruleId: r2.id });
    assert.deepEqual(await userGroupIds(u.id), [everyone.id, keep.id, drop.id].sort());

    await client.groupApi.deleteGroupRule({ ruleId: r1.id });
    await client.groupApi.deleteGroupRule({ ruleId: r2.id, removeUsers: true });
    for (const r of [r1, r2]) await expectOktaError(client.groupApi.getGroupRule({ ruleId: r.id }), 404, 'E0000007', { what: 'getGroupRule after delete' });
    const rules = await collect(await client.groupApi.listGroupRules());
    assert.ok(!rules.some((r) => r.id === r1.id || r.id === r2.id), 'deleted rules are not listed');
    assert.deepEqual(await userGroupIds(u.id), [everyone.id, keep.id].sort(), 'removeUsers=true removed the membership; the default kept it');

    // The kept membership is now an ordinary one, and no rule applies to new users.
    const later = await createUser('del-later', { department: dept });
    assert.deepEqual(await userGroupIds(later.id), [everyone.id]);
    await client.groupApi.unassignUserFromGroup({ groupId: keep.id, userId: u.id });
    assert.deepEqual(await userGroupIds(u.id), [everyone.id]);
  });
});

describe('groups: apps assigned to groups', () => {
  let app;
  let g;
  let member;
  let direct;

  before(async () => {
    app = await createSamlApp(client, `Group app ${RUN}`, signOnSettings({ acs: 'http://127.0.0.1:9/ga/acs', audience: `https://ga.example.test/${RUN}` }));
    g = await createGroup(`App group ${RUN}`);
    member = await createUser('appmember');
    direct = await createUser('appdirect');
    await client.groupApi.assignUserToGroup({ groupId: g.id, userId: member.id });
    await client.applicationApi.assignUserToApplication({ appId: app.id, appUser: { id: direct.id } });
  });

  test('assignGroupToApplication, get, list (with expand=group), listAssignedApplicationsForGroup; the app\'s users include the group\'s with scope GROUP', async () => {
    const a = await client.applicationApi.assignGroupToApplication({ appId: app.id, groupId: g.id, applicationGroupAssignment: { priority: 1, profile: {} } });
    audit.app = app.id;
    audit.appGroup = g.id;
    assert.equal(a.constructor.name, 'ApplicationGroupAssignment');
    assert.equal(a.id, g.id);
    assert.equal(a.priority, 1);
    assert.deepEqual({ ...a.profile }, {});
    assertDate(a.lastUpdated, 'lastUpdated');
    assert.equal(a._links.app.href, `${server.orgUrl}/api/v1/apps/${app.id}`);
    assert.equal(a._links.group.href, `${server.orgUrl}/api/v1/groups/${g.id}`);

    // PUT again replaces it (priority, profile).
    await sleep(20);
    const b = await client.applicationApi.assignGroupToApplication({ appId: app.id, groupId: g.id, applicationGroupAssignment: { priority: 0, profile: { role: 'viewer' } } });
    assert.equal(b.priority, 0);
    assert.deepEqual({ ...b.profile }, { role: 'viewer' });
    assert.ok(b.lastUpdated.getTime() >= a.lastUpdated.getTime());

    const got = await client.applicationApi.getApplicationGroupAssignment({ appId: app.id, groupId: g.id });
    assert.equal(got.id, g.id);
    assert.equal(got.priority, 0);
    assert.deepEqual({ ...got.profile }, { role: 'viewer' });

    const listed = await collect(await client.applicationApi.listApplicationGroupAssignments({ appId: app.id }));
    assert.deepEqual(listed.map((x) => x.id), [g.id]);
    for (const x of listed) assert.equal(x.constructor.name, 'ApplicationGroupAssignment');
    const expanded = await collect(await client.applicationApi.listApplicationGroupAssignments({ appId: app.id, expand: 'group' }));
    assert.equal(expanded[0]._embedded?.group?.id, g.id, `expand=group embeds the group: ${JSON.stringify(expanded[0]._embedded)}`);
    assert.equal(expanded[0]._embedded.group.profile.name, `App group ${RUN}`);

    const apps = await collect(await client.groupApi.listAssignedApplicationsForGroup({ groupId: g.id }));
    assert.deepEqual(apps.map((x) => x.id), [app.id]);
    assert.equal(apps[0].constructor.name, 'SamlApplication');

    const appUsers = await collect(await client.applicationApi.listApplicationUsers({ appId: app.id }));
    const byId = Object.fromEntries(appUsers.map((u) => [u.id, u]));
    assert.equal(byId[member.id]?.scope, 'GROUP', `the group's member is an app user with scope GROUP: ${JSON.stringify(appUsers.map((u) => [u.id, u.scope]))}`);
    assert.equal(byId[direct.id]?.scope, 'USER');
    assert.equal(appUsers.length, 2);

    const links = await collect(await client.userApi.listAppLinks({ userId: member.id }));
    assert.ok(links.some((l) => l.appInstanceId === app.id), 'the member has the app link');
  });

  test('GROUP attribute statements are checked: a filterType, a filterValue and a regular expression that parses are required', async () => {
    const bad = [
      { type: 'GROUP', name: 'g', namespace: UNSPECIFIED, filterType: 'REGEX', filterValue: '([' },
      { type: 'GROUP', name: 'g', namespace: UNSPECIFIED, filterType: 'SOUNDS_LIKE', filterValue: 'x' },
      { type: 'GROUP', name: 'g', namespace: UNSPECIFIED, filterType: 'REGEX' },
    ];
    for (const stmt of bad) {
      const err = await expectOktaError(
        createSamlApp(client, `Bad statement ${RUN}`, signOnSettings({ acs: 'http://127.0.0.1:9/bad/acs', audience: `https://bad.example.test/${RUN}`, extra: { attributeStatements: [stmt] } })),
        400, 'E0000001', { what: `GROUP statement ${JSON.stringify(stmt)}` },
      );
      assert.match(err.errorCauses[0]?.errorSummary ?? '', /attributeStatements\[0\]/, JSON.stringify(err.errorCauses));
    }
  });

  test('a user who has the app only through a group cannot be unassigned from it: 403 E0000046', async () => {
    await expectOktaError(client.applicationApi.unassignUserFromApplication({ appId: app.id, userId: member.id }), 403, 'E0000046', { what: 'unassign a group-derived app user' });
    const appUsers = await collect(await client.applicationApi.listApplicationUsers({ appId: app.id }));
    assert.ok(appUsers.some((u) => u.id === member.id), 'still assigned through the group');
  });

  test('unassignApplicationFromGroup: 204; the assignment, the group\'s app and the derived app user are gone', async () => {
    await client.applicationApi.unassignApplicationFromGroup({ appId: app.id, groupId: g.id });
    await expectOktaError(client.applicationApi.getApplicationGroupAssignment({ appId: app.id, groupId: g.id }), 404, 'E0000007', { what: 'get after unassign' });
    assert.deepEqual(await collect(await client.applicationApi.listApplicationGroupAssignments({ appId: app.id })), []);
    assert.deepEqual(await collect(await client.groupApi.listAssignedApplicationsForGroup({ groupId: g.id })), []);
    const appUsers = await collect(await client.applicationApi.listApplicationUsers({ appId: app.id }));
    assert.deepEqual(appUsers.map((u) => u.id), [direct.id]);
    const links = await collect(await client.userApi.listAppLinks({ userId: member.id }));
    assert.ok(!links.some((l) => l.appInstanceId === app.id), 'no app link any more');
    await expectOktaError(client.applicationApi.assignGroupToApplication({ appId: app.id, groupId: '00gnosuchgroup000000', applicationGroupAssignment: {} }), 404, 'E0000007', { what: 'assign an unknown group' });
  });
});

describe('groups: SAML sign-on through a group, GROUP attribute statements', { skip: samlSkip ?? false }, () => {
  let dir;
  let app;
  let md;
  let mdFile;
  let assigned; // the group the app is assigned to
  let member;
  const acs = 'http://127.0.0.1:9/groups-sp/acs';
  const entityId = `https://groups-sp.example.test/saml/${RUN}`;
  const names = {
    a: `eng-${RUN}-a`,
    b: `eng-${RUN}-b`,
    c: `ENG-${RUN}-c`,
    d: `xeng-${RUN}-d`,
    s: `Sales-${RUN}`,
  };
  const statements = [
    { type: 'EXPRESSION', name: 'email', namespace: UNSPECIFIED, values: ['user.email'] },
    // REGEX: the whole name must match, case counts.
    { type: 'GROUP', name: 'groups', namespace: UNSPECIFIED, filterType: 'REGEX', filterValue: `eng-${RUN}-.*` },
    { type: 'GROUP', name: 'starts', namespace: UNSPECIFIED, filterType: 'STARTS_WITH', filterValue: `ENG-${RUN}` },
    { type: 'GROUP', name: 'equals', namespace: UNSPECIFIED, filterType: 'EQUALS', filterValue: `SALES-${RUN}` },
    { type: 'GROUP', name: 'contains', namespace: UNSPECIFIED, filterType: 'CONTAINS', filterValue: `Eng-${RUN}` },
    { type: 'GROUP', name: 'nothing', namespace: UNSPECIFIED, filterType: 'REGEX', filterValue: `eng-${RUN}` },
    // Every group of the user, the built-in Everyone included.
    { type: 'GROUP', name: 'all', namespace: UNSPECIFIED, filterType: 'REGEX', filterValue: '.*' },
  ];
  const groups = {};

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'latchkey-groups-saml-'));
    for (const [k, name] of Object.entries(names)) groups[k] = await createGroup(name);
    assigned = groups.a;
    app = await createSamlApp(client, `Groups SP ${RUN}`, signOnSettings({ acs, audience: entityId, extra: { attributeStatements: statements } }));
    await client.applicationApi.assignGroupToApplication({ appId: app.id, groupId: assigned.id, applicationGroupAssignment: {} });
    ({ xml: md } = await appMetadata(server.orgUrl, server.token, app.id));
    mdFile = saveMetadata(dir, 'idp-groups', md);
    member = await createUser('samlmember', {}, { groupIds: Object.values(groups).map((g) => g.id) });
  });

  after(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

  const verifyItem = (response, id) => ({ id, idpMetadata: mdFile, spEntityId: entityId, acs, wantResponseSigned: true, response });

  test('the app keeps the GROUP statements (read back with the SDK)', async () => {
    const got = await client.applicationApi.getApplication({ appId: app.id });
    const stmts = got.settings.signOn.attributeStatements.map((s) => ({ type: s.type, name: s.name, namespace: s.namespace, filterType: s.filterType, filterValue: s.filterValue, values: s.values }));
    const strip = (o) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined && v !== null));
    assert.deepEqual(stmts.map(strip), statements.map(strip));
  });

  test('a member signs in with a sessionToken; pysaml2 and node-saml see exactly the filtered group names', async () => {
    const r = await embedSso(app, { sessionToken: await sessionToken(server.orgUrl, member.profile.login, PASSWORD) });
    const response = assertSsoPosted(r, acs, 'member through the group');
    assert.ok(r.cookie, 'the embed link sets the sid cookie');
    const [v] = await verifyWithBoth([verifyItem(response, 'member')], dir);
    const id = assertBothOk(v, 'group-granted Response');
    assert.equal(id.name_id, member.profile.login);
    assert.equal(id.name_id_format, EMAIL_FORMAT);
    const sorted = (xs) => (xs ? [...xs].sort() : xs);
    assert.deepEqual(sorted(id.attributes.email), [member.profile.login]);
    assert.deepEqual(sorted(id.attributes.groups), [names.a, names.b].sort(), `REGEX ${statements[1].filterValue}: ${JSON.stringify(id.attributes)}`);
    assert.deepEqual(sorted(id.attributes.starts), [names.a, names.b, names.c].sort(), `STARTS_WITH ignores case: ${JSON.stringify(id.attributes)}`);
    assert.deepEqual(sorted(id.attributes.equals), [names.s], `EQUALS ignores case: ${JSON.stringify(id.attributes)}`);
    assert.deepEqual(sorted(id.attributes.contains), [names.a, names.b, names.c, names.d].sort(), `CONTAINS ignores case: ${JSON.stringify(id.attributes)}`);
    assert.ok(!('nothing' in id.attributes), `a GROUP statement no group passes is omitted: ${JSON.stringify(id.attributes)}`);
    assert.deepEqual(sorted(id.attributes.all), [...Object.values(names), 'Everyone'].sort(), `REGEX .* gives every group, Everyone too: ${JSON.stringify(id.attributes)}`);
    assert.deepEqual(Object.keys(id.attributes).sort(), ['all', 'contains', 'email', 'equals', 'groups', 'starts']);
  });

  test('a user outside the assigned group (even in its sibling groups) is refused: 403, nothing posted', async () => {
    const outsider = await createUser('samloutsider', {}, { groupIds: [groups.b.id, groups.c.id] });
    const r = await embedSso(app, { sessionToken: await sessionToken(server.orgUrl, outsider.profile.login, PASSWORD) });
    assertSsoRefused(r, 'a non-member');
  });

  test('removed from the group, the same browser\'s next SSO is refused; added back, it works again', async () => {
    const u = await createUser('samlremoved', {}, { groupIds: [assigned.id, groups.b.id] });
    const first = await embedSso(app, { sessionToken: await sessionToken(server.orgUrl, u.profile.login, PASSWORD) });
    assertSsoPosted(first, acs, 'before removal (sessionToken)');
    const cookie = first.cookie;
    assert.ok(cookie);
    const second = await embedSso(app, { cookie });
    const response = assertSsoPosted(second, acs, 'before removal (cookie)');

    await client.groupApi.unassignUserFromGroup({ groupId: assigned.id, userId: u.id });
    assertSsoRefused(await embedSso(app, { cookie }), 'the very next SSO after removal from the group');
    assertSsoRefused(await embedSso(app, { cookie }), 'and the one after');

    await client.groupApi.assignUserToGroup({ groupId: assigned.id, userId: u.id });
    const back = await embedSso(app, { cookie });
    const again = assertSsoPosted(back, acs, 'after being added back');
    const [v1, v2] = await verifyWithBoth([verifyItem(response, 'before'), verifyItem(again, 'after')], dir);
    assert.deepEqual([...assertBothOk(v1, 'before removal').attributes.groups].sort(), [names.a, names.b].sort());
    assert.deepEqual([...assertBothOk(v2, 'added back').attributes.groups].sort(), [names.a, names.b].sort());

    // Unassigning the group from the app ends it too (then restore it for the other tests).
    await client.applicationApi.unassignApplicationFromGroup({ appId: app.id, groupId: assigned.id });
    assertSsoRefused(await embedSso(app, { cookie }), 'the very next SSO after the app was unassigned from the group');
    await client.applicationApi.assignGroupToApplication({ appId: app.id, groupId: assigned.id, applicationGroupAssignment: {} });
    assertSsoPosted(await embedSso(app, { cookie }), acs, 'after the app was assigned to the group again');
  });

  test('a user in two groups assigned to the app keeps it until removed from both; a direct assignment outlives the group', async () => {
    const u = await createUser('samltwo', {}, { groupIds: [assigned.id, groups.b.id] });
    await client.applicationApi.assignGroupToApplication({ appId: app.id, groupId: groups.b.id, applicationGroupAssignment: {} });
    try {
      const first = await embedSso(app, { sessionToken: await sessionToken(server.orgUrl, u.profile.login, PASSWORD) });
      assertSsoPosted(first, acs, 'in two assigned groups');
      const { cookie } = first;
      await client.groupApi.unassignUserFromGroup({ groupId: assigned.id, userId: u.id });
      assertSsoPosted(await embedSso(app, { cookie }), acs, 'still in the other assigned group');
      await client.applicationApi.assignUserToApplication({ appId: app.id, appUser: { id: u.id } });
      await client.groupApi.unassignUserFromGroup({ groupId: groups.b.id, userId: u.id });
      assertSsoPosted(await embedSso(app, { cookie }), acs, 'out of both groups but assigned directly');
      await client.applicationApi.unassignUserFromApplication({ appId: app.id, userId: u.id });
      assertSsoRefused(await embedSso(app, { cookie }), 'out of both groups and unassigned');
    } finally {
      await client.applicationApi.unassignApplicationFromGroup({ appId: app.id, groupId: groups.b.id });
    }
  });

  test('an app assigned to Everyone lets every user in', async () => {
    const open = await createSamlApp(client, `Everyone SP ${RUN}`, signOnSettings({ acs, audience: `${entityId}/everyone` }));
    const u = await createUser('samleveryone');
    const before1 = await embedSso(open, { sessionToken: await sessionToken(server.orgUrl, u.profile.login, PASSWORD) });
    assertSsoRefused(before1, 'before the app is assigned to Everyone');
    await client.applicationApi.assignGroupToApplication({ appId: open.id, groupId: everyone.id, applicationGroupAssignment: {} });
    assertSsoPosted(await embedSso(open, { cookie: before1.cookie }), acs, 'assigned to Everyone');
    const appUsers = await collect(await client.applicationApi.listApplicationUsers({ appId: open.id }));
    assert.ok(appUsers.some((x) => x.id === u.id && x.scope === 'GROUP'), 'every user is an app user through Everyone');
  });

  test('a group rule grants the app: activation lets a matching user in, deactivation shuts them out', async () => {
    const dept = `SamlRule-${RUN}`;
    const u = await createUser('samlrule', { department: dept });
    const first = await embedSso(app, { sessionToken: await sessionToken(server.orgUrl, u.profile.login, PASSWORD) });
    assertSsoRefused(first, 'before the rule');
    const cookie = first.cookie;
    assert.ok(cookie, 'the sessionToken made a session even though SSO was refused');
    const rule = await client.groupApi.createGroupRule({ groupRule: ruleBody(`saml rule ${RUN}`, `user.department == "${dept}"`, [assigned.id]) });
    await client.groupApi.activateGroupRule({ ruleId: rule.id });
    const ok = await embedSso(app, { cookie });
    const response = assertSsoPosted(ok, acs, 'after the rule was activated');
    const [v] = await verifyWithBoth([verifyItem(response, 'rule')], dir);
    assert.deepEqual(assertBothOk(v, 'rule-granted Response').attributes.groups, [names.a]);
    await client.groupApi.deactivateGroupRule({ ruleId: rule.id });
    assertSsoRefused(await embedSso(app, { cookie }), 'the very next SSO after the rule was deactivated');
    await client.groupApi.deleteGroupRule({ ruleId: rule.id });
  });
});

describe('groups: system log', () => {
  test('group events are logged with the group as a target', async () => {
    assert.ok(audit.created && audit.updated && audit.deleted && audit.member && audit.app && audit.rule, `earlier tests ran: ${JSON.stringify(audit)}`);
    const events = async (eventType) => collect(await client.systemLogApi.listLogEvents({ filter: `eventType eq "${eventType}"`, since: new Date(Date.now() - 3600_000).toISOString() }));
    const targets = (e) => (e.target ?? []).map((t) => t.id);
    const expectEvent = async (eventType, mustTarget) => {
      const list = await events(eventType);
      const hit = list.find((e) => mustTarget.every((id) => targets(e).includes(id)));
      assert.ok(hit, `${eventType} naming ${mustTarget}: ${JSON.stringify(list.map((e) => ({ targets: e.target, outcome: e.outcome })))}`);
      assert.equal(hit.eventType, eventType);
      assert.equal(hit.outcome?.result, 'SUCCESS');
      return hit;
    };
    const created = await expectEvent('group.lifecycle.create', [audit.created]);
    assert.equal(created.target.find((t) => t.id === audit.created).type, 'UserGroup');
    await expectEvent('group.profile.update', [audit.updated]);
    await expectEvent('group.lifecycle.delete', [audit.deleted]);
    await expectEvent('group.user_membership.add', [audit.member, audit.memberGroup]);
    await expectEvent('group.user_membership.remove', [audit.member, audit.memberGroup]);
    await expectEvent('group.application_assignment.add', [audit.app, audit.appGroup]);
    await expectEvent('group.application_assignment.remove', [audit.app, audit.appGroup]);
    for (const t of ['group.rule.create', 'group.rule.activate', 'group.rule.deactivate']) await expectEvent(t, [audit.rule]);
    const deleted = await events('group.rule.delete');
    assert.ok(deleted.length >= 2, `group.rule.delete for the deleted rules: ${deleted.length}`);
  });
});
