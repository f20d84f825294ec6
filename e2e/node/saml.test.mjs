// Latchkey's SAML 2.0 IdP end to end, without a browser: apps made and assigned with Okta's Node
// SDK (@okta/okta-sdk-nodejs), sessions from @okta/okta-auth-js, and every Response checked by two
// independent SP stacks (pysaml2 + libxmlsec1 and node-saml + xml-crypto, see e2e/saml/). Covers
// IdP-initiated SSO through the embed link, SP-initiated SSO with AuthnRequests signed by node-saml
// (HTTP-Redirect and HTTP-POST), replayed and unsigned requests, Single Logout across two apps, and
// a signing-key rollover done with the `latchkey signing-key` CLI while the server runs.
//
// Skipped, with the reason, when the SAML SP tools cannot run here (see samlToolsSkipReason).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import okta from '@okta/okta-sdk-nodejs';
import { OktaAuth } from '@okta/okta-auth-js';
import { genSpKeys, samlToolsSkipReason, spLogout, spRequest, verifyWithBoth } from '../saml/sp-tools.mjs';
import {
  EMAIL_FORMAT, adminApi, appMetadata, assertBothOk, assertBothRejected, createSamlApp, get, parseAutoPost, parseMetadata,
  postForm, rawUpdateSignOn, saveMetadata, sessionIndexOf, sidCookie, signOnSettings,
} from './saml-kit.mjs';
import { startServer } from './server.mjs';

const skip = await samlToolsSkipReason();
if (skip) console.log(`# SAML e2e tests skipped: ${skip}`);

const PASSWORD = 'Xk9#mQv2!Lp7wZ';
const RUN = randomBytes(3).toString('hex');
let seq = 0;
const uniqueLogin = (tag) => `${tag}.${RUN}.${++seq}@example.com`;

describe('SAML IdP with Okta SDKs, pysaml2 and node-saml', { skip: skip ?? false }, () => {
  let server;
  let client;
  let dir;
  let user;
  const sp = {}; // name -> { keys, entityId, acs, app, md: parsed metadata, mdFile }

  /** A session token for `login` from okta-auth-js (primary authentication). */
  async function sessionTokenFor(login) {
    const authClient = new OktaAuth({ issuer: `${server.orgUrl}/oauth2/default`, clientId: 'unused', redirectUri: 'http://127.0.0.1/unused' });
    const tx = await authClient.signInWithCredentials({ username: login, password: PASSWORD });
    assert.equal(tx.status, 'SUCCESS');
    assert.equal(typeof tx.sessionToken, 'string');
    return tx.sessionToken;
  }

  async function createUser(tag) {
    const login = uniqueLogin(tag);
    return client.userApi.createUser({
      body: { profile: { firstName: 'Ada', lastName: 'Lovelace', email: login, login }, credentials: { password: { value: PASSWORD } } },
      activate: true,
    });
  }

  /** Registers an SP (own key pair) as a SAML app assigned to `user`, with its metadata saved. */
  async function registerSp(name, { extra = {}, signed = true } = {}) {
    const keys = await genSpKeys(dir, name);
    const entityId = `https://sp-${name}.example.test/saml/${RUN}`;
    const acs = `http://127.0.0.1:9/${name}/acs`;
    const app = await createSamlApp(client, `SP ${name}`, signOnSettings({ acs, audience: entityId, certB64: signed ? keys.cert_b64 : null, extra }), server);
    await client.applicationApi.assignUserToApplication({ appId: app.id, appUser: { id: user.id } });
    const md = await appMetadata(server.orgUrl, server.token, app.id);
    const entry = { keys, entityId, acs, app, md, mdFile: saveMetadata(dir, `idp-${name}`, md.xml) };
    sp[name] = entry;
    return entry;
  }

  /** GET the embed link; returns { res, form, cookie }. */
  async function embed(app, { sessionToken, cookie, relayState } = {}) {
    const u = new URL(app._links.appLinks[0].href);
    if (sessionToken) u.searchParams.set('sessionToken', sessionToken);
    if (relayState) u.searchParams.set('RelayState', relayState);
    const res = await get(u.href, { cookie });
    const html = await res.text();
    return { res, html, form: parseAutoPost(html), cookie: sidCookie(res) ?? cookie };
  }

  const verifyItem = (s, response, requestId) => ({ idpMetadata: s.mdFile, spEntityId: s.entityId, acs: s.acs, wantResponseSigned: true, requestId, response });

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'latchkey-saml-e2e-'));
    server = await startServer({ env: { LATCHKEY_AUTHN_RATE_LIMIT_PER_USERNAME: '0', LATCHKEY_AUTHN_RATE_LIMIT_PER_IP: '0' } });
    client = new okta.Client({ orgUrl: server.orgUrl, token: server.token, cacheMiddleware: null });
    user = await createUser('saml');
  });

  after(async () => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    if (!server) return;
    const r = await server.stop();
    assert.ok(r.clean, `server did not stop cleanly: ${JSON.stringify({ code: r.code, signal: r.signal, note: r.note })}\n${r.output.slice(-2000)}`);
  });

  test('okta-sdk-nodejs creates, assigns, lists app links, deactivates and deletes a SAML app', async () => {
    const s = await registerSp('sdk', { extra: { defaultRelayState: 'https://sp.example.test/home' } });
    const { app } = s;
    assert.equal(app.constructor.name, 'SamlApplication', 'the SDK maps signOnMode SAML_2_0 to SamlApplication');
    assert.equal(app.signOnMode, 'SAML_2_0');
    assert.equal(app.status, 'ACTIVE');
    assert.match(app.name, /^latchkey_sp_sdk_\d+$/);
    const so = app.settings.signOn;
    assert.equal(so.ssoAcsUrl, s.acs);
    assert.equal(so.audience, s.entityId);
    assert.equal(so.subjectNameIdTemplate, '${user.userName}');
    assert.equal(so.subjectNameIdFormat, EMAIL_FORMAT);
    // okta-sdk-nodejs 8.1 has no samlSignedRequestEnabled in its model: check it on the raw JSON.
    const raw = await adminApi(server.orgUrl, server.token, 'GET', `/api/v1/apps/${app.id}`);
    assert.equal(raw.body.settings.signOn.samlSignedRequestEnabled, true);
    assert.deepEqual(so.spCertificate?.x5c, [s.keys.cert_b64]);
    assert.equal(so.defaultRelayState, 'https://sp.example.test/home');
    assert.deepEqual(so.attributeStatements.map((a) => [a.type, a.name, a.values]), [['EXPRESSION', 'email', ['user.email']]]);
    const embedHref = app._links.appLinks[0].href;
    assert.match(embedHref, new RegExp(`^${server.orgUrl}/home/${app.name}/${app.id}/\\w+$`));
    assert.equal(app._links.metadata.href, `${server.orgUrl}/api/v1/apps/${app.id}/sso/saml/metadata`);

    // Read back through the SDK: same shape.
    const again = await client.applicationApi.getApplication({ appId: app.id });
    assert.equal(again.constructor.name, 'SamlApplication');
    assert.deepEqual(again.settings.signOn.spCertificate?.x5c, [s.keys.cert_b64]);

    // Public metadata (no credentials) equals the admin one; its SSO URL names the external key.
    const pub = await get(`${server.orgUrl}/app/${s.md.externalKey}/sso/saml/metadata`);
    assert.equal(pub.status, 200);
    const pubMd = parseMetadata(await pub.text());
    assert.equal(pubMd.entityId, s.md.entityId);
    assert.deepEqual(pubMd.certs, s.md.certs);
    assert.equal(s.md.certs.length, 1, 'one signing key before any rollover');
    assert.equal(s.md.ssoUrl, `${server.orgUrl}/app/${app.name}/${s.md.externalKey}/sso/saml`);

    // App links of the assigned user.
    const links = [];
    for await (const l of await client.userApi.listAppLinks({ userId: user.id })) links.push(l);
    const link = links.find((l) => l.appInstanceId === app.id);
    assert.ok(link, `listAppLinks has the app: ${JSON.stringify(links)}`);
    assert.equal(link.linkUrl, embedHref);
    assert.equal(link.appName, app.name);
    assert.equal(link.label, 'SP sdk');

    // Lifecycle: an active app cannot be deleted; deactivate, then delete.
    await assert.rejects(client.applicationApi.deleteApplication({ appId: app.id }), (e) => e.status === 403 || e.status === 400, 'deleting an ACTIVE app is refused');
    await client.applicationApi.deactivateApplication({ appId: app.id });
    assert.equal((await client.applicationApi.getApplication({ appId: app.id })).status, 'INACTIVE');
    await client.applicationApi.deleteApplication({ appId: app.id });
    await assert.rejects(client.applicationApi.getApplication({ appId: app.id }), (e) => e.status === 404);
    const remaining = [];
    for await (const l of await client.userApi.listAppLinks({ userId: user.id })) remaining.push(l);
    assert.ok(!remaining.some((l) => l.appInstanceId === app.id), 'a deleted app has no app link');
  });

  test('IdP-initiated: embed link with a sessionToken posts a Response both SP stacks accept', async () => {
    const s = await registerSp('idpinit');
    const { res, form, html, cookie } = await embed(s.app, { sessionToken: await sessionTokenFor(user.profile.login), relayState: 'https://sp.example.test/deep?x=1&y=2' });
    assert.equal(res.status, 200, html);
    assert.ok(form, `an auto-post form: ${html}`);
    assert.equal(form.action, s.acs);
    assert.equal(form.fields.RelayState, 'https://sp.example.test/deep?x=1&y=2');
    assert.ok(cookie, 'the embed link sets the sid cookie');
    const [r] = await verifyWithBoth([verifyItem(s, form.fields.SAMLResponse)], dir);
    const id = assertBothOk(r, 'IdP-initiated Response');
    assert.equal(id.name_id, user.profile.login);
    assert.equal(id.name_id_format, EMAIL_FORMAT);
    assert.deepEqual(id.attributes.email, [user.profile.login]);
    assert.equal(id.issuer, s.md.entityId);
    assert.equal(id.in_response_to ?? null, null);

    // Without a session: to the sign-in page.
    const anon = await embed(s.app);
    assert.equal(anon.res.status, 302);
    assert.match(anon.res.headers.get('location'), /\/login\/login\.htm\?fromURI=/);
  });

  test('SP-initiated: node-saml signed AuthnRequests (Redirect and POST) with a cookie; replay and unsigned refused', async () => {
    const s = await registerSp('spinit');
    const first = await embed(s.app, { sessionToken: await sessionTokenFor(user.profile.login) });
    assert.equal(first.res.status, 200, first.html);
    const cookie = first.cookie;
    assert.ok(cookie);
    const base = { idpSsoUrl: s.md.ssoUrl, spEntityId: s.entityId, acs: s.acs, spKey: s.keys.key, spCert: s.keys.cert };

    const redirect = await spRequest({ ...base, relayState: 'rs-redirect' });
    const r1 = await get(redirect.url, { cookie });
    const h1 = await r1.text();
    assert.equal(r1.status, 200, h1);
    const f1 = parseAutoPost(h1);
    assert.equal(f1?.action, s.acs);
    assert.equal(f1.fields.RelayState, 'rs-redirect');

    const post = await spRequest({ ...base, binding: 'post', relayState: 'rs-post' });
    const r2 = await postForm(post.url, { SAMLRequest: post.saml_request, RelayState: 'rs-post' }, { cookie });
    const h2 = await r2.text();
    assert.equal(r2.status, 200, h2);
    const f2 = parseAutoPost(h2);
    assert.equal(f2?.action, s.acs);
    assert.equal(f2.fields.RelayState, 'rs-post');

    const [v1, v2] = await verifyWithBoth([
      { ...verifyItem(s, f1.fields.SAMLResponse, redirect.request_id), id: 'redirect' },
      { ...verifyItem(s, f2.fields.SAMLResponse, post.request_id), id: 'post' },
    ], dir);
    for (const [v, req] of [[v1, redirect], [v2, post]]) {
      const id = assertBothOk(v, `SP-initiated ${v.id}`);
      assert.equal(id.in_response_to, req.request_id);
      assert.equal(id.name_id, user.profile.login);
    }

    // The same request again: refused with an HTML page, nothing posted to the SP.
    const replay = await get(redirect.url, { cookie });
    const hr = await replay.text();
    assert.equal(replay.status, 400, hr);
    assert.match(replay.headers.get('content-type') ?? '', /text\/html/);
    assert.equal(parseAutoPost(hr)?.fields?.SAMLResponse, undefined, 'no Response for a replayed request');
    assert.doesNotMatch(hr, /SAMLResponse/);

    // Unsigned, to an app that requires signed requests.
    const unsigned = await spRequest({ ...base, unsigned: true });
    const ru = await get(unsigned.url, { cookie });
    const hu = await ru.text();
    assert.equal(ru.status, 400, hu);
    assert.doesNotMatch(hu, /SAMLResponse/);

    // Signed by another key: refused too.
    const other = await genSpKeys(dir, 'spinit-evil');
    const evil = await spRequest({ ...base, spKey: other.key, spCert: other.cert });
    const re = await get(evil.url, { cookie });
    const he = await re.text();
    assert.equal(re.status, 400, he);
    assert.doesNotMatch(he, /SAMLResponse/);

    // A fresh signed request without a session goes to the sign-in page and is parked.
    const fresh = await spRequest(base);
    const rn = await get(fresh.url);
    assert.equal(rn.status, 302, await rn.text());
    const loc = new URL(rn.headers.get('location'), server.orgUrl);
    assert.equal(loc.pathname, '/login/login.htm');
    assert.match(loc.searchParams.get('fromURI') ?? '', new RegExp(`^/app/${s.app.name}/${s.md.externalKey}/sso/saml\\?resume=`));
  });

  test('Single Logout: a signed LogoutRequest from app A walks app B, answers A, ends the session', async () => {
    const a = await registerSp('slo-a');
    const aSlo = `http://127.0.0.1:9/slo-a/slo`;
    const bSlo = `http://127.0.0.1:9/slo-b/slo`;
    // Raw PUT: the SDK's model would drop samlSignedRequestEnabled on the way.
    await rawUpdateSignOn(server.orgUrl, server.token, a.app.id, { slo: { enabled: true, issuer: a.entityId, logoutUrl: aSlo } });
    // The IdP's metadata names its logout endpoints only once the app uses Single Logout, so the SP
    // reads it again, as it would after the change.
    assert.equal(a.md.sloUrl, null, 'no SLO endpoints before SLO is enabled');
    a.md = await appMetadata(server.orgUrl, server.token, a.app.id);
    assert.ok(a.md.sloUrl, 'SLO endpoints once it is');
    const b = await registerSp('slo-b', { extra: { participateSlo: { enabled: true, logoutRequestUrl: bSlo, bindingType: 'REDIRECT' } } });

    const ea = await embed(a.app, { sessionToken: await sessionTokenFor(user.profile.login) });
    assert.equal(ea.res.status, 200, ea.html);
    const cookie = ea.cookie;
    const eb = await embed(b.app, { cookie });
    assert.equal(eb.res.status, 200, eb.html);
    assert.equal(eb.cookie, cookie, 'same session for the second app');
    const me = await get(`${server.orgUrl}/api/v1/sessions/me`, { cookie, headers: { Accept: 'application/json' } });
    assert.equal(me.status, 200);

    const [va, vb] = await verifyWithBoth([{ ...verifyItem(a, ea.form.fields.SAMLResponse), id: 'a' }, { ...verifyItem(b, eb.form.fields.SAMLResponse), id: 'b' }], dir);
    const idA = assertBothOk(va, 'app A Response');
    assertBothOk(vb, 'app B Response');
    const sessionIndex = sessionIndexOf(ea.form.fields.SAMLResponse);
    assert.equal(idA.session_index, sessionIndex);

    // A -> IdP: signed LogoutRequest (node-saml).
    const lr = await spLogout('request', {
      idpSloUrl: a.md.sloUrl, spEntityId: a.entityId, spKey: a.keys.key, nameId: idA.name_id, nameIdFormat: EMAIL_FORMAT, sessionIndex, relayState: 'a-relay',
    });
    const r1 = await get(lr.url, { cookie });
    assert.equal(r1.status, 302, await r1.text());
    const toB = r1.headers.get('location');
    assert.ok(toB.startsWith(`${bSlo}?`), `the IdP sends the browser to B's logoutRequestUrl: ${toB}`);

    // B verifies the IdP's LogoutRequest, answers with a signed LogoutResponse.
    const vReq = await spLogout('verify', { idpMetadata: b.mdFile, url: toB, spSloUrl: bSlo });
    assert.equal(vReq.ok, true, JSON.stringify(vReq));
    assert.equal(vReq.type, 'LogoutRequest');
    assert.equal(vReq.name_id, user.profile.login);
    const resp = await spLogout('response', { idpSloUrl: b.md.sloUrl, spEntityId: b.entityId, spKey: b.keys.key, inResponseTo: vReq.id, relayState: vReq.relay_state ?? undefined });
    const r2 = await get(resp.url, { cookie: sidCookie(r1) ?? cookie });
    assert.equal(r2.status, 302, await r2.text());
    const toA = r2.headers.get('location');
    assert.ok(toA.startsWith(`${aSlo}?`), `the IdP answers A at its logoutUrl: ${toA}`);

    const vResp = await spLogout('verify', { idpMetadata: a.mdFile, url: toA, requestId: lr.request_id, spSloUrl: aSlo });
    assert.equal(vResp.ok, true, JSON.stringify(vResp));
    assert.equal(vResp.type, 'LogoutResponse');
    assert.equal(vResp.in_response_to, lr.request_id);
    assert.equal(vResp.relay_state, 'a-relay');

    const gone = await get(`${server.orgUrl}/api/v1/sessions/me`, { cookie, headers: { Accept: 'application/json' } });
    assert.equal(gone.status, 404, 'the old cookie has no session after SLO');
  });

  test('signing-key rollover with the CLI while the server runs: stage publishes, activate switches, retire unpublishes', async () => {
    const s = await registerSp('rollover');
    const before1 = s.mdFile; // one cert
    assert.equal(s.md.certs.length, 1);
    const token = () => sessionTokenFor(user.profile.login);

    await server.cli(['signing-key', 'stage']);
    const listed = (await server.cli(['signing-key', 'list'])).stdout;
    assert.match(listed, /\bACTIVE\b/);
    assert.match(listed, /\bNEXT\b/);

    const md2 = await appMetadata(server.orgUrl, server.token, s.app.id);
    assert.equal(md2.certs.length, 2, `metadata publishes two signing keys after stage:\n${md2.xml}`);
    assert.equal(md2.certs[1], s.md.certs[0], 'the ACTIVE key is second');
    assert.notEqual(md2.certs[0], s.md.certs[0], 'the NEXT key is first');
    const pub2 = parseMetadata(await (await get(`${server.orgUrl}/app/${s.md.externalKey}/sso/saml/metadata`)).text());
    assert.deepEqual(pub2.certs, md2.certs, 'public metadata too');
    const twoCerts = saveMetadata(dir, 'idp-rollover-two', md2.xml);
    // The OpenID Connect JWKS publishes the same keys (one signing-keys service for every protocol),
    // from the node's key set, which is at most 5 s old.
    const jwksCerts = async () => (await (await get(`${server.orgUrl}/oauth2/v1/keys`)).json()).keys.map((k) => k.x5c[0]);
    const jwksBecomes = async (expected, what) => {
      const wanted = expected.map((c) => c.replace(/\s+/g, ''));
      let seen;
      for (let i = 0; i < 70; i++) {
        seen = await jwksCerts();
        if (JSON.stringify(seen) === JSON.stringify(wanted)) return;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      assert.deepEqual(seen, wanted, what);
    };
    await jwksBecomes(md2.certs, 'the JWKS publishes the next and the active key within seconds');

    const e1 = await embed(s.app, { sessionToken: await token() });
    assert.equal(e1.res.status, 200, e1.html);

    await server.cli(['signing-key', 'activate']);
    const md3 = await appMetadata(server.orgUrl, server.token, s.app.id);
    assert.deepEqual(md3.certs, [md2.certs[0], md2.certs[1]],
      `after activate the new key signs and the previous one stays published:\n${md3.xml}`);
    await server.cli(['signing-key', 'retire']);
    const md4 = await appMetadata(server.orgUrl, server.token, s.app.id);
    assert.deepEqual(md4.certs, [md2.certs[0]], `after retire only the new key is published:\n${md4.xml}`);
    const oneNew = saveMetadata(dir, 'idp-rollover-new', md4.xml);
    await jwksBecomes(md4.certs, 'retired keys leave the JWKS too');

    // A node keeps the key pair it read for up to 5 s (KEYS_FRESH_FOR in core's signing_keys module): SPs hold
    // both certificates by then, so the switch may land on each node a little later.
    await new Promise((resolve) => setTimeout(resolve, 5500));
    const e2 = await embed(s.app, { sessionToken: await token() });
    assert.equal(e2.res.status, 200, e2.html);
    const resp1 = e1.form.fields.SAMLResponse;
    const resp2 = e2.form.fields.SAMLResponse;
    const item = (idpMetadata, response, id) => ({ id, idpMetadata, spEntityId: s.entityId, acs: s.acs, wantResponseSigned: true, response });
    const results = await verifyWithBoth([
      item(twoCerts, resp1, 'staged-old-key-vs-two'),
      item(before1, resp1, 'staged-old-key-vs-old'),
      item(twoCerts, resp2, 'activated-vs-two'),
      item(oneNew, resp2, 'activated-vs-new'),
      item(before1, resp2, 'activated-vs-old'),
    ], dir);
    const byId = Object.fromEntries(results.map((r) => [r.id, r]));
    assertBothOk(byId['staged-old-key-vs-two'], 'after stage, a Response against the two-key metadata');
    assertBothOk(byId['staged-old-key-vs-old'], 'after stage, a Response still signed by the old key');
    assertBothOk(byId['activated-vs-two'], 'after activate, a Response against the two-key metadata an SP saved');
    assertBothOk(byId['activated-vs-new'], 'after activate, a Response against the new metadata');
    assertBothRejected(byId['activated-vs-old'], 'after activate, a Response against the old one-key metadata');
  });
});
