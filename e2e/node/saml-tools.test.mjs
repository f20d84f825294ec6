// Self-test of the SAML service-provider tools in e2e/saml/, without Latchkey: a throwaway test
// IdP (e2e/saml/test-idp.mjs: string template + `xmlsec1 --sign`, sharing no code with Latchkey)
// signs Responses, and BOTH verifiers — sp_verify.py (pysaml2, libxmlsec1) and sp-verify.mjs
// (node-saml, xml-crypto) — must accept the good ones and reject every broken one. Also checks
// that sp-request.mjs emits correctly signed AuthnRequests (redirect and POST) and that
// sp-logout.mjs builds signed LogoutRequests and verifies the IdP's redirect-bound SLO messages.
//
// Skipped, with the reason, when xmlsec1 (Debian package), openssl, the e2e venv python with
// pysaml2 (e2e/run creates it) or @node-saml/node-saml (npm ci) is missing.
import assert from 'node:assert/strict';
import { createVerify } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { inflateRawSync } from 'node:zlib';
import { verifyLogoutRedirect } from '../saml/sp-logout.mjs';
import * as idp from '../saml/test-idp.mjs';
import { PYTHON, SAML_DIR, genSpKeys, run, samlToolsSkipReason, spLogout, spRequest, verifyWithBoth } from '../saml/sp-tools.mjs';

const skip = await samlToolsSkipReason();
if (skip) console.log(`# SAML SP tool tests skipped: ${skip}`);
const opts = { skip: skip ?? false };

const IDP = 'https://idp.example.test/saml/metadata';
const SP = 'https://sp.example.test/saml';
const ACS = 'https://sp.example.test/saml/acs';
const SSO = 'https://idp.example.test/saml/sso';
const SLO = 'https://idp.example.test/saml/slo';
const SP_SLO = 'https://sp.example.test/saml/slo';
const REQ = '_req0123456789abcdef0123456789abcdef01234567';
const EMAIL = 'urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress';

/** Maps `fn` over `xs` with at most `limit` in flight, keeping order. */
async function mapLimit(xs, limit, fn) {
  const out = new Array(xs.length);
  let next = 0;
  const worker = async () => {
    while (next < xs.length) {
      const i = next++;
      out[i] = await fn(xs[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, xs.length) }, worker));
  return out;
}

describe('SAML SP tools (pysaml2 + node-saml) against a throwaway test IdP', () => {
  let dir;
  let keys; // { idp, next, evil, sp }
  let md; // metadata files: { current, rollover }
  let results; // Map id -> { pysaml2, nodeSaml }
  let singleRuns; // [name, {code, stdout, stderr}, expected exit code]
  const cases = [];

  /** A case: `expectOk`, Response options for test-idp, verifier options. */
  const add = (id, expectOk, responseOpts, verifyOpts = {}) => cases.push({ id, expectOk, responseOpts, verifyOpts });
  const solicited = { inResponseTo: REQ };
  const asSolicited = { requestId: REQ, wantResponseSigned: true };

  // Accepted.
  add('ok-solicited-both-signed', true, {
    ...solicited,
    attributes: { email: ['alice@example.com'], groups: ['staff', 'admins'], display: ['Zoë & <Ünïcode> "quoted"'] },
    sessionIndex: '_sess-fixed-1',
  }, asSolicited);
  add('ok-unsolicited-assertion-signed-only', true, { signResponse: false }, {});
  add('ok-rollover-next-key', true, { signer: 'next', ...solicited }, { ...asSolicited, metadata: 'rollover' });
  add('ok-rollover-current-key', true, { ...solicited }, { ...asSolicited, metadata: 'rollover' });
  // Rejected by both.
  add('bad-audience', false, { ...solicited, audience: 'https://other-sp.example.test' }, asSolicited);
  add('bad-destination', false, { ...solicited, destination: 'https://sp.example.test/other-acs' }, asSolicited);
  add('bad-destination-missing', false, { ...solicited, destination: null }, asSolicited);
  add('bad-recipient', false, { ...solicited, recipient: 'https://sp.example.test/other-acs' }, asSolicited);
  add('bad-recipient-missing', false, { ...solicited, recipient: null }, asSolicited);
  add('bad-expired', false, { ...solicited, notBefore: idp.isoAt(-900), notOnOrAfter: idp.isoAt(-300) }, asSolicited);
  add('bad-scd-expired', false, { ...solicited, scdNotOnOrAfter: idp.isoAt(-60) }, asSolicited);
  add('bad-not-yet-valid', false, { ...solicited, notBefore: idp.isoAt(300), notOnOrAfter: idp.isoAt(600) }, asSolicited);
  add('bad-unsigned-assertion', false, { ...solicited, signAssertion: false }, { requestId: REQ });
  add('bad-unsigned-response-when-wanted', false, { ...solicited, signResponse: false }, asSolicited);
  add('bad-tampered-nameid', false, { ...solicited, tamper: (x) => x.replace('>alice@example.com</saml:NameID>', '>mallory@example.com</saml:NameID>') }, asSolicited);
  add('bad-tampered-nameid-assertion-only', false, { signResponse: false, tamper: (x) => x.replace('>alice@example.com</saml:NameID>', '>mallory@example.com</saml:NameID>') }, {});
  add('bad-wrong-key', false, { ...solicited, signer: 'evil' }, asSolicited);
  add('bad-next-key-without-rollover-metadata', false, { ...solicited, signer: 'next' }, asSolicited);
  add('bad-issuer', false, { ...solicited, responseIssuer: 'https://evil.example.test', assertionIssuer: 'https://evil.example.test' }, asSolicited);
  add('bad-in-response-to-mismatch', false, { inResponseTo: '_someOtherRequest' }, asSolicited);
  add('bad-in-response-to-scd-mismatch', false, { inResponseTo: REQ, scdInResponseTo: '_someOtherRequest' }, asSolicited);
  add('bad-in-response-to-missing', false, {}, asSolicited);
  add('bad-in-response-to-when-unsolicited', false, { ...solicited }, {});
  add('bad-scd-in-response-to-when-unsolicited', false, { inResponseTo: null, scdInResponseTo: REQ }, {});

  before(async () => {
    if (skip) return;
    dir = mkdtempSync(path.join(os.tmpdir(), 'latchkey-saml-tools-'));
    keys = {
      idp: idp.makeKeyPair(dir, 'idp'),
      next: idp.makeKeyPair(dir, 'idp-next'),
      evil: idp.makeKeyPair(dir, 'evil'),
      sp: await genSpKeys(dir, 'sp'),
    };
    md = { current: path.join(dir, 'idp-metadata.xml'), rollover: path.join(dir, 'idp-metadata-rollover.xml') };
    writeFileSync(md.current, idp.idpMetadata({ entityId: IDP, certs: [keys.idp.certB64], ssoUrl: SSO, sloUrl: SLO }));
    // Rollover metadata: the next key first, the current one second.
    writeFileSync(md.rollover, idp.idpMetadata({ entityId: IDP, certs: [keys.next.certB64, keys.idp.certB64], ssoUrl: SSO, sloUrl: SLO }));

    const items = await mapLimit(cases, 4, async ({ id, responseOpts: { signer = 'idp', ...r }, verifyOpts: v }) => ({
      id,
      idpMetadata: md[v.metadata ?? 'current'],
      spEntityId: SP,
      acs: ACS,
      requestId: v.requestId,
      wantResponseSigned: v.wantResponseSigned,
      response: await idp.makeResponse({ ...keys[signer], dir, idpEntityId: IDP, spEntityId: SP, acs: ACS, ...r }),
    }));
    // The single-response CLI mode of each tool (good -> exit 0, bad -> exit 1), run alongside
    // the batches: pysaml2 takes seconds to start.
    const good = path.join(dir, 'good.b64');
    const bad = path.join(dir, 'bad.b64');
    writeFileSync(good, items.find((i) => i.id === 'ok-solicited-both-signed').response);
    writeFileSync(bad, items.find((i) => i.id === 'bad-wrong-key').response);
    const base = ['--idp-metadata', md.current, '--sp-entity-id', SP, '--acs', ACS, '--request-id', REQ, '--want-response-signed'];
    const single = [
      ['sp_verify.py good', PYTHON, [path.join(SAML_DIR, 'sp_verify.py'), ...base, '--response-file', good], 0],
      ['sp_verify.py bad', PYTHON, [path.join(SAML_DIR, 'sp_verify.py'), ...base, '--response-file', bad], 1],
      ['sp-verify.mjs good', process.execPath, [path.join(SAML_DIR, 'sp-verify.mjs'), ...base, '--response-file', good], 0],
      ['sp-verify.mjs bad', process.execPath, [path.join(SAML_DIR, 'sp-verify.mjs'), ...base, '--response-file', bad], 1],
    ];
    const [batch, ...singles] = await Promise.all([
      verifyWithBoth(items, dir),
      ...single.map(([, cmd, args]) => run(cmd, args)),
    ]);
    results = new Map(batch.map((r) => [r.id, r]));
    singleRuns = single.map(([name, , , code], i) => [name, singles[i], code]);
  });

  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  for (const c of cases) {
    test(`${c.expectOk ? 'accepts' : 'rejects'} ${c.id} (pysaml2 and node-saml)`, opts, (t) => {
      const { pysaml2, nodeSaml } = results.get(c.id);
      for (const [tool, r] of [['pysaml2', pysaml2], ['node-saml', nodeSaml]]) {
        assert.ok(r, `${tool}: no result for ${c.id}`);
        t.diagnostic(`${tool}: ${r.ok ? 'ok' : r.error}`);
        assert.equal(r.ok, c.expectOk, `${tool} on ${c.id}: ${JSON.stringify(r)}`);
      }
      if (c.expectOk) {
        // Both tools report the same identity, attributes and correlation.
        const strip = ({ id, ...rest }) => rest;
        assert.deepEqual(strip(pysaml2), strip(nodeSaml));
        assert.equal(nodeSaml.name_id, 'alice@example.com');
        assert.equal(nodeSaml.name_id_format, EMAIL);
        assert.equal(nodeSaml.issuer, IDP);
        assert.equal(nodeSaml.in_response_to, c.verifyOpts.requestId ?? null);
        assert.match(nodeSaml.session_index, /^_/);
      }
    });
  }

  test('reports the attributes, session index and InResponseTo exactly', opts, () => {
    const { nodeSaml } = results.get('ok-solicited-both-signed');
    assert.deepEqual(nodeSaml.attributes, {
      email: ['alice@example.com'],
      groups: ['staff', 'admins'],
      display: ['Zoë & <Ünïcode> "quoted"'],
    });
    assert.equal(nodeSaml.session_index, '_sess-fixed-1');
    assert.equal(nodeSaml.in_response_to, REQ);
  });

  test('single-response CLI mode: same JSON and exit codes 0/1 from both tools', opts, () => {
    for (const [name, r, code] of singleRuns) {
      assert.equal(r.code, code, `${name}: ${r.stdout}${r.stderr}`);
      assert.equal(r.stdout.trim().split('\n').length, 1, name);
      assert.equal(JSON.parse(r.stdout).ok, code === 0, name);
    }
  });

  test('sp-request.mjs: signed HTTP-Redirect AuthnRequest with ForceAuthn, IsPassive, NameIDPolicy, RelayState', opts, async () => {
    const relayState = 'back to /app?x=1 & y!';
    const out = await spRequest({
      idpSsoUrl: SSO,
      spEntityId: SP,
      acs: ACS,
      spKey: keys.sp.key,
      spCert: keys.sp.cert,
      forceAuthn: true,
      isPassive: true,
      nameIdFormat: EMAIL,
      relayState,
    });
    assert.ok(out.url.startsWith(`${SSO}?SAMLRequest=`));
    const raw = out.url.slice(out.url.indexOf('?') + 1);
    const params = new URLSearchParams(raw);
    assert.equal(params.get('RelayState'), relayState);
    assert.equal(params.get('SigAlg'), 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256');
    // saml-bindings §3.4.4.1: the signature covers the raw query up to &Signature=, as sent.
    const signed = raw.slice(0, raw.lastIndexOf('&Signature='));
    assert.ok(createVerify('RSA-SHA256').update(signed).verify(readFileSync(keys.sp.cert), params.get('Signature'), 'base64'));
    const xml = inflateRawSync(Buffer.from(params.get('SAMLRequest'), 'base64')).toString('utf8');
    assert.match(xml, new RegExp(`ID="${out.request_id}"`));
    assert.match(xml, /ForceAuthn="true"/);
    assert.match(xml, /IsPassive="true"/);
    assert.match(xml, new RegExp(`AssertionConsumerServiceURL="${ACS}"`));
    assert.match(xml, new RegExp(`Destination="${SSO}"`));
    assert.match(xml, new RegExp(`<saml:Issuer[^>]*>${SP}</saml:Issuer>`));
    assert.match(xml, new RegExp(`<samlp:NameIDPolicy[^>]*Format="${EMAIL}"`));
    assert.doesNotMatch(xml, /RequestedAuthnContext/);

    const unsigned = await spRequest({ idpSsoUrl: SSO, spEntityId: SP, acs: ACS, unsigned: true });
    assert.ok(!new URL(unsigned.url).searchParams.has('Signature'));
  });

  test('sp-request.mjs: signed HTTP-POST AuthnRequest verifies with xmlsec1 and the SP cert', opts, async () => {
    const out = await spRequest({ idpSsoUrl: SSO, spEntityId: SP, acs: ACS, spKey: keys.sp.key, spCert: keys.sp.cert, binding: 'post' });
    const xml = Buffer.from(out.saml_request, 'base64').toString('utf8');
    assert.match(xml, new RegExp(`^(<\\?xml[^>]*\\?>)?<samlp:AuthnRequest[^>]*ID="${out.request_id}"`));
    assert.match(xml, /rsa-sha256/);
    const file = path.join(dir, 'authn-request-post.xml');
    writeFileSync(file, xml);
    const check = (cert) =>
      run('xmlsec1', ['--verify', '--pubkey-cert-pem', cert, '--id-attr:ID', 'urn:oasis:names:tc:SAML:2.0:protocol:AuthnRequest', file], { timeoutMs: 20_000 });
    assert.equal((await check(keys.sp.cert)).code, 0);
    assert.notEqual((await check(keys.evil.cert)).code, 0);
  });

  test('sp-logout.mjs: signed LogoutRequest; verifies the IdP LogoutResponse and rejects bad ones', opts, async (t) => {
    const req = await spLogout('request', {
      idpSloUrl: SLO,
      spEntityId: SP,
      spKey: keys.sp.key,
      nameId: 'alice@example.com',
      nameIdFormat: EMAIL,
      sessionIndex: '_sess-fixed-1',
      relayState: 'rs-1',
    });
    const raw = req.url.slice(req.url.indexOf('?') + 1);
    const params = new URLSearchParams(raw);
    assert.ok(createVerify('RSA-SHA256').update(raw.slice(0, raw.lastIndexOf('&Signature='))).verify(readFileSync(keys.sp.cert), params.get('Signature'), 'base64'));
    const reqXml = inflateRawSync(Buffer.from(params.get('SAMLRequest'), 'base64')).toString('utf8');
    assert.match(reqXml, new RegExp(`<samlp:LogoutRequest[^>]*ID="${req.request_id}"`));
    assert.match(reqXml, /alice@example\.com<\/saml:NameID>/);
    assert.match(reqXml, /_sess-fixed-1</);

    const respXml = idp.logoutResponseXml({ idpEntityId: IDP, destination: SP_SLO, inResponseTo: req.request_id });
    const signed = idp.redirectQuery({ xml: respXml, param: 'SAMLResponse', relayState: 'rs-1', key: keys.idp.key });
    const verify = (query, extra = {}) => spLogout('verify', { idpMetadata: md.current, query, requestId: req.request_id, spSloUrl: SP_SLO, ...extra });

    const ok = await verify(signed);
    assert.equal(ok.ok, true, JSON.stringify(ok));
    assert.equal(ok.exitCode, 0);
    assert.equal(ok.type, 'LogoutResponse');
    assert.equal(ok.in_response_to, req.request_id);
    assert.equal(ok.status, 'urn:oasis:names:tc:SAML:2.0:status:Success');
    assert.equal(ok.relay_state, 'rs-1');

    const bad = {
      unsigned: idp.redirectQuery({ xml: respXml, param: 'SAMLResponse', relayState: 'rs-1' }),
      'wrong key': idp.redirectQuery({ xml: respXml, param: 'SAMLResponse', relayState: 'rs-1', key: keys.evil.key }),
      'RelayState altered after signing': signed.replace('RelayState=rs-1', 'RelayState=rs-2'),
      'InResponseTo mismatch': idp.redirectQuery({
        xml: idp.logoutResponseXml({ idpEntityId: IDP, destination: SP_SLO, inResponseTo: '_other' }),
        param: 'SAMLResponse',
        key: keys.idp.key,
      }),
      'wrong Destination': idp.redirectQuery({
        xml: idp.logoutResponseXml({ idpEntityId: IDP, destination: 'https://elsewhere.example.test/slo', inResponseTo: req.request_id }),
        param: 'SAMLResponse',
        key: keys.idp.key,
      }),
      'non-Success status': idp.redirectQuery({
        xml: idp.logoutResponseXml({ idpEntityId: IDP, destination: SP_SLO, inResponseTo: req.request_id, status: 'Responder' }),
        param: 'SAMLResponse',
        key: keys.idp.key,
      }),
    };
    // One rejection through the CLI (exit code 1), the rest in-process (same function, faster).
    const viaCli = await verify(bad['wrong key']);
    assert.equal(viaCli.ok, false, JSON.stringify(viaCli));
    assert.equal(viaCli.exitCode, 1);
    for (const [name, query] of Object.entries(bad)) {
      const r = await verifyLogoutRedirect({ idpMetadata: md.current, query, requestId: req.request_id, spSloUrl: SP_SLO });
      assert.equal(r.ok, false, `${name}: ${JSON.stringify(r)}`);
      t.diagnostic(`${name}: ${r.error}`);
    }
  });

  test('sp-logout.mjs: verifies an IdP-initiated LogoutRequest and answers with a signed LogoutResponse', opts, async () => {
    const lrXml = idp.logoutRequestXml({ idpEntityId: IDP, destination: SP_SLO, nameId: 'alice@example.com', sessionIndex: '_sess-fixed-1' });
    const url = `${SP_SLO}?${idp.redirectQuery({ xml: lrXml, param: 'SAMLRequest', key: keys.idp.key })}`;
    const ok = await spLogout('verify', { idpMetadata: md.current, url, spSloUrl: SP_SLO });
    assert.equal(ok.ok, true, JSON.stringify(ok));
    assert.equal(ok.type, 'LogoutRequest');
    assert.equal(ok.name_id, 'alice@example.com');
    assert.equal(ok.session_index, '_sess-fixed-1');

    const expired = idp.logoutRequestXml({ idpEntityId: IDP, destination: SP_SLO, nameId: 'alice@example.com', sessionIndex: 's', notOnOrAfter: idp.isoAt(-60) });
    const r = await spLogout('verify', { idpMetadata: md.current, query: idp.redirectQuery({ xml: expired, param: 'SAMLRequest', key: keys.idp.key }) });
    assert.equal(r.ok, false, JSON.stringify(r));

    const resp = await spLogout('response', { idpSloUrl: SLO, spEntityId: SP, spKey: keys.sp.key, inResponseTo: ok.id });
    const raw = resp.url.slice(resp.url.indexOf('?') + 1);
    const params = new URLSearchParams(raw);
    assert.ok(createVerify('RSA-SHA256').update(raw.slice(0, raw.lastIndexOf('&Signature='))).verify(readFileSync(keys.sp.cert), params.get('Signature'), 'base64'));
    const xml = inflateRawSync(Buffer.from(params.get('SAMLResponse'), 'base64')).toString('utf8');
    assert.match(xml, new RegExp(`InResponseTo="${ok.id}"`));
    assert.match(xml, /status:Success/);
  });
});
