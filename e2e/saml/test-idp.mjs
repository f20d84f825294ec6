// test-idp.mjs — a throwaway, test-only SAML IdP used by e2e/node/saml-tools.test.mjs to prove
// the SP tools (sp_verify.py, sp-verify.mjs, sp-logout.mjs) work before Latchkey's own IdP
// exists, and to produce deliberately broken Responses they must reject. It is NOT Latchkey's
// IdP and shares no code with it: Responses are built from a string template here and signed by
// the `xmlsec1` CLI (libxmlsec1), so the verifiers are checked against an independent signer.
//
// Exports:
//   makeKeyPair(dir, name)        RSA-2048 key + self-signed cert via openssl -> {key, cert, certB64}
//   idpMetadata({entityId, certs, ssoUrl, sloUrl}) -> metadata XML (one signing KeyDescriptor per cert)
//   buildResponse(opts)           -> unsigned Response XML with Signature templates
//   signResponse(xml, {key, cert, dir}) -> Promise of the signed XML (xmlsec1, Assertion then Response)
//   makeResponse(opts)            build + sign; Promise of base64 (as an SP receives it)
//   redirectQuery(...)            a signed HTTP-Redirect query (LogoutRequest/LogoutResponse)
//   logoutRequestXml / logoutResponseXml   SLO messages from the IdP
import { execFile, execFileSync } from 'node:child_process';
import { createSign, randomBytes } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deflateRawSync } from 'node:zlib';

const TIMEOUT_MS = 20_000;

const escText = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const escAttr = (s) => escText(s).replace(/"/g, '&quot;');
const a = (name, v) => (v === undefined || v === null ? '' : ` ${name}="${escAttr(v)}"`);

export const newId = () => `_${randomBytes(20).toString('hex')}`;
export const isoAt = (offsetSeconds = 0) => new Date(Date.now() + offsetSeconds * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');

/** Generates an RSA-2048 key and a self-signed certificate with openssl in `dir`. */
export function makeKeyPair(dir, name) {
  const key = join(dir, `${name}.key.pem`);
  const cert = join(dir, `${name}.cert.pem`);
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', `/CN=${name}`],
    { stdio: 'ignore', timeout: TIMEOUT_MS },
  );
  const certB64 = readFileSync(cert, 'utf8').replace(/-----[^-]+-----/g, '').replace(/\s+/g, '');
  return { key, cert, certB64 };
}

/** IdP metadata with one signing KeyDescriptor per certificate (base64 DER). */
export function idpMetadata({ entityId, certs, ssoUrl, sloUrl }) {
  const kds = certs
    .map(
      (c) =>
        '<md:KeyDescriptor use="signing"><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#">' +
        `<ds:X509Data><ds:X509Certificate>${c}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>`,
    )
    .join('');
  return (
    `<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata"${a('entityID', entityId)}>` +
    '<md:IDPSSODescriptor WantAuthnRequestsSigned="false" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">' +
    kds +
    `<md:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"${a('Location', sloUrl)}/>` +
    '<md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress</md:NameIDFormat>' +
    `<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"${a('Location', ssoUrl)}/>` +
    `<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"${a('Location', ssoUrl)}/>` +
    '</md:IDPSSODescriptor></md:EntityDescriptor>'
  );
}

const sigTemplate = (id) =>
  '<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo>' +
  '<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>' +
  '<ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>' +
  `<ds:Reference URI="#${id}"><ds:Transforms>` +
  '<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>' +
  '<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms>' +
  '<ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue/></ds:Reference>' +
  '</ds:SignedInfo><ds:SignatureValue/><ds:KeyInfo><ds:X509Data/></ds:KeyInfo></ds:Signature>';

/**
 * An unsigned Response with Signature templates (one in the Response when `signResponse`, one
 * in the Assertion when `signAssertion`). Every field can be overridden to build bad cases;
 * `null` for destination/recipient/inResponseTo/scdInResponseTo omits the attribute.
 */
export function buildResponse({
  idpEntityId,
  spEntityId,
  acs,
  destination = acs,
  recipient = acs,
  audience = spEntityId,
  responseIssuer = idpEntityId,
  assertionIssuer = idpEntityId,
  inResponseTo = null,
  scdInResponseTo = inResponseTo,
  nameId = 'alice@example.com',
  nameIdFormat = 'urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress',
  sessionIndex = newId(),
  attributes = { email: ['alice@example.com'], groups: ['staff', 'admins'] },
  notBefore = isoAt(-30),
  notOnOrAfter = isoAt(300),
  scdNotOnOrAfter = notOnOrAfter,
  signAssertion = true,
  signResponse = true,
  responseId = newId(),
  assertionId = newId(),
}) {
  const now = isoAt(0);
  const attrXml = Object.entries(attributes)
    .map(
      ([n, vs]) =>
        `<saml:Attribute${a('Name', n)} NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:basic">` +
        vs.map((v) => `<saml:AttributeValue>${escText(v)}</saml:AttributeValue>`).join('') +
        '</saml:Attribute>',
    )
    .join('');
  const assertion =
    `<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"${a('ID', assertionId)}${a('IssueInstant', now)} Version="2.0">` +
    `<saml:Issuer>${escText(assertionIssuer)}</saml:Issuer>` +
    (signAssertion ? sigTemplate(assertionId) : '') +
    `<saml:Subject><saml:NameID${a('Format', nameIdFormat)}>${escText(nameId)}</saml:NameID>` +
    '<saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer">' +
    `<saml:SubjectConfirmationData${a('InResponseTo', scdInResponseTo)}${a('NotOnOrAfter', scdNotOnOrAfter)}${a('Recipient', recipient)}/>` +
    '</saml:SubjectConfirmation></saml:Subject>' +
    `<saml:Conditions${a('NotBefore', notBefore)}${a('NotOnOrAfter', notOnOrAfter)}>` +
    `<saml:AudienceRestriction><saml:Audience>${escText(audience)}</saml:Audience></saml:AudienceRestriction></saml:Conditions>` +
    `<saml:AuthnStatement${a('AuthnInstant', now)}${a('SessionIndex', sessionIndex)}><saml:AuthnContext>` +
    '<saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef>' +
    '</saml:AuthnContext></saml:AuthnStatement>' +
    (attrXml ? `<saml:AttributeStatement>${attrXml}</saml:AttributeStatement>` : '') +
    '</saml:Assertion>';
  return (
    `<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol"${a('Destination', destination)}${a('ID', responseId)}` +
    `${a('InResponseTo', inResponseTo)}${a('IssueInstant', now)} Version="2.0">` +
    `<saml:Issuer xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion">${escText(responseIssuer)}</saml:Issuer>` +
    (signResponse ? sigTemplate(responseId) : '') +
    '<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>' +
    assertion +
    '</samlp:Response>'
  );
}

function xmlsecSign(xml, { key, cert, dir, nodeXpath }) {
  const input = join(dir, `unsigned-${randomBytes(6).toString('hex')}.xml`);
  writeFileSync(input, xml);
  const args = [
    '--sign',
    '--privkey-pem', `${key},${cert}`,
    '--id-attr:ID', 'urn:oasis:names:tc:SAML:2.0:protocol:Response',
    '--id-attr:ID', 'urn:oasis:names:tc:SAML:2.0:assertion:Assertion',
    '--node-xpath', nodeXpath,
    input,
  ];
  return new Promise((resolve, reject) => {
    execFile('xmlsec1', args, { encoding: 'utf8', timeout: TIMEOUT_MS, maxBuffer: 8 * 1024 * 1024 }, (err, stdout, stderr) => {
      rmSync(input, { force: true });
      if (err) reject(new Error(`xmlsec1 --sign failed: ${err.killed ? 'timed out' : err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

/** Fills the Signature templates with xmlsec1: the Assertion's first, then the Response's. */
export async function signResponse(xml, { key, cert, dir }) {
  let out = xml;
  if (/<saml:Assertion[^>]*>(?:(?!<\/saml:Assertion>).)*<ds:Signature/s.test(out)) {
    out = await xmlsecSign(out, { key, cert, dir, nodeXpath: "//*[local-name()='Assertion']/*[local-name()='Signature']" });
  }
  if (/<samlp:Response[^>]*><saml:Issuer[^>]*>[^<]*<\/saml:Issuer><ds:Signature/.test(out)) {
    out = await xmlsecSign(out, { key, cert, dir, nodeXpath: "/*[local-name()='Response']/*[local-name()='Signature']" });
  }
  return out;
}

/** Builds and signs a Response; `tamper(xml)` may edit the signed XML. Resolves base64. */
export async function makeResponse({ key, cert, dir, tamper, ...opts }) {
  let xml = await signResponse(buildResponse(opts), { key, cert, dir });
  if (tamper) xml = tamper(xml);
  return Buffer.from(xml, 'utf8').toString('base64');
}

/**
 * A signed HTTP-Redirect query (saml-bindings §3.4.4.1) carrying `xml` as SAMLRequest or
 * SAMLResponse: DEFLATE, base64, then RSA-SHA256 over `SAML...=..&RelayState=..&SigAlg=..`.
 * `key` null leaves it unsigned. Returns the query string (no leading '?').
 */
export function redirectQuery({ xml, param, relayState, key }) {
  const enc = encodeURIComponent;
  let q = `${param}=${enc(deflateRawSync(Buffer.from(xml, 'utf8')).toString('base64'))}`;
  if (relayState) q += `&RelayState=${enc(relayState)}`;
  if (!key) return q;
  q += `&SigAlg=${enc('http://www.w3.org/2001/04/xmldsig-more#rsa-sha256')}`;
  const sig = createSign('RSA-SHA256').update(q).sign(readFileSync(key, 'utf8'), 'base64');
  return `${q}&Signature=${enc(sig)}`;
}

/** A LogoutResponse from the IdP (for sp-logout.mjs verify). */
export function logoutResponseXml({ idpEntityId, destination, inResponseTo, status = 'Success', id = newId() }) {
  return (
    `<samlp:LogoutResponse xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol"${a('Destination', destination)}${a('ID', id)}` +
    `${a('InResponseTo', inResponseTo)}${a('IssueInstant', isoAt(0))} Version="2.0">` +
    `<saml:Issuer xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion">${escText(idpEntityId)}</saml:Issuer>` +
    `<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:${status}"/></samlp:Status>` +
    '</samlp:LogoutResponse>'
  );
}

/** A LogoutRequest from the IdP (IdP-initiated SLO, for sp-logout.mjs verify). */
export function logoutRequestXml({ idpEntityId, destination, nameId, sessionIndex, id = newId(), notOnOrAfter = isoAt(300) }) {
  return (
    `<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol"${a('Destination', destination)}${a('ID', id)}` +
    `${a('IssueInstant', isoAt(0))}${a('NotOnOrAfter', notOnOrAfter)} Version="2.0">` +
    `<saml:Issuer xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion">${escText(idpEntityId)}</saml:Issuer>` +
    `<saml:NameID xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress">${escText(nameId)}</saml:NameID>` +
    `<samlp:SessionIndex>${escText(sessionIndex)}</samlp:SessionIndex>` +
    '</samlp:LogoutRequest>'
  );
}
