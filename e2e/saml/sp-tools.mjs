// sp-tools.mjs — a small Node API over the SAML SP command-line tools in this folder, for the
// e2e tests (node --test): run both Response verifiers (pysaml2 via sp_verify.py in the e2e
// venv, node-saml via sp-verify.mjs) on the same Responses, build SP requests, verify SLO
// messages, and tell why the tools cannot run here (for a clean skip).
//
//   samlToolsSkipReason()        -> null, or why the tools cannot run (xmlsec1/openssl/venv missing)
//   verifyWithBoth(items, dir)   -> [{ id, pysaml2: {...}, nodeSaml: {...} }] (one batch run per tool)
//   genSpKeys(dir, name?)        -> { key, cert, cert_b64 }
//   spRequest(opts)              -> { url, request_id, ... } (sp-request.mjs)
//   spLogout(cmd, opts)          -> parsed JSON line of sp-logout.mjs <cmd>
//
// Every subprocess runs with a timeout. The venv python is LATCHKEY_E2E_PYTHON or
// e2e/.venv/bin/python (created by e2e/run from e2e/python/requirements.txt, which pins pysaml2).
import { execFile } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const SAML_DIR = path.dirname(fileURLToPath(import.meta.url));
export const E2E_DIR = path.dirname(SAML_DIR);
export const PYTHON = process.env.LATCHKEY_E2E_PYTHON || path.join(E2E_DIR, '.venv', 'bin', 'python');

/** Runs a command; resolves {code, stdout, stderr} (a non-zero exit is not an error here). */
export function run(cmd, args, { timeoutMs = 60_000 } = {}) {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 32 * 1024 * 1024, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number') {
        reject(new Error(`${path.basename(cmd)} ${args[0] ?? ''}: ${err.killed ? `timed out after ${timeoutMs} ms` : err.message}\n${stderr}`));
        return;
      }
      resolve({ code: err ? err.code : 0, stdout, stderr });
    });
  });
}

/** Parses a tool's stdout as JSON lines. */
export function jsonLines(stdout) {
  return stdout
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l));
}

async function which(bin) {
  try {
    return (await run('sh', ['-c', `command -v ${bin}`], { timeoutMs: 5000 })).code === 0;
  } catch {
    return false;
  }
}

/** null when the SAML tools can run here, else the reason (for `test(..., { skip })`). */
export async function samlToolsSkipReason() {
  if (!(await which('xmlsec1'))) return 'xmlsec1 not found: install the Debian package xmlsec1 (pysaml2 verifies signatures with it)';
  if (!(await which('openssl'))) return 'openssl not found';
  if (!existsSync(PYTHON)) return `e2e venv python not found at ${PYTHON} (e2e/run creates it from e2e/python/requirements.txt)`;
  try {
    // find_spec, not import: importing saml2.client takes seconds (it builds XML schemas).
    const r = await run(PYTHON, ['-c', 'import importlib.util, sys; sys.exit(importlib.util.find_spec("saml2") is None)'], { timeoutMs: 30_000 });
    if (r.code !== 0) return `pysaml2 is not installed in ${PYTHON}: ${PYTHON} -m pip install -r e2e/python/requirements.txt`;
  } catch (e) {
    return `cannot run ${PYTHON}: ${e.message}`;
  }
  try {
    await import('@node-saml/node-saml');
  } catch (e) {
    return `@node-saml/node-saml is not installed (run npm ci in e2e/): ${e.message}`;
  }
  return null;
}

/**
 * Verifies each item with BOTH verifiers, run concurrently: one node-saml batch process, and
 * `pythonWorkers` pysaml2 batch processes (default 1; pysaml2 needs ~0.4 s per Response here and
 * ~2.5 s of CPU to start, so more workers only help on an idle machine).
 * item: { id?, idpMetadata, spEntityId, acs, requestId?, wantResponseSigned?, clockSkew?, response (base64) }
 * Returns [{ id, pysaml2, nodeSaml }] in input order; each result is the tool's JSON object.
 */
export async function verifyWithBoth(items, dir, { timeoutMs = 120_000, pythonWorkers = 1 } = {}) {
  const lines = items.map((it, i) =>
    JSON.stringify({
      id: it.id ?? String(i),
      idp_metadata: it.idpMetadata,
      sp_entity_id: it.spEntityId,
      acs: it.acs,
      request_id: it.requestId ?? null,
      want_response_signed: Boolean(it.wantResponseSigned),
      ...(it.clockSkew !== undefined ? { clock_skew: it.clockSkew } : {}),
      response: it.response,
    }),
  );
  const tag = `${process.pid}-${Date.now()}-${Math.random().toString(16).slice(2)}`;
  const writeBatch = (name, ls) => {
    const f = path.join(dir, `verify-${name}-${tag}.jsonl`);
    writeFileSync(f, `${ls.join('\n')}\n`);
    return f;
  };
  const all = writeBatch('all', lines);
  const workers = Math.max(1, Math.min(pythonWorkers, lines.length));
  const chunks = Array.from({ length: workers }, (_, w) => lines.filter((_, i) => i % workers === w));
  const pyFiles = workers === 1 ? [all] : chunks.map((c, w) => writeBatch(`py${w}`, c));
  const [nd, ...pys] = await Promise.all([
    run(process.execPath, [path.join(SAML_DIR, 'sp-verify.mjs'), '--batch', all], { timeoutMs }),
    ...pyFiles.map((f) => run(PYTHON, [path.join(SAML_DIR, 'sp_verify.py'), '--batch', f], { timeoutMs })),
  ]);
  const byId = (rs, tool) => {
    const m = new Map();
    for (const r of rs) {
      if (r.code !== 0 && r.code !== 1) throw new Error(`${tool} exited ${r.code}: ${r.stderr}`);
      for (const o of jsonLines(r.stdout)) m.set(o.id, o);
    }
    return m;
  };
  const pyById = byId(pys, 'sp_verify.py');
  const ndById = byId([nd], 'sp-verify.mjs');
  return items.map((it, i) => {
    const id = it.id ?? String(i);
    return { id, pysaml2: pyById.get(id), nodeSaml: ndById.get(id) };
  });
}

/** A throwaway SP key pair made by gen-sp-keys.sh in `dir`. */
export async function genSpKeys(dir, name = 'sp') {
  const r = await run('bash', [path.join(SAML_DIR, 'gen-sp-keys.sh'), dir, name], { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`gen-sp-keys.sh failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

// `--name=value` in one argument: a value that starts with '-' (a random RelayState can) would
// otherwise be taken for an option by parseArgs.
const flag = (name, v) => (v === undefined || v === null || v === false ? [] : v === true ? [`--${name}`] : [`--${name}=${String(v)}`]);

/** sp-request.mjs: { idpSsoUrl, spEntityId, acs, spKey, spCert?, binding?, forceAuthn?, isPassive?, nameIdFormat?, authnContext?, relayState?, unsigned? } */
export async function spRequest(o) {
  const args = [
    path.join(SAML_DIR, 'sp-request.mjs'),
    ...flag('idp-sso-url', o.idpSsoUrl),
    ...flag('sp-entity-id', o.spEntityId),
    ...flag('acs', o.acs),
    ...flag('sp-key', o.spKey),
    ...flag('sp-cert', o.spCert),
    ...flag('binding', o.binding),
    ...flag('force-authn', o.forceAuthn),
    ...flag('is-passive', o.isPassive),
    ...flag('name-id-format', o.nameIdFormat),
    ...flag('authn-context', o.authnContext),
    ...flag('relay-state', o.relayState),
    ...flag('unsigned', o.unsigned),
  ];
  const r = await run(process.execPath, args, { timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`sp-request.mjs exited ${r.code}: ${r.stderr}${r.stdout}`);
  return JSON.parse(r.stdout);
}

/**
 * sp-logout.mjs <cmd> with camelCase options mapped to flags (idpSloUrl -> --idp-slo-url, ...).
 * Resolves the parsed JSON line; for `verify` it also carries `exitCode`.
 */
export async function spLogout(cmd, o) {
  const args = [path.join(SAML_DIR, 'sp-logout.mjs'), cmd];
  for (const [k, v] of Object.entries(o)) args.push(...flag(k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`), v));
  const r = await run(process.execPath, args, { timeoutMs: 30_000 });
  if (r.code !== 0 && !(cmd === 'verify' && r.code === 1)) throw new Error(`sp-logout.mjs ${cmd} exited ${r.code}: ${r.stderr}${r.stdout}`);
  return { ...JSON.parse(r.stdout), exitCode: r.code };
}
