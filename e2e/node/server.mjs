// Starts a throw-away Latchkey server for one test file.
//
//   const server = await startServer();
//   server.orgUrl   -> "http://127.0.0.1:PORT"
//   server.token    -> admin API token made with `latchkey token create`
//   await server.stop()  -> SIGTERM, waits for exit, removes the temp dir
//   await server.cli(['signing-key', 'stage'])  -> runs `latchkey <args> --database-url <same DB>`
//                   with the server's environment (master key); resolves {stdout, stderr}
//
// Environment:
//   LATCHKEY_BIN                 server binary (default: ../target/debug/latchkey from e2e/)
//   LATCHKEY_E2E_BACKEND         "sqlite" (default) or "postgres"
//   LATCHKEY_TEST_DATABASE_URL   postgres URL used to create a fresh database per server
//                                (only when LATCHKEY_E2E_BACKEND=postgres)
//   LATCHKEY_E2E_READY_TIMEOUT_MS  how long to wait for /readyz (default 20000)
//   LATCHKEY_E2E_KEEP=1          keep the temp dir (DB + server log) after stop
//
// Options of startServer({ ... }):
//   tokenName     name of the admin token to create (default "e2e")
//   env           extra environment variables for the server process (e.g. rate limits, master key)
//   databaseUrl   use this existing database instead of creating one; it is NOT dropped on stop
//                 (several servers on one database: see startCluster)
//   publicUrl     the --public-url to pass (default: the server's own http://127.0.0.1:PORT), e.g.
//                 a proxy in front of several nodes; requests must then carry that Host (only
//                 /healthz, /readyz, /metrics answer on the node's own address)
// With the postgres backend a fresh LATCHKEY_MASTER_KEY is passed unless env or the caller's
// environment has one (SQLite servers create their own key file).
//
//   const cluster = await startCluster({ nodes: 2, env, publicUrl });   // needs LATCHKEY_TEST_DATABASE_URL
//   cluster.nodes[0].orgUrl, cluster.nodes[1].orgUrl, cluster.token (valid on every node)
//   await cluster.stop()  -> stops every node, then drops the shared database

import { spawn, execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createDatabase, dropDatabase } from './pgdb.mjs';

const E2E_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export function binaryPath() {
  return process.env.LATCHKEY_BIN
    ? path.resolve(process.env.LATCHKEY_BIN)
    : path.resolve(E2E_DIR, '..', 'target', 'debug', 'latchkey');
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function run(bin, args, { timeoutMs = 20000, env = {} } = {}) {
  return new Promise((resolve, reject) => {
    execFile(bin, args, { timeout: timeoutMs, maxBuffer: 1 << 20, env: { ...process.env, ...env } }, (err, stdout, stderr) => {
      if (err) {
        err.message = `${path.basename(bin)} ${args.join(' ')} failed: ${err.message}\nstdout: ${stdout}\nstderr: ${stderr}`;
        reject(err);
      } else {
        resolve({ stdout, stderr });
      }
    });
  });
}

// Keeps the last `max` characters of the server's output for error messages.
class Tail {
  constructor(max = 8000) { this.max = max; this.buf = ''; }
  push(chunk) {
    this.buf += chunk.toString();
    if (this.buf.length > this.max) this.buf = this.buf.slice(-this.max);
  }
  toString() { return this.buf; }
}

const live = new Set();
process.on('exit', () => {
  for (const child of live) {
    try { child.kill('SIGKILL'); } catch { /* already gone */ }
  }
});

async function waitReady(baseUrl, child, tail, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let lastErr = 'no attempt';
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`latchkey serve exited before ready (code=${child.exitCode}, signal=${child.signalCode})\n--- server output ---\n${tail}`);
    }
    try {
      const res = await fetch(`${baseUrl}/readyz`, { signal: AbortSignal.timeout(1000) });
      if (res.status === 200) return;
      lastErr = `HTTP ${res.status}`;
    } catch (e) {
      lastErr = e.cause?.code || e.message;
    }
    await sleep(100);
  }
  throw new Error(`latchkey did not answer 200 on /readyz within ${timeoutMs} ms (last: ${lastErr})\n--- server output ---\n${tail}`);
}

export async function startServer({ tokenName = 'e2e', env = {}, databaseUrl: sharedDatabaseUrl = null, publicUrl = null } = {}) {
  const bin = binaryPath();
  if (!existsSync(bin)) {
    throw new Error(`latchkey binary not found at ${bin}; build it with \`cargo build -p latchkey\` or set LATCHKEY_BIN`);
  }
  const readyTimeout = Number(process.env.LATCHKEY_E2E_READY_TIMEOUT_MS || 20000);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'latchkey-e2e-'));

  let databaseUrl;
  let pgDrop = null;
  const backend = (process.env.LATCHKEY_E2E_BACKEND || 'sqlite').toLowerCase();
  if (sharedDatabaseUrl) {
    databaseUrl = sharedDatabaseUrl;
  } else if (backend === 'postgres') {
    const base = process.env.LATCHKEY_TEST_DATABASE_URL;
    if (!base) throw new Error('LATCHKEY_E2E_BACKEND=postgres needs LATCHKEY_TEST_DATABASE_URL');
    databaseUrl = await createDatabase(base);
    pgDrop = () => dropDatabase(base, databaseUrl);
    // PostgreSQL deployments must be given the master key (SQLite ones create a key file).
    if (!env.LATCHKEY_MASTER_KEY && !process.env.LATCHKEY_MASTER_KEY) env = { ...env, LATCHKEY_MASTER_KEY: newMasterKey() };
  } else if (backend === 'sqlite') {
    databaseUrl = `sqlite://${path.join(dir, 'latchkey.db')}`;
  } else {
    throw new Error(`unknown LATCHKEY_E2E_BACKEND=${backend}`);
  }

  const log = createWriteStream(path.join(dir, 'server.log'));
  let child;
  let tail;
  let baseUrl;
  // A free port can be taken by someone else between probing and binding: retry a few times.
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    baseUrl = `http://127.0.0.1:${port}`;
    tail = new Tail();
    child = spawn(bin, ['serve', '--listen', `127.0.0.1:${port}`, '--public-url', publicUrl ?? baseUrl, '--database-url', databaseUrl], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, RUST_BACKTRACE: '1', ...env },
    });
    live.add(child);
    const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    child.exited = exited;
    exited.then(() => live.delete(child));
    for (const stream of [child.stdout, child.stderr]) {
      stream.on('data', (d) => { tail.push(d); log.write(d); });
    }
    try {
      await waitReady(baseUrl, child, tail, readyTimeout);
      break;
    } catch (e) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
      if (attempt >= 3 || !/address.*in use|AddrInUse/i.test(tail.toString())) {
        if (pgDrop) await pgDrop().catch(() => {});
        log.end();
        throw e;
      }
    }
  }

  let token;
  try {
    const { stdout } = await run(bin, ['token', 'create', '--name', tokenName, '--database-url', databaseUrl], { env });
    const lines = stdout.split('\n').map((l) => l.trim()).filter(Boolean);
    if (lines.length !== 1) {
      throw new Error(`\`latchkey token create\` should print exactly one line, got ${lines.length}: ${JSON.stringify(stdout)}`);
    }
    token = lines[0];
  } catch (e) {
    child.kill('SIGKILL');
    await child.exited;
    if (pgDrop) await pgDrop().catch(() => {});
    log.end();
    throw e;
  }

  let stopped = null;
  return {
    orgUrl: publicUrl ?? baseUrl,
    baseUrl,
    /** The node's own address (differs from orgUrl with publicUrl; only for the operational routes). */
    nodeUrl: baseUrl,
    token,
    databaseUrl,
    dir,
    binary: bin,
    output: () => tail.toString(),
    /** Runs a CLI command of the same binary on the same database and master key. */
    cli: (args, { timeoutMs = 20000 } = {}) => run(bin, [...args, '--database-url', databaseUrl], { env, timeoutMs }),
    /**
     * SIGTERM the server and wait for it to exit. Resolves with {code, signal, clean}.
     * `clean` is true when the process exited by itself with status 0 within the grace period.
     */
    stop({ graceMs = 10000 } = {}) {
      if (stopped) return stopped;
      stopped = (async () => {
        let result;
        if (child.exitCode !== null || child.signalCode !== null) {
          result = { code: child.exitCode, signal: child.signalCode, clean: false, note: 'already exited' };
        } else {
          child.kill('SIGTERM');
          let timer;
          const timedOut = new Promise((r) => { timer = setTimeout(() => r(null), graceMs); });
          result = await Promise.race([child.exited, timedOut]);
          clearTimeout(timer);
          if (result === null) {
            child.kill('SIGKILL');
            const r = await child.exited;
            result = { ...r, clean: false, note: `did not exit within ${graceMs} ms of SIGTERM` };
          } else {
            result = { ...result, clean: result.code === 0 };
          }
        }
        await new Promise((r) => log.end(r));
        if (pgDrop) await pgDrop().catch(() => {});
        if (!process.env.LATCHKEY_E2E_KEEP) await rm(dir, { recursive: true, force: true });
        result.output = tail.toString();
        return result;
      })();
      return stopped;
    },
  };
}

/** A fresh 32-byte master key, base64 (LATCHKEY_MASTER_KEY), for servers that share a database. */
export function newMasterKey() {
  return randomBytes(32).toString('base64');
}

/**
 * Starts `nodes` servers, one after the other, on ONE fresh PostgreSQL database (created from
 * LATCHKEY_TEST_DATABASE_URL) with the same LATCHKEY_MASTER_KEY. `env` is passed to every node.
 */
export async function startCluster({ nodes = 2, env = {}, tokenName = 'e2e', publicUrl = null } = {}) {
  const base = process.env.LATCHKEY_TEST_DATABASE_URL;
  if (!base) throw new Error('startCluster needs LATCHKEY_TEST_DATABASE_URL (a PostgreSQL URL whose role may CREATE DATABASE)');
  const databaseUrl = await createDatabase(base);
  const nodeEnv = { LATCHKEY_MASTER_KEY: newMasterKey(), ...env };
  const started = [];
  const stopAll = async () => {
    const results = [];
    for (const node of started) results.push(await node.stop());
    await dropDatabase(base, databaseUrl).catch(() => {});
    return results;
  };
  try {
    for (let i = 0; i < nodes; i++) {
      started.push(await startServer({ tokenName: `${tokenName}-node${i}`, env: nodeEnv, databaseUrl, publicUrl }));
    }
  } catch (e) {
    await stopAll();
    throw e;
  }
  let stopped = null;
  return {
    databaseUrl,
    masterKey: nodeEnv.LATCHKEY_MASTER_KEY,
    nodes: started,
    token: started[0].token,
    stop() {
      if (!stopped) stopped = stopAll();
      return stopped;
    },
  };
}
