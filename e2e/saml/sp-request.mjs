#!/usr/bin/env node
// sp-request.mjs — builds an SP-initiated, signed SAML 2.0 AuthnRequest with
// @node-saml/node-saml, as a real SP would send it to the IdP.
//
// Usage:
//   node e2e/saml/sp-request.mjs --idp-sso-url URL --sp-entity-id ID --acs URL
//        --sp-key PEM [--sp-cert PEM] [--binding redirect|post] [--force-authn] [--is-passive]
//        [--name-id-format F] [--authn-context CLASSREF] [--relay-state S] [--unsigned]
//
// Output (one JSON line):
//   redirect (default): {"binding":"redirect","url":"<idp-sso-url>?SAMLRequest=..&RelayState=..&SigAlg=..&Signature=..",
//                        "request_id":"_...","relay_state":S|null}
//     Signed per saml-bindings §3.4.4.1 (RSA-SHA256 over the raw query string).
//   post:               {"binding":"post","url":"<idp-sso-url>","saml_request":"<base64, not deflated>",
//                        "request_id":"_...","relay_state":S|null}
//     Enveloped XML signature (RSA-SHA256, SHA-256 digest, exc-c14n; KeyInfo = --sp-cert).
// --unsigned omits the signature (to test an IdP that requires signed requests).
// Without --name-id-format the NameIDPolicy has no Format; without --authn-context the request
// has no RequestedAuthnContext (node-saml would otherwise ask for PasswordProtectedTransport).
//
// node-saml quirk handled here: it signs `querystring.stringify(...)` but builds the URL with
// URLSearchParams, whose escaping differs for some RelayState characters (space, !'()~). The
// query is rebuilt with the signed encoding so the bytes the IdP receives are the bytes signed.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import querystring from 'node:querystring';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { SAML } from '@node-saml/node-saml';
import { errorText, printJson, runMain, usageError } from './saml-common.mjs';

const USAGE =
  'usage: sp-request.mjs --idp-sso-url URL --sp-entity-id ID --acs URL --sp-key PEM [--sp-cert PEM] ' +
  '[--binding redirect|post] [--force-authn] [--is-passive] [--name-id-format F] [--authn-context C] ' +
  '[--relay-state S] [--unsigned]';

/**
 * Rebuilds a node-saml redirect URL so the raw query is exactly what it signed:
 * querystring.stringify of SAMLRequest|SAMLResponse, RelayState, SigAlg (in that order), then
 * Signature. Unsigned URLs are rebuilt the same way for consistency.
 */
export function canonicalRedirectUrl(nodeSamlUrl) {
  const u = new URL(nodeSamlUrl);
  const p = u.searchParams;
  const ordered = {};
  for (const k of ['SAMLRequest', 'SAMLResponse', 'RelayState', 'SigAlg', 'Signature']) {
    if (p.has(k)) ordered[k] = p.get(k);
  }
  for (const k of p.keys()) if (!(k in ordered)) throw new Error(`unexpected query parameter from node-saml: ${k}`);
  u.search = '';
  return `${u.toString()}?${querystring.stringify(ordered)}`;
}

/** Builds the request; returns the output object. */
export async function buildAuthnRequest(o) {
  const requestId = `_${randomBytes(20).toString('hex')}`;
  const post = o.binding === 'post';
  const saml = new SAML({
    entryPoint: o.idpSsoUrl,
    issuer: o.spEntityId,
    callbackUrl: o.acs,
    idpCert: 'unused-for-requests',
    ...(o.unsigned ? {} : { privateKey: readFileSync(o.spKey, 'utf8') }),
    ...(o.spCert && !o.unsigned ? { publicCert: readFileSync(o.spCert, 'utf8') } : {}),
    signatureAlgorithm: 'sha256',
    digestAlgorithm: 'sha256',
    authnRequestBinding: post ? 'HTTP-POST' : 'HTTP-Redirect',
    skipRequestCompression: post, // HTTP-POST carries plain base64, never DEFLATE
    forceAuthn: Boolean(o.forceAuthn),
    passive: Boolean(o.isPassive),
    identifierFormat: o.nameIdFormat ?? null,
    disableRequestedAuthnContext: !o.authnContext,
    ...(o.authnContext ? { authnContext: [o.authnContext] } : {}),
    generateUniqueId: () => requestId,
  });
  const relayState = o.relayState ?? '';
  if (post) {
    const msg = await saml.getAuthorizeMessageAsync(relayState);
    return { binding: 'post', url: o.idpSsoUrl, saml_request: msg.SAMLRequest, request_id: requestId, relay_state: o.relayState ?? null };
  }
  const url = canonicalRedirectUrl(await saml.getAuthorizeUrlAsync(relayState, undefined, {}));
  return { binding: 'redirect', url, request_id: requestId, relay_state: o.relayState ?? null };
}

async function main() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        'idp-sso-url': { type: 'string' },
        'sp-entity-id': { type: 'string' },
        acs: { type: 'string' },
        'sp-key': { type: 'string' },
        'sp-cert': { type: 'string' },
        binding: { type: 'string', default: 'redirect' },
        'force-authn': { type: 'boolean', default: false },
        'is-passive': { type: 'boolean', default: false },
        'name-id-format': { type: 'string' },
        'authn-context': { type: 'string' },
        'relay-state': { type: 'string' },
        unsigned: { type: 'boolean', default: false },
      },
      strict: true,
    }));
  } catch (e) {
    throw usageError(`${errorText(e)}\n${USAGE}`);
  }
  for (const k of ['idp-sso-url', 'sp-entity-id', 'acs']) if (!values[k]) throw usageError(`missing --${k}\n${USAGE}`);
  if (!values.unsigned && !values['sp-key']) throw usageError(`missing --sp-key (or pass --unsigned)\n${USAGE}`);
  if (!['redirect', 'post'].includes(values.binding)) throw usageError('--binding must be redirect or post');
  printJson(
    await buildAuthnRequest({
      idpSsoUrl: values['idp-sso-url'],
      spEntityId: values['sp-entity-id'],
      acs: values.acs,
      spKey: values['sp-key'],
      spCert: values['sp-cert'],
      binding: values.binding,
      forceAuthn: values['force-authn'],
      isPassive: values['is-passive'],
      nameIdFormat: values['name-id-format'],
      authnContext: values['authn-context'],
      relayState: values['relay-state'],
      unsigned: values.unsigned,
    }),
  );
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) runMain(main, 30_000);
