// SAML SSO in a real browser: headless Chromium (playwright-core) between Latchkey and a real
// pysaml2 service provider web app (e2e/saml/sp_app.py). SP-initiated: the SP's /login sends a
// signed AuthnRequest, Latchkey's hosted sign-in page takes the password, and the browser lands on
// the SP's ACS signed in. IdP-initiated: the embed link with a second user's sessionToken in the
// same browser replaces the session (session-token rule) and the SP shows the second user.
// Screenshots: e2e/test-output/saml/.
//
// Skipped, with the reason, when Chromium/playwright-core or the SAML SP tools are missing.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import okta from '@okta/okta-sdk-nodejs';
import { PYTHON, SAML_DIR, genSpKeys, samlToolsSkipReason } from '../saml/sp-tools.mjs';
import { browserSkipReason, launchBrowser, sidCookies } from './browser-kit.mjs';
import {
  adminApi, appMetadata, createSamlApp, get, parseAutoPost, postForm, responseXml, signOnSettings, startSpApp,
} from './saml-kit.mjs';
import { startServer } from './server.mjs';
import { sessionToken } from './session-kit.mjs';

const skipReason = (await browserSkipReason()) ?? (await samlToolsSkipReason());
if (skipReason) console.log(`# SAML browser tests skipped: ${skipReason}`);

const OUTPUT_DIR = path.join(SAML_DIR, '..', 'test-output', 'saml');
const PASSWORD = 'Xk9#mQv2!Lp7wZ';
const RUN = randomBytes(3).toString('hex');

async function shot(page, name) {
  mkdirSync(OUTPUT_DIR, { recursive: true });
  await page.screenshot({ path: path.join(OUTPUT_DIR, `${name}.png`), fullPage: true });
}

describe('SAML SSO in Chromium with a pysaml2 SP', { skip: skipReason ?? false }, () => {
  let server;
  let client;
  let spApp;
  let browser;
  let dir;
  let app;
  const users = [];

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'latchkey-saml-browser-'));
    server = await startServer({ env: { LATCHKEY_AUTHN_RATE_LIMIT_PER_USERNAME: '0', LATCHKEY_AUTHN_RATE_LIMIT_PER_IP: '0' } });
    client = new okta.Client({ orgUrl: server.orgUrl, token: server.token, cacheMiddleware: null });
    const keys = await genSpKeys(dir, 'sp-app');
    const entityId = `https://sp-app.example.test/${RUN}`;
    const mdFile = path.join(dir, 'idp-metadata.xml');
    // The SP starts first (its port is the ACS); the IdP metadata file is written once the app exists.
    spApp = await startSpApp({ python: PYTHON, script: path.join(SAML_DIR, 'sp_app.py'), idpMetadata: mdFile, entityId, key: keys.key, cert: keys.cert });
    assert.equal(spApp.acs, `http://127.0.0.1:${spApp.port}/acs`);
    app = await createSamlApp(client, 'Example SP (pysaml2)', signOnSettings({ acs: spApp.acs, audience: entityId, certB64: keys.cert_b64 }), server);
    const raw = await adminApi(server.orgUrl, server.token, 'GET', `/api/v1/apps/${app.id}`);
    assert.equal(raw.body.settings.signOn.samlSignedRequestEnabled, true);
    writeFileSync(mdFile, (await appMetadata(server.orgUrl, server.token, app.id)).xml);
    for (const tag of ['first', 'second']) {
      const login = `${tag}.${RUN}@example.com`;
      const user = await client.userApi.createUser({
        body: { profile: { firstName: tag, lastName: 'User', email: login, login }, credentials: { password: { value: PASSWORD } } },
        activate: true,
      });
      await client.applicationApi.assignUserToApplication({ appId: app.id, appUser: { id: user.id } });
      users.push(user);
    }
    browser = await launchBrowser();
  });

  after(async () => {
    if (browser) await browser.close();
    if (spApp) await spApp.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
    if (server) {
      const r = await server.stop();
      assert.ok(r.clean, `server did not stop cleanly: ${JSON.stringify({ code: r.code, signal: r.signal, note: r.note })}\n${r.output.slice(-2000)}`);
    }
  });

  test('SP-initiated: the SP\'s /login -> Latchkey sign-in page -> back at the SP signed in', async () => {
    const { page } = browser;
    const [first] = users;
    await page.goto(`${spApp.login}?relay_state=${encodeURIComponent('/after-login')}`);
    // No IdP session: the signed AuthnRequest was parked and the browser is on the sign-in page.
    const onSignIn = new URL(page.url());
    assert.equal(onSignIn.origin, server.orgUrl);
    assert.equal(onSignIn.pathname, '/login/login.htm');
    assert.match(onSignIn.searchParams.get('fromURI') ?? '', /^\/app\/[^/]+\/exk\w+\/sso\/saml\?resume=/);
    await shot(page, '01-sp-initiated-sign-in-page');

    await page.getByLabel('Username').fill(first.profile.login);
    await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
    await Promise.all([
      page.waitForURL(`${spApp.acs}`, { timeout: 15000 }),
      page.getByRole('button', { name: 'Sign in' }).click(),
    ]);
    await page.locator('#who').waitFor();
    await shot(page, '02-sp-initiated-signed-in-at-sp');
    assert.equal(await page.locator('#who').innerText(), `Signed in as ${first.profile.login}`, await page.content());
    assert.equal(await page.locator('#flow').innerText(), 'SP-initiated');
    assert.match(await page.locator('#relay-state').innerText(), /\/after-login/);
    assert.match(await page.locator('#attributes').innerText(), new RegExp(`email\\s+${first.profile.login.replace(/\./g, '\\.')}`));

    const who = await (await fetch(`${spApp.baseUrl}/whoami`, { signal: AbortSignal.timeout(5000) })).json();
    assert.equal(who.name_id, first.profile.login);
    assert.equal(who.solicited, true);
    assert.equal((await sidCookies(browser.context)).length, 1, 'Latchkey set its sid cookie');
  });

  test('IdP-initiated: the embed link with a second user\'s sessionToken in the same browser signs the SP in as the second user', async () => {
    const { page } = browser;
    const [first, second] = users;
    const before = (await sidCookies(browser.context)).map((c) => c.value);
    const token = await sessionToken(server.orgUrl, second.profile.login, PASSWORD);
    const embed = new URL(app._links.appLinks[0].href);
    embed.searchParams.set('sessionToken', token);
    embed.searchParams.set('RelayState', 'idp-initiated');
    await Promise.all([
      page.waitForURL(spApp.acs, { timeout: 15000 }),
      page.goto(embed.href),
    ]);
    await page.locator('#who').waitFor();
    await shot(page, '03-idp-initiated-second-user-at-sp');
    assert.equal(await page.locator('#who').innerText(), `Signed in as ${second.profile.login}`, await page.content());
    assert.equal(await page.locator('#flow').innerText(), 'IdP-initiated');
    assert.notEqual(second.profile.login, first.profile.login);

    const who = await (await fetch(`${spApp.baseUrl}/whoami`, { signal: AbortSignal.timeout(5000) })).json();
    assert.equal(who.name_id, second.profile.login);
    assert.equal(who.solicited, false);
    assert.equal(who.relay_state, 'idp-initiated');
    const afterSid = (await sidCookies(browser.context)).map((c) => c.value);
    assert.equal(afterSid.length, 1);
    assert.notDeepEqual(afterSid, before, 'the session token replaced the browser\'s session');

    // The SP's own session page, in the same browser: the second user.
    await page.goto(`${spApp.baseUrl}/`);
    assert.equal(await page.locator('#who').innerText(), `Signed in as ${second.profile.login}`);
  });

  test('the SP app refuses a replayed, a tampered and a garbage Response with 403 (no browser)', async () => {
    const [first] = users;
    const embed = new URL(app._links.appLinks[0].href);
    embed.searchParams.set('sessionToken', await sessionToken(server.orgUrl, first.profile.login, PASSWORD));
    const res = await get(embed.href);
    const form = parseAutoPost(await res.text());
    assert.equal(res.status, 200);
    assert.equal(form?.action, spApp.acs);
    const post = (fields) => postForm(spApp.acs, fields);
    const ok = await post({ SAMLResponse: form.fields.SAMLResponse });
    assert.equal(ok.status, 200, await ok.text());
    const replay = await post({ SAMLResponse: form.fields.SAMLResponse });
    const replayHtml = await replay.text();
    assert.equal(replay.status, 403, replayHtml);
    assert.match(replayHtml, /already used/);
    const xml = responseXml(form.fields.SAMLResponse).replace(first.profile.login, users[1].profile.login);
    const tampered = await post({ SAMLResponse: Buffer.from(xml).toString('base64') });
    assert.equal(tampered.status, 403, await tampered.text());
    const garbage = await post({ SAMLResponse: Buffer.from('<x>&lt;script&gt;</x>').toString('base64') });
    const garbageHtml = await garbage.text();
    assert.equal(garbage.status, 403, garbageHtml);
    assert.doesNotMatch(garbageHtml, /<script>/);
    const who = await (await fetch(`${spApp.baseUrl}/whoami`, { signal: AbortSignal.timeout(5000) })).json();
    assert.equal(who.name_id, first.profile.login, 'the last verified identity is the one good Response');
  });
});
