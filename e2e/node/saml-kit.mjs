// Helpers shared by the SAML end-to-end tests (saml.test.mjs, saml-browser.test.mjs): SAML apps
// made with Okta's Node SDK, the IdP metadata, the auto-post form of a SAML Response, cookies.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';

export const EMAIL_FORMAT = 'urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress';
export const TIMEOUT_MS = 15_000;

/** fetch with a timeout and no redirect following (every SAML hop is checked by the tests). */
export function get(url, { cookie, headers = {}, method = 'GET', body } = {}) {
  return fetch(url, {
    method,
    redirect: 'manual',
    headers: { ...(cookie ? { Cookie: cookie } : {}), ...headers },
    body,
    signal: AbortSignal.timeout(TIMEOUT_MS),
  });
}

/** POSTs an application/x-www-form-urlencoded form. */
export function postForm(url, fields, { cookie } = {}) {
  return get(url, {
    method: 'POST',
    cookie,
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(fields).toString(),
  });
}

/**
 * The `signOn` settings of a SAML app for an SP at `acs` with entity id `audience`: NameID = the
 * username as an email address, one `email` attribute. `extra` is merged over them.
 */
export function signOnSettings({ acs, audience, certB64, extra = {} }) {
  return {
    ssoAcsUrl: acs,
    recipient: acs,
    destination: acs,
    audience,
    subjectNameIdTemplate: '${user.userName}',
    subjectNameIdFormat: EMAIL_FORMAT,
    responseSigned: true,
    assertionSigned: true,
    signatureAlgorithm: 'RSA_SHA256',
    digestAlgorithm: 'SHA256',
    authnContextClassRef: 'urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport',
    attributeStatements: [
      { type: 'EXPRESSION', name: 'email', namespace: 'urn:oasis:names:tc:SAML:2.0:attrname-format:unspecified', values: ['user.email'] },
    ],
    ...(certB64 ? { spCertificate: { x5c: [certB64] }, samlSignedRequestEnabled: true } : {}),
    ...extra,
  };
}

/** An admin API call over plain fetch (JSON in and out); resolves { status, body }. */
export async function adminApi(orgUrl, token, method, urlPath, body) {
  const res = await get(`${orgUrl}${urlPath}`, {
    method,
    headers: { Authorization: `SSWS ${token}`, Accept: 'application/json', ...(body ? { 'Content-Type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null, text };
}

/**
 * Creates (active) a SAML app with okta-sdk-nodejs; returns the SDK's Application object.
 *
 * okta-sdk-nodejs 8.1's SamlApplicationSettingsSignOn model has no `samlSignedRequestEnabled`
 * (the SDK drops unknown properties when it serialises), so when `signOn` sets it, it is applied
 * afterwards with a raw read-modify-write PUT (`rawUpdateSignOn`) and the app is read back with the SDK.
 */
export async function createSamlApp(client, label, signOn, { orgUrl, token } = {}) {
  const app = await client.applicationApi.createApplication({
    application: { label, signOnMode: 'SAML_2_0', settings: { signOn } },
  });
  if (signOn.samlSignedRequestEnabled === undefined) return app;
  assert.ok(orgUrl && token, 'createSamlApp with samlSignedRequestEnabled needs { orgUrl, token }');
  await rawUpdateSignOn(orgUrl, token, app.id, { samlSignedRequestEnabled: signOn.samlSignedRequestEnabled });
  return client.applicationApi.getApplication({ appId: app.id });
}

/** Merges `patch` into settings.signOn of app `id` with raw GET + PUT; returns the raw app JSON. */
export async function rawUpdateSignOn(orgUrl, token, id, patch) {
  const cur = await adminApi(orgUrl, token, 'GET', `/api/v1/apps/${id}`);
  assert.equal(cur.status, 200, cur.text);
  const app = cur.body;
  app.settings.signOn = { ...app.settings.signOn, ...patch };
  const put = await adminApi(orgUrl, token, 'PUT', `/api/v1/apps/${id}`, app);
  assert.equal(put.status, 200, `PUT /api/v1/apps/${id} -> ${put.status} ${put.text}`);
  for (const [k, v] of Object.entries(patch)) {
    assert.deepEqual(put.body.settings.signOn[k], v, `PUT kept settings.signOn.${k}`);
  }
  return put.body;
}

/** The admin metadata of an app (XML text), and what the tests need from it. */
export async function appMetadata(orgUrl, token, appId) {
  const res = await get(`${orgUrl}/api/v1/apps/${appId}/sso/saml/metadata`, {
    headers: { Authorization: `SSWS ${token}`, Accept: 'application/xml' },
  });
  const xml = await res.text();
  assert.equal(res.status, 200, `admin metadata of ${appId} -> ${res.status} ${xml}`);
  return parseMetadata(xml);
}

/** { xml, entityId, externalKey, ssoUrl, sloUrl, certs: [b64 of every signing KeyDescriptor] } */
export function parseMetadata(xml) {
  const entityId = /entityID="([^"]+)"/.exec(xml)?.[1];
  assert.ok(entityId, `metadata without entityID: ${xml}`);
  const externalKey = /^http:\/\/www\.okta\.com\/(exk\w+)$/.exec(entityId)?.[1];
  assert.ok(externalKey, `entityID is http://www.okta.com/{exk…}: ${entityId}`);
  const ssoUrl = /<(?:\w+:)?SingleSignOnService[^>]*Binding="urn:oasis:names:tc:SAML:2\.0:bindings:HTTP-Redirect"[^>]*Location="([^"]+)"/.exec(xml)?.[1]
    ?? /<(?:\w+:)?SingleSignOnService[^>]*Location="([^"]+)"/.exec(xml)?.[1];
  const sloUrl = /<(?:\w+:)?SingleLogoutService[^>]*Location="([^"]+)"/.exec(xml)?.[1] ?? null;
  const certs = [];
  const kdRe = /<(?:\w+:)?KeyDescriptor(?:\s+use="(\w+)")?[^>]*>([\s\S]*?)<\/(?:\w+:)?KeyDescriptor>/g;
  for (const m of xml.matchAll(kdRe)) {
    if (m[1] && m[1] !== 'signing') continue;
    const c = /<(?:\w+:)?X509Certificate>([^<]+)</.exec(m[2])?.[1];
    if (c) certs.push(c.replace(/\s+/g, ''));
  }
  return { xml, entityId, externalKey, ssoUrl, sloUrl, certs };
}

/** Writes metadata XML to `dir/name.xml`, returns the path. */
export function saveMetadata(dir, name, xml) {
  const f = path.join(dir, `${name}.xml`);
  writeFileSync(f, xml);
  return f;
}

const decodeEntities = (s) =>
  s.replace(/&(#x[0-9a-f]+|#\d+|amp|lt|gt|quot|apos);/gi, (_, e) => {
    const l = e.toLowerCase();
    if (l === 'amp') return '&';
    if (l === 'lt') return '<';
    if (l === 'gt') return '>';
    if (l === 'quot') return '"';
    if (l === 'apos') return "'";
    return String.fromCodePoint(l.startsWith('#x') ? parseInt(l.slice(2), 16) : parseInt(l.slice(1), 10));
  });

/** The auto-post form of an HTML page: { action, fields: {name: value} }, or null when none. */
export function parseAutoPost(html) {
  const form = /<form\b[^>]*\baction="([^"]*)"[^>]*>([\s\S]*?)<\/form>/i.exec(html);
  if (!form) return null;
  const fields = {};
  for (const m of form[2].matchAll(/<input\b[^>]*>/gi)) {
    const name = /\bname="([^"]*)"/i.exec(m[0])?.[1];
    const value = /\bvalue="([^"]*)"/i.exec(m[0])?.[1];
    if (name) fields[decodeEntities(name)] = decodeEntities(value ?? '');
  }
  return { action: decodeEntities(form[1]), fields };
}

/** The decoded XML of a base64 SAMLResponse form value. */
export const responseXml = (b64) => Buffer.from(b64, 'base64').toString('utf8');

/** SessionIndex of the AuthnStatement of a Response. */
export function sessionIndexOf(b64) {
  const idx = /SessionIndex="([^"]+)"/.exec(responseXml(b64))?.[1];
  assert.ok(idx, 'Response has an AuthnStatement SessionIndex');
  return idx;
}

/** The `sid=...` pair from the Set-Cookie headers of a response, or null. */
export function sidCookie(res) {
  for (const c of res.headers.getSetCookie()) {
    const m = /^sid=([^;]*)/.exec(c);
    if (m && m[1]) return `sid=${m[1]}`;
  }
  return null;
}

/** Asserts both SP verifiers accepted a verifyWithBoth result; returns pysaml2's result. */
export function assertBothOk(r, what) {
  for (const [tool, o] of [['pysaml2', r.pysaml2], ['node-saml', r.nodeSaml]]) {
    assert.ok(o, `${what}: no result from ${tool}`);
    assert.equal(o.ok, true, `${what}: ${tool} rejected the Response: ${JSON.stringify(o)}`);
  }
  const strip = ({ id, ...rest }) => rest;
  assert.deepEqual(strip(r.nodeSaml), strip(r.pysaml2), `${what}: both tools read the same identity`);
  return r.pysaml2;
}

/** Asserts both SP verifiers REJECTED a verifyWithBoth result. */
export function assertBothRejected(r, what) {
  for (const [tool, o] of [['pysaml2', r.pysaml2], ['node-saml', r.nodeSaml]]) {
    assert.ok(o, `${what}: no result from ${tool}`);
    assert.equal(o.ok, false, `${what}: ${tool} should have rejected the Response: ${JSON.stringify(o)}`);
  }
}

/**
 * Starts e2e/saml/sp_app.py (the pysaml2 SP web app) with the venv python on a free loopback port.
 * The IdP metadata file may be written later (the app reads it when first needed). Resolves
 * { port, baseUrl, acs, login, entityId, output(), stop() }; stop() sends SIGTERM (SIGKILL after 5 s).
 */
export async function startSpApp({ python, script, idpMetadata, entityId, key, cert, extraArgs = [], readyTimeoutMs = 30_000 }) {
  const { spawn } = await import('node:child_process');
  const child = spawn(python, [script, '--idp-metadata', idpMetadata, '--entity-id', entityId, '--key', key, '--cert', cert, '--port', '0', ...extraArgs], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise((r) => child.once('exit', (code, signal) => r({ code, signal })));
  process.once('exit', () => { try { child.kill('SIGKILL'); } catch { /* gone */ } });
  let out = '';
  let err = '';
  child.stderr.on('data', (d) => { err = (err + d).slice(-8000); });
  let timer;
  const info = await new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`sp_app.py printed nothing within ${readyTimeoutMs} ms\n${err}`)), readyTimeoutMs);
    child.stdout.on('data', (d) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl >= 0) {
        try { resolve(JSON.parse(out.slice(0, nl))); } catch (e) { reject(new Error(`sp_app.py: bad first line ${out}: ${e.message}`)); }
      }
    });
    exited.then(({ code, signal }) => reject(new Error(`sp_app.py exited (code=${code}, signal=${signal}) before it was ready\n${err}`)));
  }).catch(async (e) => {
    child.kill('SIGKILL');
    await exited;
    throw e;
  }).finally(() => clearTimeout(timer));
  let stopped = null;
  return {
    port: info.port,
    baseUrl: info.base_url,
    acs: info.acs,
    login: info.login,
    entityId: info.entity_id,
    output: () => err,
    stop() {
      if (stopped) return stopped;
      stopped = (async () => {
        if (child.exitCode !== null || child.signalCode !== null) return exited;
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        const r = await exited;
        clearTimeout(t);
        return r;
      })();
      return stopped;
    },
  };
}

/**
 * IdP-initiated SSO through an app's embed link (`app._links.appLinks[0].href`), redirects not
 * followed. `orgUrl` sends the request to another node (same path, that node's origin).
 * Resolves { res, html, form (parseAutoPost), cookie (the new sid, else the one sent) }.
 */
export async function embedSso(app, { sessionToken, cookie, relayState, orgUrl } = {}) {
  const u = new URL(app._links.appLinks[0].href);
  if (orgUrl) {
    const o = new URL(orgUrl);
    u.protocol = o.protocol;
    u.host = o.host;
  }
  if (sessionToken) u.searchParams.set('sessionToken', sessionToken);
  if (relayState) u.searchParams.set('RelayState', relayState);
  const res = await get(u.href, { cookie });
  const html = await res.text();
  return { res, html, form: parseAutoPost(html), cookie: sidCookie(res) ?? cookie };
}

/** Asserts an embedSso result posted a SAMLResponse to `acs`; returns the base64 Response. */
export function assertSsoPosted(r, acs, what) {
  assert.equal(r.res.status, 200, `${what}: expected the auto-post page, got ${r.res.status} ${r.html.slice(0, 500)}`);
  assert.ok(r.form, `${what}: an auto-post form: ${r.html.slice(0, 500)}`);
  assert.equal(r.form.action, acs, `${what}: the form posts to the ACS`);
  assert.ok(r.form.fields.SAMLResponse, `${what}: the form carries a SAMLResponse`);
  return r.form.fields.SAMLResponse;
}

/** Asserts an embedSso result was refused with a 403 HTML page that posts nothing. */
export function assertSsoRefused(r, what) {
  assert.equal(r.res.status, 403, `${what}: expected a 403 page, got ${r.res.status} location=${r.res.headers.get('location')} ${r.html.slice(0, 500)}`);
  assert.match(r.res.headers.get('content-type') ?? '', /text\/html/, `${what}: the refusal is an HTML page`);
  assert.equal(r.form?.fields?.SAMLResponse, undefined, `${what}: no Response is posted`);
  assert.doesNotMatch(r.html, /SAMLResponse/, `${what}: the page names no SAMLResponse`);
}
