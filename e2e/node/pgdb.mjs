// Creates and drops throw-away PostgreSQL databases for the e2e servers.
//
// Library:  createDatabase(baseUrl) -> URL of a new, empty database on the same server
//           dropDatabase(baseUrl, dbUrl)
// CLI (used by the Python suite so that there is one implementation):
//   node node/pgdb.mjs create BASE_URL        prints the new database URL
//   node node/pgdb.mjs drop BASE_URL DB_URL
//
// BASE_URL is any database the role may connect to (e.g. postgres://u:p@127.0.0.1:5432/postgres);
// the role needs CREATEDB.

import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';

async function connect(url) {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  return client;
}

export async function createDatabase(baseUrl) {
  const name = `latchkey_e2e_${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`;
  const client = await connect(baseUrl);
  try {
    await client.query(`CREATE DATABASE ${name}`);
  } finally {
    await client.end();
  }
  const u = new URL(baseUrl);
  u.pathname = `/${name}`;
  return u.toString();
}

export async function dropDatabase(baseUrl, dbUrl) {
  const name = decodeURIComponent(new URL(dbUrl).pathname.slice(1));
  if (!/^latchkey_e2e_[a-z0-9_]+$/.test(name)) {
    throw new Error(`refusing to drop database ${JSON.stringify(name)}: not an e2e database`);
  }
  const client = await connect(baseUrl);
  try {
    try {
      await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    } catch {
      // PostgreSQL < 13 has no WITH (FORCE).
      await client.query(`DROP DATABASE IF EXISTS ${name}`);
    }
  } finally {
    await client.end();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [cmd, base, db] = process.argv.slice(2);
  try {
    if (cmd === 'create' && base) {
      process.stdout.write(`${await createDatabase(base)}\n`);
    } else if (cmd === 'drop' && base && db) {
      await dropDatabase(base, db);
    } else {
      process.stderr.write('usage: pgdb.mjs create BASE_URL | drop BASE_URL DB_URL\n');
      process.exit(2);
    }
  } catch (e) {
    process.stderr.write(`${e.message}\n`);
    process.exit(1);
  }
}
