#!/usr/bin/env node
// sp-verify.mjs — verifies a SAML 2.0 Response (as POSTed to an ACS) the way a strict service
// provider built on @node-saml/node-saml (xml-crypto signature stack) would. Twin of
// sp_verify.py (pysaml2, libxmlsec1 stack): same arguments, same JSON output, same contract.
//
// Usage:
//   node e2e/saml/sp-verify.mjs --idp-metadata FILE --sp-entity-id ID --acs URL
//        [--request-id ID] [--want-response-signed] [--clock-skew SECONDS]
//        --response-file FILE            (the base64 SAMLResponse form value, as posted)
//   node e2e/saml/sp-verify.mjs --batch FILE.jsonl
//        one JSON object per line: {"idp_metadata","sp_entity_id","acs","request_id"?,
//        "want_response_signed"?, "clock_skew"?, "response" (base64) | "response_file", "id"?}
//
// Output: one JSON line per response:
//   {"ok":true,"name_id","name_id_format","session_index","attributes":{name:[values]},
//    "issuer","in_response_to"}            or {"ok":false,"error":"..."}   ("id" echoed in batch)
// Exit code: 0 when every response verified, 1 otherwise, 2 on a usage error.
//
// node-saml's own checks, as configured here: the Assertion signature (and the Response
// signature with --want-response-signed) with the key(s) pinned from the metadata's signing
// certificates (every one, so rollover metadata works); Audience = SP entity id; Conditions
// NotBefore/NotOnOrAfter with the given skew (default 1 s; node-saml's default is 0);
// InResponseTo against a cache seeded with --request-id (validateInResponseTo 'always').
// node-saml does not check Destination, Recipient, the SubjectConfirmationData window, the
// Issuer of a Response or whether an unsolicited Response carries InResponseTo, so this script
// checks those itself — on the signature-verified Assertion returned by node-saml — so that both
// tools enforce one contract:
//   * Response/@Destination present and equal to --acs;
//   * Response and Assertion Issuer equal to the metadata's entityID;
//   * a bearer SubjectConfirmation whose SubjectConfirmationData has Recipient = --acs, a
//     NotOnOrAfter in the future, and InResponseTo = --request-id (or none when unsolicited);
//   * without --request-id, no InResponseTo anywhere (the Response must be unsolicited);
//   * exactly one AuthnStatement.
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { SAML } from '@node-saml/node-saml';
import {
  BEARER,
  NS,
  attr,
  children,
  errorText,
  parseXml,
  printJson,
  readIdpMetadata,
  runMain,
  usageError,
} from './saml-common.mjs';

const USAGE =
  'usage: sp-verify.mjs --idp-metadata FILE --sp-entity-id ID --acs URL [--request-id ID] ' +
  '[--want-response-signed] [--clock-skew SECONDS] --response-file FILE | --batch FILE.jsonl';

/** A CacheProvider for node-saml holding only the request ids we seed it with. */
function seededCache(requestId) {
  const m = new Map();
  if (requestId) m.set(requestId, new Date().toISOString());
  return {
    async saveAsync(key, value) {
      m.set(key, value);
      return { value, createdAt: Date.now() };
    },
    async getAsync(key) {
      return m.get(key) ?? null;
    },
    async removeAsync(key) {
      const v = m.get(key) ?? null;
      m.delete(key);
      return v;
    },
  };
}

const ms = (s, what) => {
  const t = Date.parse(s);
  if (Number.isNaN(t)) throw new Error(`${what} is not a valid time: ${s}`);
  return t;
};

/**
 * Verifies one base64 SAMLResponse. Returns the result object (never throws).
 * opts: { idpMetadata, spEntityId, acs, requestId?, wantResponseSigned?, clockSkew? (s), response }
 */
export async function verifyResponse(opts) {
  try {
    return await verifyOrThrow(opts);
  } catch (e) {
    return { ok: false, error: errorText(e) };
  }
}

async function verifyOrThrow({ idpMetadata, spEntityId, acs, requestId, wantResponseSigned, clockSkew, response }) {
  for (const [k, v] of Object.entries({ idpMetadata, spEntityId, acs, response })) {
    if (typeof v !== 'string' || v === '') throw new Error(`missing ${k}`);
  }
  requestId = requestId || null;
  const skewMs = Math.round(1000 * (clockSkew ?? 1));
  const meta = readIdpMetadata(idpMetadata);
  const b64 = response.trim();
  const xml = Buffer.from(b64, 'base64').toString('utf8');

  // Pre-checks on the raw Response element (these only ever add reasons to reject).
  const doc = parseXml(xml, 'SAMLResponse');
  const root = doc.documentElement;
  if (root.namespaceURI !== NS.samlp || root.localName !== 'Response') {
    throw new Error(`not a samlp:Response: {${root.namespaceURI}}${root.localName}`);
  }
  const destination = attr(root, 'Destination');
  if (destination !== acs) throw new Error(`Destination mismatch: expected ${acs}, got ${destination ?? '(none)'}`);
  const inResponseTo = attr(root, 'InResponseTo');
  if (requestId === null && inResponseTo !== null) {
    throw new Error(`unsolicited Response expected, but it has InResponseTo="${inResponseTo}"`);
  }
  if (requestId !== null && inResponseTo !== requestId) {
    throw new Error(`InResponseTo mismatch: expected ${requestId}, got ${inResponseTo ?? '(none)'}`);
  }
  const respIssuer = children(root, NS.saml, 'Issuer')[0];
  if (respIssuer && respIssuer.textContent !== meta.entityId) {
    throw new Error(`Response Issuer mismatch: expected ${meta.entityId}, got ${respIssuer.textContent}`);
  }

  const saml = new SAML({
    idpCert: meta.signingCerts,
    idpIssuer: meta.entityId,
    issuer: spEntityId,
    audience: spEntityId,
    callbackUrl: acs,
    wantAssertionsSigned: true,
    wantAuthnResponseSigned: Boolean(wantResponseSigned),
    validateInResponseTo: requestId ? 'always' : 'never',
    cacheProvider: seededCache(requestId),
    acceptedClockSkewMs: skewMs,
  });
  const { profile } = await saml.validatePostResponseAsync({ SAMLResponse: b64 });
  if (!profile) throw new Error('node-saml returned no profile (no assertion)');

  // Post-checks on the Assertion that node-saml verified (never on the raw document).
  const assertion = parseXml(profile.getAssertionXml(), 'verified Assertion').documentElement;
  if (assertion.namespaceURI !== NS.saml || assertion.localName !== 'Assertion') {
    throw new Error('verified content is not a saml:Assertion');
  }
  const issuer = children(assertion, NS.saml, 'Issuer')[0]?.textContent ?? null;
  if (issuer !== meta.entityId) throw new Error(`Assertion Issuer mismatch: expected ${meta.entityId}, got ${issuer}`);

  const subject = children(assertion, NS.saml, 'Subject')[0];
  if (!subject) throw new Error('Assertion has no Subject');
  const nameIdEl = children(subject, NS.saml, 'NameID')[0];
  if (!nameIdEl) throw new Error('Assertion Subject has no NameID');

  const now = Date.now();
  const problems = [];
  let confirmed = false;
  for (const sc of children(subject, NS.saml, 'SubjectConfirmation')) {
    if (attr(sc, 'Method') !== BEARER) {
      problems.push(`SubjectConfirmation Method ${attr(sc, 'Method')} is not bearer`);
      continue;
    }
    const scd = children(sc, NS.saml, 'SubjectConfirmationData')[0];
    if (!scd) {
      problems.push('bearer SubjectConfirmation has no SubjectConfirmationData');
      continue;
    }
    const recipient = attr(scd, 'Recipient');
    const notOnOrAfter = attr(scd, 'NotOnOrAfter');
    const notBefore = attr(scd, 'NotBefore');
    const scdIrt = attr(scd, 'InResponseTo');
    if (recipient !== acs) problems.push(`Recipient mismatch: expected ${acs}, got ${recipient ?? '(none)'}`);
    else if (notOnOrAfter === null) problems.push('SubjectConfirmationData has no NotOnOrAfter');
    else if (now - skewMs >= ms(notOnOrAfter, 'SubjectConfirmationData NotOnOrAfter')) {
      problems.push(`SubjectConfirmationData expired (NotOnOrAfter ${notOnOrAfter})`);
    } else if (notBefore !== null && now + skewMs < ms(notBefore, 'SubjectConfirmationData NotBefore')) {
      problems.push(`SubjectConfirmationData not yet valid (NotBefore ${notBefore})`);
    } else if (scdIrt !== requestId) {
      problems.push(`SubjectConfirmationData InResponseTo mismatch: expected ${requestId ?? '(none)'}, got ${scdIrt ?? '(none)'}`);
    } else confirmed = true;
  }
  if (!confirmed) throw new Error(problems[0] ?? 'Assertion has no SubjectConfirmation');

  const authnStatements = children(assertion, NS.saml, 'AuthnStatement');
  if (authnStatements.length !== 1) throw new Error(`expected exactly one AuthnStatement, found ${authnStatements.length}`);

  const attributes = {};
  for (const st of children(assertion, NS.saml, 'AttributeStatement')) {
    for (const a of children(st, NS.saml, 'Attribute')) {
      const name = attr(a, 'Name');
      const values = children(a, NS.saml, 'AttributeValue').map((v) => v.textContent);
      attributes[name] = (attributes[name] ?? []).concat(values);
    }
  }

  return {
    ok: true,
    name_id: nameIdEl.textContent,
    name_id_format: attr(nameIdEl, 'Format'),
    session_index: attr(authnStatements[0], 'SessionIndex'),
    attributes,
    issuer,
    in_response_to: inResponseTo,
  };
}

/** Maps one batch-file object (snake_case, as for sp_verify.py) to verifyResponse options. */
function fromBatchObject(o) {
  if (!o || typeof o !== 'object') throw new Error('batch line is not a JSON object');
  let response = o.response;
  if (response == null && o.response_file) response = readFileSync(o.response_file, 'utf8');
  return {
    idpMetadata: o.idp_metadata,
    spEntityId: o.sp_entity_id,
    acs: o.acs,
    requestId: o.request_id ?? null,
    wantResponseSigned: Boolean(o.want_response_signed),
    clockSkew: o.clock_skew ?? undefined,
    response,
  };
}

async function main() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        'idp-metadata': { type: 'string' },
        'sp-entity-id': { type: 'string' },
        acs: { type: 'string' },
        'request-id': { type: 'string' },
        'want-response-signed': { type: 'boolean', default: false },
        'clock-skew': { type: 'string' },
        'response-file': { type: 'string' },
        batch: { type: 'string' },
      },
      strict: true,
    }));
  } catch (e) {
    throw usageError(`${errorText(e)}\n${USAGE}`);
  }

  if (values.batch) {
    let allOk = true;
    const lines = readFileSync(values.batch, 'utf8').split('\n').filter((l) => l.trim() !== '');
    for (const line of lines) {
      let out;
      let id;
      try {
        const o = JSON.parse(line);
        id = o?.id;
        out = await verifyResponse(fromBatchObject(o));
      } catch (e) {
        out = { ok: false, error: errorText(e) };
      }
      if (id !== undefined) out = { id, ...out };
      allOk &&= out.ok;
      printJson(out);
    }
    return allOk ? 0 : 1;
  }

  for (const k of ['idp-metadata', 'sp-entity-id', 'acs', 'response-file']) {
    if (!values[k]) throw usageError(`missing --${k}\n${USAGE}`);
  }
  const clockSkew = values['clock-skew'] === undefined ? undefined : Number(values['clock-skew']);
  if (clockSkew !== undefined && !(clockSkew >= 0)) throw usageError('--clock-skew must be a number of seconds >= 0');
  const out = await verifyResponse({
    idpMetadata: values['idp-metadata'],
    spEntityId: values['sp-entity-id'],
    acs: values.acs,
    requestId: values['request-id'] ?? null,
    wantResponseSigned: values['want-response-signed'],
    clockSkew,
    response: readFileSync(values['response-file'], 'utf8'),
  });
  printJson(out);
  return out.ok ? 0 : 1;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) runMain(main, 120_000);
