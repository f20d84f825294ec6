#!/usr/bin/env node
// sp-logout.mjs — the SP side of SAML 2.0 Single Logout over the HTTP-Redirect binding, with
// @node-saml/node-saml. Three subcommands, each printing one JSON line:
//
//   request   build a signed LogoutRequest (SP-initiated SLO)
//     --idp-slo-url URL --sp-entity-id ID --sp-key PEM --name-id V [--name-id-format F]
//     [--session-index S] [--relay-state S] [--unsigned]
//     -> {"url":"<idp-slo-url>?SAMLRequest=..&RelayState=..&SigAlg=..&Signature=..","request_id":"_..."}
//
//   response  build a signed LogoutResponse answering an IdP-initiated LogoutRequest
//     --idp-slo-url URL --sp-entity-id ID --sp-key PEM --in-response-to ID [--relay-state S]
//     [--failure] [--unsigned]
//     -> {"url":"...?SAMLResponse=..&SigAlg=..&Signature=..","response_id":"_..."}
//
//   verify    verify a LogoutResponse or LogoutRequest the IdP sent by HTTP-Redirect
//     --idp-metadata FILE --url URL|--query QUERY [--request-id ID] [--sp-slo-url URL]
//     -> {"ok":true,"type":"LogoutResponse"|"LogoutRequest","id","issuer","destination",
//         "in_response_to","status","name_id","name_id_format","session_index","relay_state"}
//        or {"ok":false,"error":"..."}; exit 0/1.
//     Checks: a Signature and SigAlg = rsa-sha256 are REQUIRED (node-saml alone accepts an
//     unsigned redirect message); the signature over the raw query string (saml-bindings
//     §3.4.4.1) verifies with a signing cert from the metadata (node-saml); Issuer = the
//     metadata's entityID (node-saml idpIssuer + here: required); for a LogoutResponse: Status
//     Success (node-saml) and InResponseTo = --request-id (required when given, absent
//     otherwise); for a LogoutRequest: NotOnOrAfter (node-saml), a NameID; Destination =
//     --sp-slo-url when given.
//
// Redirect URLs are rebuilt so that the raw query is exactly the string node-saml signed (see
// canonicalRedirectUrl in sp-request.mjs).
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { inflateRawSync } from 'node:zlib';
import { SAML } from '@node-saml/node-saml';
import { NS, attr, children, errorText, parseXml, printJson, readIdpMetadata, runMain, usageError } from './saml-common.mjs';
import { canonicalRedirectUrl } from './sp-request.mjs';

const RSA_SHA256 = 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256';
const USAGE = `usage:
  sp-logout.mjs request  --idp-slo-url URL --sp-entity-id ID --sp-key PEM --name-id V [--name-id-format F] [--session-index S] [--relay-state S] [--unsigned]
  sp-logout.mjs response --idp-slo-url URL --sp-entity-id ID --sp-key PEM --in-response-to ID [--relay-state S] [--failure] [--unsigned]
  sp-logout.mjs verify   --idp-metadata FILE (--url URL | --query QUERY) [--request-id ID] [--sp-slo-url URL]`;

const newId = () => `_${randomBytes(20).toString('hex')}`;

function spSaml(o, id) {
  return new SAML({
    entryPoint: o.idpSloUrl,
    logoutUrl: o.idpSloUrl,
    issuer: o.spEntityId,
    callbackUrl: 'urn:unused',
    idpCert: 'unused-for-building',
    ...(o.unsigned ? {} : { privateKey: readFileSync(o.spKey, 'utf8') }),
    signatureAlgorithm: 'sha256',
    generateUniqueId: () => id,
  });
}

/** A signed LogoutRequest redirect URL. */
export async function buildLogoutRequest(o) {
  const id = newId();
  const profile = {
    issuer: o.spEntityId,
    nameID: o.nameId,
    nameIDFormat: o.nameIdFormat ?? 'urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified',
    ...(o.sessionIndex ? { sessionIndex: o.sessionIndex } : {}),
  };
  const url = await spSaml(o, id).getLogoutUrlAsync(profile, o.relayState ?? '', {});
  return { url: canonicalRedirectUrl(url), request_id: id };
}

/** A signed LogoutResponse redirect URL answering the IdP's LogoutRequest `inResponseTo`. */
export async function buildLogoutResponse(o) {
  const id = newId();
  const url = await spSaml(o, id).getLogoutResponseUrlAsync(
    { ID: o.inResponseTo, issuer: '', nameID: '', nameIDFormat: '' },
    o.relayState ?? '',
    {},
    !o.failure,
  );
  return { url: canonicalRedirectUrl(url), response_id: id };
}

/** Verifies an IdP->SP redirect-bound LogoutResponse/LogoutRequest. Never throws. */
export async function verifyLogoutRedirect(o) {
  try {
    return await verifyOrThrow(o);
  } catch (e) {
    return { ok: false, error: errorText(e) };
  }
}

async function verifyOrThrow({ idpMetadata, url, query, requestId, spSloUrl }) {
  const meta = readIdpMetadata(idpMetadata);
  let raw = query ?? (url.includes('?') ? url.slice(url.indexOf('?') + 1) : '');
  raw = raw.replace(/^\?/, '').replace(/#.*$/, '');
  const params = new URLSearchParams(raw);
  const keys = [...params.keys()];
  for (const k of new Set(keys)) {
    if (keys.filter((x) => x === k).length > 1) throw new Error(`duplicate query parameter ${k}`);
  }
  const msgParam = params.has('SAMLRequest') ? 'SAMLRequest' : params.has('SAMLResponse') ? 'SAMLResponse' : null;
  if (!msgParam) throw new Error('no SAMLRequest or SAMLResponse in the query');
  if (params.has('SAMLRequest') && params.has('SAMLResponse')) throw new Error('both SAMLRequest and SAMLResponse present');
  if (!params.has('Signature')) throw new Error('unsigned redirect message (no Signature parameter)');
  if (params.get('SigAlg') !== RSA_SHA256) throw new Error(`SigAlg must be ${RSA_SHA256}, got ${params.get('SigAlg') ?? '(none)'}`);

  // Our own read of the message, for the checks node-saml does not make and for the output.
  const xml = inflateRawSync(Buffer.from(params.get(msgParam), 'base64'), { maxOutputLength: 256 * 1024 }).toString('utf8');
  const root = parseXml(xml, msgParam).documentElement;
  const type = root.localName;
  const expected = msgParam === 'SAMLRequest' ? 'LogoutRequest' : 'LogoutResponse';
  if (root.namespaceURI !== NS.samlp || type !== expected) throw new Error(`${msgParam} is {${root.namespaceURI}}${type}, expected samlp:${expected}`);
  const issuer = children(root, NS.saml, 'Issuer')[0]?.textContent ?? null;
  if (issuer !== meta.entityId) throw new Error(`Issuer mismatch: expected ${meta.entityId}, got ${issuer ?? '(none)'}`);
  const destination = attr(root, 'Destination');
  if (spSloUrl && destination !== spSloUrl) throw new Error(`Destination mismatch: expected ${spSloUrl}, got ${destination ?? '(none)'}`);
  const inResponseTo = attr(root, 'InResponseTo');
  if (type === 'LogoutResponse') {
    if (requestId && inResponseTo !== requestId) throw new Error(`InResponseTo mismatch: expected ${requestId}, got ${inResponseTo ?? '(none)'}`);
    if (!requestId && inResponseTo !== null) throw new Error(`no request outstanding, but LogoutResponse has InResponseTo="${inResponseTo}"`);
  }

  const cache = new Map(requestId ? [[requestId, new Date().toISOString()]] : []);
  const saml = new SAML({
    idpCert: meta.signingCerts,
    idpIssuer: meta.entityId,
    issuer: 'urn:unused',
    callbackUrl: 'urn:unused',
    validateInResponseTo: 'ifPresent',
    cacheProvider: {
      saveAsync: async (k, v) => (cache.set(k, v), { value: v, createdAt: Date.now() }),
      getAsync: async (k) => cache.get(k) ?? null,
      removeAsync: async (k) => {
        const v = cache.get(k) ?? null;
        cache.delete(k);
        return v;
      },
    },
    acceptedClockSkewMs: 1000,
  });
  const container = Object.fromEntries(params.entries());
  const { profile } = await saml.validateRedirectAsync(container, raw);

  const statusCode = children(children(root, NS.samlp, 'Status')[0] ?? root, NS.samlp, 'StatusCode')[0];
  const nameIdEl = children(root, NS.saml, 'NameID')[0];
  if (type === 'LogoutRequest' && !nameIdEl) throw new Error('LogoutRequest has no NameID');
  return {
    ok: true,
    type,
    id: attr(root, 'ID'),
    issuer,
    destination,
    in_response_to: inResponseTo,
    status: statusCode ? attr(statusCode, 'Value') : null,
    name_id: profile?.nameID ?? nameIdEl?.textContent ?? null,
    name_id_format: nameIdEl ? attr(nameIdEl, 'Format') : null,
    session_index: children(root, NS.samlp, 'SessionIndex')[0]?.textContent ?? null,
    relay_state: params.get('RelayState'),
  };
}

async function main() {
  const [cmd, ...rest] = process.argv.slice(2);
  let values;
  try {
    ({ values } = parseArgs({
      args: rest,
      options: {
        'idp-slo-url': { type: 'string' },
        'sp-entity-id': { type: 'string' },
        'sp-key': { type: 'string' },
        'name-id': { type: 'string' },
        'name-id-format': { type: 'string' },
        'session-index': { type: 'string' },
        'relay-state': { type: 'string' },
        'in-response-to': { type: 'string' },
        failure: { type: 'boolean', default: false },
        unsigned: { type: 'boolean', default: false },
        'idp-metadata': { type: 'string' },
        url: { type: 'string' },
        query: { type: 'string' },
        'request-id': { type: 'string' },
        'sp-slo-url': { type: 'string' },
      },
      strict: true,
    }));
  } catch (e) {
    throw usageError(`${errorText(e)}\n${USAGE}`);
  }
  const need = (...ks) => {
    for (const k of ks) if (!values[k]) throw usageError(`${cmd}: missing --${k}\n${USAGE}`);
  };
  const build = {
    idpSloUrl: values['idp-slo-url'],
    spEntityId: values['sp-entity-id'],
    spKey: values['sp-key'],
    relayState: values['relay-state'],
    unsigned: values.unsigned,
  };
  switch (cmd) {
    case 'request':
      need('idp-slo-url', 'sp-entity-id', 'name-id', ...(values.unsigned ? [] : ['sp-key']));
      printJson(
        await buildLogoutRequest({
          ...build,
          nameId: values['name-id'],
          nameIdFormat: values['name-id-format'],
          sessionIndex: values['session-index'],
        }),
      );
      return 0;
    case 'response':
      need('idp-slo-url', 'sp-entity-id', 'in-response-to', ...(values.unsigned ? [] : ['sp-key']));
      printJson(await buildLogoutResponse({ ...build, inResponseTo: values['in-response-to'], failure: values.failure }));
      return 0;
    case 'verify': {
      need('idp-metadata');
      if (!values.url === !values.query) throw usageError(`verify: give exactly one of --url, --query\n${USAGE}`);
      const out = await verifyLogoutRedirect({
        idpMetadata: values['idp-metadata'],
        url: values.url,
        query: values.query,
        requestId: values['request-id'],
        spSloUrl: values['sp-slo-url'],
      });
      printJson(out);
      return out.ok ? 0 : 1;
    }
    default:
      throw usageError(USAGE);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) runMain(main, 30_000);
