// OpenID Connect on two Latchkey nodes sharing ONE PostgreSQL database, behind a round-robin
// proxy (the nodes' public URL is the proxy's), so consecutive requests land on different nodes:
// an authorization code redeemed on one node and again on the other succeeds once, and the replay
// revokes what the first exchange issued (RFC 6749 §4.1.2); presented on both at the same moment,
// it never succeeds twice and leaves no live token. Both nodes publish the same keys.
//
// Runs only when LATCHKEY_TEST_DATABASE_URL is set (a PostgreSQL URL whose role may CREATE DATABASE).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { startCluster } from './server.mjs';
import { startRoundRobinProxy } from './proxy-kit.mjs';
import { sessionToken } from './session-kit.mjs';

const DB = process.env.LATCHKEY_TEST_DATABASE_URL;
const skip = DB ? false : 'LATCHKEY_TEST_DATABASE_URL is not set: the multi-node tests need PostgreSQL (e.g. postgres://postgres@127.0.0.1:5432/postgres)';
const PASSWORD = 'Xk9#mQv2!Lp7wZ';
const RUN = randomBytes(3).toString('hex');
const REDIRECT = 'https://rp.example.com/callback';
const ROUNDS = 10;

if (skip) test('OpenID Connect on two nodes on one PostgreSQL database', { skip }, () => {});

if (!skip) describe('OpenID Connect on two nodes on one PostgreSQL database', () => {
  let proxy;
  let cluster;
  let app;
  let login;

  const admin = async (method, path, body) => {
    const res = await fetch(`${proxy.url}${path}`, {
      method,
      headers: { Authorization: `SSWS ${cluster.token}`, 'Content-Type': 'application/json', Accept: 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = await res.json().catch(() => null);
    assert.ok(res.ok, `${method} ${path} -> ${res.status} ${JSON.stringify(json)}`);
    return json;
  };

  before(async () => {
    proxy = await startRoundRobinProxy();
    cluster = await startCluster({
      nodes: 2,
      env: { LATCHKEY_AUTHN_RATE_LIMIT_PER_USERNAME: '0', LATCHKEY_AUTHN_RATE_LIMIT_PER_IP: '0' },
      publicUrl: proxy.url,
    });
    proxy.setUpstreams(cluster.nodes.map((n) => Number(new URL(n.nodeUrl).port)));
    app = await admin('POST', '/api/v1/apps', {
      name: 'oidc_client',
      label: `Two-node RP ${RUN}`,
      signOnMode: 'OPENID_CONNECT',
      settings: { oauthClient: { redirect_uris: [REDIRECT], response_types: ['code'], grant_types: ['authorization_code'], application_type: 'web' } },
    });
    login = `mn-oidc.${RUN}@example.com`;
    const user = await admin('POST', '/api/v1/users?activate=true', {
      profile: { login, email: login, firstName: 'Ada', lastName: 'Lovelace' },
      credentials: { password: { value: PASSWORD } },
    });
    await admin('POST', `/api/v1/apps/${app.id}/users`, { id: user.id });
  });

  after(async () => {
    if (cluster) {
      for (const r of await cluster.stop()) assert.ok(r.clean, `a node did not stop cleanly: ${r.output.slice(-2000)}`);
    }
    if (proxy) await proxy.close();
  });

  const basic = () => `Basic ${Buffer.from(`${app.id}:${app.credentials.oauthClient.client_secret}`).toString('base64')}`;

  async function freshCode() {
    const token = await sessionToken(proxy.url, login, PASSWORD);
    const params = new URLSearchParams({ client_id: app.id, redirect_uri: REDIRECT, response_type: 'code', scope: 'openid', state: 's', sessionToken: token });
    const res = await fetch(`${proxy.url}/oauth2/v1/authorize?${params}`, { redirect: 'manual' });
    assert.equal(res.status, 302);
    return new URL(res.headers.get('location')).searchParams.get('code');
  }

  const redeem = (code) => fetch(`${proxy.url}/oauth2/v1/token`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded', Authorization: basic() },
    body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: REDIRECT }),
  }).then(async (r) => ({ status: r.status, json: await r.json() }));

  const active = (token) => fetch(`${proxy.url}/oauth2/v1/introspect`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded', Authorization: basic() },
    body: new URLSearchParams({ token }),
  }).then((r) => r.json()).then((j) => j.active);

  test('a code redeemed on one node and again on the other succeeds once; the replay revokes the first tokens', async () => {
    for (let round = 0; round < ROUNDS; round++) {
      const code = await freshCode();
      const first = await redeem(code); // the proxy sends the next request to the other node
      const second = await redeem(code);
      assert.equal(first.status, 200, `round ${round}: ${JSON.stringify(first.json)}`);
      assert.deepEqual([second.status, second.json.error], [400, 'invalid_grant'], `round ${round}`);
      assert.equal(await active(first.json.access_token), false, `round ${round}: the replay revoked the first tokens`);
    }
  });

  test('a code presented on both nodes at the same moment: never two successes, and no live token', async () => {
    let successes = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const code = await freshCode();
      const answers = await Promise.all([redeem(code), redeem(code)]);
      const won = answers.filter((a) => a.status === 200);
      assert.ok(won.length <= 1, `round ${round}: ${JSON.stringify(answers.map((a) => a.status))}`);
      for (const lost of answers.filter((a) => a.status !== 200)) assert.deepEqual([lost.status, lost.json.error], [400, 'invalid_grant']);
      // RFC 6749 §4.1.2: a replayed code's tokens are revoked; a replay that wins the race
      // against the write leaves none issued at all.
      for (const w of won) assert.equal(await active(w.json.access_token), false, `round ${round}`);
      successes += won.length;
    }
    const [a, b] = proxy.counts();
    assert.ok(a > ROUNDS && b > ROUNDS, `both nodes served: ${a}, ${b} (${successes} races won by a node)`);
  });

  test('both nodes publish the same keys', async () => {
    // Through the proxy, one request per node (round-robin).
    const keys = [];
    for (let i = 0; i < 2; i++) keys.push(await fetch(`${proxy.url}/oauth2/v1/keys`).then((r) => r.json()));
    assert.deepEqual(keys[0], keys[1]);
    assert.ok(keys[0].keys.length >= 1);
  });
});
