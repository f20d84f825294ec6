// Group-granted SSO on two Latchkey nodes sharing ONE PostgreSQL database (same LATCHKEY_MASTER_KEY):
// a browser (its sid cookie) signed in to a SAML app that is assigned to a group only gets SSO on
// node B, so B holds the grant; then the grant is taken away through node A's Admin API (the user
// removed from the group, the group unassigned from the app, the group deleted, the granting group
// rule deactivated), and the very next SSO on node B must be refused.
//
// Runs only when LATCHKEY_TEST_DATABASE_URL is set (a PostgreSQL URL whose role may CREATE DATABASE).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import okta from '@okta/okta-sdk-nodejs';
import { startCluster } from './server.mjs';
import { sessionToken } from './session-kit.mjs';
import { assertSsoPosted, assertSsoRefused, createSamlApp, embedSso, responseXml, signOnSettings } from './saml-kit.mjs';

const DB = process.env.LATCHKEY_TEST_DATABASE_URL;
const skip = DB ? false : 'LATCHKEY_TEST_DATABASE_URL is not set: the multi-node tests need PostgreSQL (e.g. postgres://postgres@127.0.0.1:5432/postgres)';

const PASSWORD = 'Xk9#mQv2!Lp7wZ';
const RUN = randomBytes(3).toString('hex');
const ROUNDS = 3;
let seq = 0;
const uniqueLogin = (tag) => `${tag}.${RUN}.${++seq}@example.com`;

if (skip) test('group-granted SSO on two nodes on one PostgreSQL database', { skip }, () => {});

if (!skip) describe('group-granted SSO on two nodes on one PostgreSQL database', () => {
  let cluster;
  let A; // { url, client }
  let B;
  const acs = 'http://127.0.0.1:9/mn-groups/acs';
  const entityId = `https://mn-groups.example.test/saml/${RUN}`;

  before(async () => {
    cluster = await startCluster({
      nodes: 2,
      env: { LATCHKEY_AUTHN_RATE_LIMIT_PER_USERNAME: '0', LATCHKEY_AUTHN_RATE_LIMIT_PER_IP: '0' },
    });
    [A, B] = cluster.nodes.map((server) => ({
      url: server.orgUrl,
      client: new okta.Client({ orgUrl: server.orgUrl, token: cluster.token, cacheMiddleware: null }),
    }));
  });

  after(async () => {
    if (!cluster) return;
    const results = await cluster.stop();
    for (const r of results) {
      assert.ok(r.clean, `a node did not stop cleanly on SIGTERM: ${JSON.stringify({ code: r.code, signal: r.signal, note: r.note })}\n${r.output.slice(-2000)}`);
    }
  });

  async function createUser(tag, profile = {}) {
    const login = uniqueLogin(tag);
    return A.client.userApi.createUser({
      body: { profile: { firstName: 'Ada', lastName: 'Lovelace', email: login, login, ...profile }, credentials: { password: { value: PASSWORD } } },
      activate: true,
    });
  }

  /** A SAML app (made on A) assigned only to a new group (on A) holding `user`. */
  async function groupApp(tag, user) {
    const app = await createSamlApp(A.client, `MN ${tag} ${RUN}`, signOnSettings({ acs, audience: entityId }));
    const group = await A.client.groupApi.createGroup({ group: { profile: { name: `mn-${tag}-${RUN}` } } });
    if (user) await A.client.groupApi.assignUserToGroup({ groupId: group.id, userId: user.id });
    await A.client.applicationApi.assignGroupToApplication({ appId: app.id, groupId: group.id, applicationGroupAssignment: {} });
    return { app, group };
  }

  /** SSO on node B with the cookie; asserts it posted a Response for `user`. */
  async function ssoOnB(app, cookie, user, what) {
    const r = await embedSso(app, { cookie, orgUrl: B.url });
    const b64 = assertSsoPosted(r, acs, what);
    assert.match(responseXml(b64), new RegExp(`>${user.profile.login.replace(/\./g, '\\.')}</(?:\\w+:)?NameID>`), `${what}: the Response names the user`);
    return r;
  }

  /** Signs the user in on A through the embed link (sessionToken); returns the browser's cookie. */
  async function signInOnA(app, user) {
    const r = await embedSso(app, { sessionToken: await sessionToken(A.url, user.profile.login, PASSWORD) });
    assertSsoPosted(r, acs, 'first SSO on A with a sessionToken');
    assert.ok(r.cookie, 'the embed link sets the sid cookie');
    return r.cookie;
  }

  test('removed from the group through node A: the very next SSO on node B is refused', async () => {
    const user = await createUser('mnmember');
    const { app, group } = await groupApp('member', user);
    const cookie = await signInOnA(app, user);
    for (let round = 0; round < ROUNDS; round++) {
      await ssoOnB(app, cookie, user, `round ${round}: SSO on B while a member`);
      await ssoOnB(app, cookie, user, `round ${round}: SSO on B again (B holds the grant)`);
      await A.client.groupApi.unassignUserFromGroup({ groupId: group.id, userId: user.id });
      assertSsoRefused(await embedSso(app, { cookie, orgUrl: B.url }), `round ${round}: SSO on B right after removal on A`);
      assertSsoRefused(await embedSso(app, { cookie }), `round ${round}: SSO on A after removal`);
      await A.client.groupApi.assignUserToGroup({ groupId: group.id, userId: user.id });
    }
    // The other way round: removed through B, refused on A (which held the grant).
    await ssoOnB(app, cookie, user, 'B before removal through B');
    assertSsoPosted(await embedSso(app, { cookie }), acs, 'A before removal through B');
    await B.client.groupApi.unassignUserFromGroup({ groupId: group.id, userId: user.id });
    assertSsoRefused(await embedSso(app, { cookie }), 'SSO on A right after removal on B');
  });

  test('the group unassigned from the app through node A: the very next SSO on node B is refused', async () => {
    const user = await createUser('mnunassign');
    const { app, group } = await groupApp('unassign', user);
    const cookie = await signInOnA(app, user);
    for (let round = 0; round < ROUNDS; round++) {
      await ssoOnB(app, cookie, user, `round ${round}: SSO on B while the app is assigned to the group`);
      await ssoOnB(app, cookie, user, `round ${round}: SSO on B again (B holds the grant)`);
      await A.client.applicationApi.unassignApplicationFromGroup({ appId: app.id, groupId: group.id });
      assertSsoRefused(await embedSso(app, { cookie, orgUrl: B.url }), `round ${round}: SSO on B right after the group was unassigned on A`);
      await A.client.applicationApi.assignGroupToApplication({ appId: app.id, groupId: group.id, applicationGroupAssignment: {} });
    }
  });

  test('the group deleted through node A: the very next SSO on node B is refused', async () => {
    const user = await createUser('mndelete');
    const { app, group } = await groupApp('delete', user);
    const cookie = await signInOnA(app, user);
    await ssoOnB(app, cookie, user, 'SSO on B before the delete');
    await ssoOnB(app, cookie, user, 'SSO on B again (B holds the grant)');
    await A.client.groupApi.deleteGroup({ groupId: group.id });
    assertSsoRefused(await embedSso(app, { cookie, orgUrl: B.url }), 'SSO on B right after the group was deleted on A');
  });

  test('the granting group rule deactivated through node A: the very next SSO on node B is refused', async () => {
    const dept = `MN-${RUN}`;
    const user = await createUser('mnrule', { department: dept });
    const { app, group } = await groupApp('rule', null);
    const rule = await A.client.groupApi.createGroupRule({
      groupRule: {
        type: 'group_rule',
        name: `mn rule ${RUN}`,
        conditions: { expression: { value: `user.department == "${dept}"`, type: 'urn:okta:expression:1.0' }, people: { users: { exclude: [] } } },
        actions: { assignUserToGroups: { groupIds: [group.id] } },
      },
    });
    await A.client.groupApi.activateGroupRule({ ruleId: rule.id });
    const cookie = await signInOnA(app, user);
    for (let round = 0; round < ROUNDS; round++) {
      await ssoOnB(app, cookie, user, `round ${round}: SSO on B while the rule is active`);
      await ssoOnB(app, cookie, user, `round ${round}: SSO on B again (B holds the grant)`);
      await A.client.groupApi.deactivateGroupRule({ ruleId: rule.id });
      assertSsoRefused(await embedSso(app, { cookie, orgUrl: B.url }), `round ${round}: SSO on B right after the rule was deactivated on A`);
      await A.client.groupApi.activateGroupRule({ ruleId: rule.id });
    }
    // A profile change on A that takes the user out of the rule ends it on B too.
    await ssoOnB(app, cookie, user, 'SSO on B before the profile change');
    await A.client.userApi.updateUser({ userId: user.id, user: { profile: { department: `Other-${RUN}` } } });
    assertSsoRefused(await embedSso(app, { cookie, orgUrl: B.url }), 'SSO on B right after a profile change on A took the user out of the rule');
  });
});
