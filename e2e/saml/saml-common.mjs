// Shared helpers for the Node SAML service-provider tools in e2e/saml/ (sp-verify.mjs,
// sp-request.mjs, sp-logout.mjs): reading the IdP's metadata file, a strict XML parser for
// untrusted input, SAML namespace constants, and the one-JSON-line output contract.
//
// Nothing here talks to the IdP; the tools only read files and print JSON.
import { readFileSync } from 'node:fs';
import { DOMParser } from '@xmldom/xmldom';

export const NS = {
  md: 'urn:oasis:names:tc:SAML:2.0:metadata',
  saml: 'urn:oasis:names:tc:SAML:2.0:assertion',
  samlp: 'urn:oasis:names:tc:SAML:2.0:protocol',
  ds: 'http://www.w3.org/2000/09/xmldsig#',
};

export const BINDING = {
  redirect: 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect',
  post: 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST',
};

export const BEARER = 'urn:oasis:names:tc:SAML:2.0:cm:bearer';

/**
 * Parses XML strictly: any parser warning or error throws, and a DOCTYPE is refused outright
 * (SAML never needs one; it is how entity-expansion attacks start).
 */
export function parseXml(text, what = 'XML') {
  if (/<!DOCTYPE/i.test(text)) throw new Error(`${what}: DOCTYPE is not allowed`);
  const fail = (level) => (msg) => {
    throw new Error(`${what}: XML ${level}: ${String(msg).split('\n')[0]}`);
  };
  const doc = new DOMParser({
    errorHandler: { warning: fail('warning'), error: fail('error'), fatalError: fail('fatal error') },
  }).parseFromString(text, 'text/xml');
  if (!doc || !doc.documentElement) throw new Error(`${what}: not an XML document`);
  return doc;
}

/** Element children of `el` (optionally only those with namespace `ns` and local name `name`). */
export function children(el, ns, name) {
  const out = [];
  for (let n = el.firstChild; n; n = n.nextSibling) {
    if (n.nodeType !== 1) continue;
    if (ns && (n.namespaceURI !== ns || n.localName !== name)) continue;
    out.push(n);
  }
  return out;
}

/** All descendant elements of `el` with namespace `ns` and local name `name`, in document order. */
export function descendants(el, ns, name) {
  return Array.from(el.getElementsByTagNameNS(ns, name));
}

/** The attribute's value, or null when the attribute is absent (xmldom returns '' for absent). */
export function attr(el, name) {
  return el.hasAttribute(name) ? el.getAttribute(name) : null;
}

/** Wraps base64 DER (whitespace allowed) as a PEM certificate. */
export function certToPem(b64) {
  const body = b64.replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/]+=*$/.test(body)) throw new Error('metadata: X509Certificate is not base64');
  return `-----BEGIN CERTIFICATE-----\n${body.match(/.{1,64}/g).join('\n')}\n-----END CERTIFICATE-----\n`;
}

/**
 * Reads an IdP metadata file (an EntityDescriptor, or an EntitiesDescriptor holding exactly one
 * entity with an IDPSSODescriptor). Returns
 *   { entityId, signingCerts: [PEM...], sso: {binding: url}, slo: {binding: url} }
 * signingCerts holds every KeyDescriptor with use="signing" or no use attribute, so a rollover
 * metadata document publishing two keys yields both.
 */
export function readIdpMetadata(file) {
  const doc = parseXml(readFileSync(file, 'utf8'), `metadata ${file}`);
  const idps = descendants(doc, NS.md, 'IDPSSODescriptor');
  if (idps.length !== 1) throw new Error(`metadata ${file}: expected exactly one IDPSSODescriptor, found ${idps.length}`);
  const idp = idps[0];
  const entity = idp.parentNode;
  if (!entity || entity.namespaceURI !== NS.md || entity.localName !== 'EntityDescriptor') {
    throw new Error(`metadata ${file}: IDPSSODescriptor is not inside an EntityDescriptor`);
  }
  const entityId = attr(entity, 'entityID');
  if (!entityId) throw new Error(`metadata ${file}: EntityDescriptor has no entityID`);

  const signingCerts = [];
  for (const kd of children(idp, NS.md, 'KeyDescriptor')) {
    const use = attr(kd, 'use');
    if (use !== null && use !== 'signing') continue;
    for (const c of descendants(kd, NS.ds, 'X509Certificate')) signingCerts.push(certToPem(c.textContent));
  }
  if (signingCerts.length === 0) throw new Error(`metadata ${file}: no signing certificate in the IDPSSODescriptor`);

  const endpoints = (name) => {
    const out = {};
    for (const e of children(idp, NS.md, name)) {
      const b = attr(e, 'Binding');
      if (b && !(b in out)) out[b] = attr(e, 'Location');
    }
    return out;
  };
  return { entityId, signingCerts, sso: endpoints('SingleSignOnService'), slo: endpoints('SingleLogoutService') };
}

/** Prints one JSON line on stdout. */
export function printJson(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

/** Error message for the `{"ok":false,"error":...}` line (first line only, no stack). */
export function errorText(e) {
  const msg = e && typeof e === 'object' && 'message' in e ? String(e.message) : String(e);
  return msg.split('\n')[0] || 'unknown error';
}

/**
 * Runs a CLI main: `fn()` resolves to the exit code. Usage errors (thrown with `.usage = true`)
 * exit 2 with the message on stderr; anything else prints `{"ok":false,"error":...}` and exits 1.
 * A watchdog ends the process after `timeoutMs` so a caller never hangs on a tool.
 */
export function runMain(fn, timeoutMs = 60_000) {
  const watchdog = setTimeout(() => {
    printJson({ ok: false, error: `timed out after ${timeoutMs} ms` });
    process.exit(1);
  }, timeoutMs);
  watchdog.unref();
  fn().then(
    (code) => process.exit(code),
    (e) => {
      if (e && e.usage) {
        process.stderr.write(`${e.message}\n`);
        process.exit(2);
      }
      printJson({ ok: false, error: errorText(e) });
      process.exit(1);
    },
  );
}

/** An Error flagged as a usage error (runMain exits 2 with it). */
export function usageError(msg) {
  const e = new Error(msg);
  e.usage = true;
  return e;
}
