import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { promisify } from 'node:util';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ExecutionContext } from 'ava';
import pg from 'pg';
import { withDefaultUser } from '../../src/config.js';
import { migrateLatest } from '../../src/db/migrate.js';
import { createPool } from '../../src/db/pool.js';
import { withClient } from '../../src/db/with-client.js';

const execFileAsync = promisify(execFile);

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** The server the tests use: TEST_DATABASE_URL's server, or the machine's local PostgreSQL. */
export const serverUrl = withDefaultUser(process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres');

export function urlFor(database: string): string {
  const url = new URL(serverUrl);
  url.pathname = `/${database}`;
  return url.toString();
}

/** Opens a client on `url`, runs `fn`, closes the client (the store's own helper). */
export { withClient };

/** A client for the rest of the test, closed at teardown. */
export async function connect(t: ExecutionContext, url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  client.on('error', () => undefined);
  t.teardown(() => client.end().catch(() => undefined));
  return client;
}

/**
 * A pool for the rest of the test, ended at teardown. pg-pool's end() resolves before its
 * connections have closed, and the teardown's DROP DATABASE ... WITH (FORCE) then terminates
 * them: without a listener, the 'error' an idle connection gets crashed the test's worker.
 */
export function testPool(t: ExecutionContext, url: string, max: number): pg.Pool {
  const pool = createPool({ connectionString: url, max, onError: () => undefined });
  t.teardown(() => pool.end());
  return pool;
}

export function withAdmin<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  return withClient(urlFor('postgres'), fn);
}

/** A name that changes whenever a migration file changes, so a stale template is never reused. */
function migrationsDigest(): string {
  const dir = path.join(root, 'migrations');
  const hash = crypto.createHash('sha256');
  for (const file of fs.readdirSync(dir).sort()) {
    hash.update(file).update(fs.readFileSync(path.join(dir, file)));
  }
  return hash.digest('hex').slice(0, 12);
}

let templatePromise: Promise<string> | undefined;

/** A migrated template database, built once per migrations digest by whichever worker gets there first. */
function migratedTemplate(): Promise<string> {
  templatePromise ??= withAdmin(async (admin) => {
    const name = `cse_template_${migrationsDigest()}`;
    // Workers run in parallel: one builds the template, the others wait on the lock.
    await admin.query('SELECT pg_advisory_lock(727274)');
    try {
      const { rowCount } = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
      if (!rowCount) {
        const building = `${name}_building`;
        await admin.query(`DROP DATABASE IF EXISTS ${building} WITH (FORCE)`);
        await admin.query(`CREATE DATABASE ${building}`);
        await migrateLatest(urlFor(building));
        await admin.query(`ALTER DATABASE ${building} RENAME TO ${name}`);
        // Templates of older migrations are of no use any more: drop them (one in use is left).
        const { rows } = await admin.query<{ datname: string }>(
          `SELECT datname FROM pg_database WHERE datname LIKE 'cse\\_template\\_%' AND datname <> $1 AND datname NOT LIKE '%\\_building'`,
          [name],
        );
        for (const { datname } of rows) await admin.query(`DROP DATABASE IF EXISTS ${datname}`).catch(() => undefined);
      }
      return name;
    } finally {
      await admin.query('SELECT pg_advisory_unlock(727274)');
    }
  });
  return templatePromise;
}

export interface TestDatabase {
  name: string;
  url: string;
}

/**
 * A database of the test's own, dropped when the test ends: tests run in parallel and never see
 * each other's rows. `migrated: false` gives an empty database (for migration tests).
 */
export async function freshDatabase(t: ExecutionContext, options: { migrated?: boolean } = {}): Promise<TestDatabase> {
  const migrated = options.migrated ?? true;
  const name = `cse_test_${crypto.randomBytes(6).toString('hex')}`;
  const template = migrated ? await migratedTemplate() : 'template0';
  await withAdmin((admin) => admin.query(`CREATE DATABASE ${name} TEMPLATE ${template}`));
  t.teardown(() => withAdmin((admin) => admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).then(() => undefined));
  return { name, url: urlFor(name) };
}

export const dropDatabase = (name: string) =>
  withAdmin((admin) => admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).then(() => undefined);

/**
 * A copy of a database nobody is connected to (CREATE DATABASE ... TEMPLATE), dropped when the
 * test ends (or by the caller, without `t`).
 */
export async function copyOf(t: ExecutionContext | undefined, source: string, prefix = ''): Promise<TestDatabase> {
  const name = `cse_test_${prefix}${crypto.randomBytes(6).toString('hex')}`;
  await withAdmin((admin) => admin.query(`CREATE DATABASE ${name} TEMPLATE ${source}`));
  t?.teardown(() => dropDatabase(name));
  return { name, url: urlFor(name) };
}

/**
 * A migrated database holding `fill`'s events in its log, built once per test file (the first
 * caller builds it) and dropped after the file's tests: tests copy it (copyOf) instead of
 * appending the same log again.
 */
export function seededOnce(
  test: { after: { always: (fn: () => Promise<void>) => void } },
  prefix: string,
  fill: (url: string) => Promise<void>,
): (t: ExecutionContext) => Promise<string> {
  let seeded: Promise<string> | undefined;
  test.after.always(async () => {
    if (seeded) await dropDatabase(await seeded.catch(() => ''));
  });
  return (t) =>
    (seeded ??= (async () => {
      const migrated = await freshDatabase(t);
      const seed = await copyOf(undefined, migrated.name, prefix);
      await fill(seed.url);
      return seed.name;
    })());
}

/**
 * A PostgreSQL server of the test's own, for server settings the machine's server must keep as
 * they are (autovacuum every second, say): initdb into a temporary directory (as the `postgres`
 * user when the tests run as root, which initdb refuses), started on a free port with `settings`;
 * stopped and removed at teardown. Its URL, to the database `postgres`. The tools run without
 * blocking the worker's other tests; a port taken between its choice and the start is chosen again.
 */
export async function privateServer(t: ExecutionContext, settings: Record<string, string>): Promise<string> {
  const bindir = (await execFileAsync('pg_config', ['--bindir'])).stdout.trim();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cse-private-pg-'));
  const asRoot = process.getuid?.() === 0;
  const run = (tool: string, args: string[]) =>
    asRoot ? execFileAsync('runuser', ['-u', 'postgres', '--', path.join(bindir, tool), ...args]) : execFileAsync(path.join(bindir, tool), args);
  if (asRoot) {
    const id = async (flag: string) => Number((await execFileAsync('id', [flag, 'postgres'])).stdout);
    fs.chownSync(dir, await id('-u'), await id('-g'));
  }
  const data = path.join(dir, 'data');
  t.teardown(async () => {
    await run('pg_ctl', ['-D', data, '-m', 'immediate', 'stop']).catch(() => undefined); // not running
    fs.rmSync(dir, { recursive: true, force: true });
  });
  await run('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync']);
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const options = ['-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off', ...Object.entries(settings).flatMap(([name, value]) => ['-c', `${name}=${value}`])];
    try {
      await run('pg_ctl', ['-D', data, '-l', path.join(dir, 'log'), '-w', '-o', options.join(' '), 'start']);
      return `postgres://postgres@127.0.0.1:${port}/postgres`;
    } catch (error) {
      if (attempt >= 3) throw new Error(`the private PostgreSQL server did not start: ${fs.existsSync(path.join(dir, 'log')) ? fs.readFileSync(path.join(dir, 'log'), 'utf8') : String(error)}`);
    }
  }
}

/** A TCP port free on 127.0.0.1 at the time of asking. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}
