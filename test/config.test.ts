/** Configuration from the environment (contract.md, "Configuration"): defaults, and clear errors. */
import os from 'node:os';
import test from 'ava';
import { describeError } from '../src/cli/runtime.js';
import { loadConfig } from '../src/config.js';
import { keepingOptions } from '../src/db/pool.js';
import { openEventLog } from '../src/log/index.js';

test('the contract\'s defaults, with the operating-system user named; an empty variable is unset', (t) => {
  const user = os.userInfo().username;
  const defaults = { databaseUrl: `postgres://${user}@127.0.0.1:5432/conda_store_events`, eventLog: 'postgres', eventStoreDbUrl: undefined, natsUrl: 'nats://127.0.0.1:4222', logLevel: 'info' };
  t.deepEqual(loadConfig({}), defaults);
  t.deepEqual(loadConfig({ DATABASE_URL: '', EVENT_LOG: '', NATS_URL: '', LOG_LEVEL: '' }), defaults);
  t.like(loadConfig({ DATABASE_URL: 'postgres://app@db:5433/cs', NATS_URL: 'nats://broker:4222', LOG_LEVEL: 'debug' }), {
    databaseUrl: 'postgres://app@db:5433/cs', natsUrl: 'nats://broker:4222', logLevel: 'debug',
  });
});

test('EVENT_LOG other than postgres is refused, eventstoredb with what to use (its backend is not written yet)', (t) => {
  t.throws(() => loadConfig({ EVENT_LOG: 'mysql' }), { message: 'EVENT_LOG must be "postgres" or "eventstoredb", got "mysql"' });
  const unavailable = { message: 'EVENT_LOG=eventstoredb: the EventStoreDB backend is not available in this version; use EVENT_LOG=postgres' };
  t.throws(() => loadConfig({ EVENT_LOG: 'eventstoredb' }), unavailable);
  t.throws(() => loadConfig({ EVENT_LOG: 'eventstoredb', EVENTSTOREDB_URL: 'esdb://127.0.0.1:2113?tls=false' }), unavailable);
  const config = { ...loadConfig({}), eventLog: 'eventstoredb' as const, eventStoreDbUrl: 'esdb://127.0.0.1:2113?tls=false' };
  t.throws(() => openEventLog(config), unavailable);
});

// Regression (found by a review): node-postgres read a DATABASE_URL without a scheme as a database
// name on a host called "base" (getaddrinfo ENOTFOUND base), a port that is not a number as a bare
// "Invalid URL", and a mysql:// URL as a PostgreSQL server's.
test('a DATABASE_URL that is not a PostgreSQL URL is refused, naming the variable, without its password', (t) => {
  for (const [value, why] of [
    ['127.0.0.1:5432/db', 'no postgres:// scheme'],
    ['not a url', 'no postgres:// scheme'],
    ['mysql://app:secret@db/cs', 'no postgres:// scheme'],
    ['postgres://app:secret@db:notaport/cs', 'Invalid URL'],
    // A password with an unencoded '/': the URL does not parse, and no part of it can be masked.
    ['postgres://app:se/cret@db/cs', 'Invalid URL'],
  ]) {
    const error = t.throws(() => loadConfig({ DATABASE_URL: value }));
    t.is(error?.message, `DATABASE_URL must be a PostgreSQL URL such as postgres://user@host:5432/database (${why}; characters such as / @ : in a password must be percent-encoded)`);
    t.false(error?.message.includes('secret') || error?.message.includes('cret'));
  }
  t.is(loadConfig({ DATABASE_URL: 'postgresql://app@db/cs' }).databaseUrl, 'postgresql://app@db/cs');
  t.is(loadConfig({ DATABASE_URL: 'socket:/run/postgresql?db=cs&user=app' }).databaseUrl, 'socket:/run/postgresql?db=cs&user=app');
});

// Regression (found by a review): the operating-system user was written into a URL without a user
// even when PGUSER named another, which libpq, psql and node-postgres take first.
test('a DATABASE_URL without a user is left to PGUSER when it is set', (t) => {
  t.is(loadConfig({ DATABASE_URL: 'postgres://db.internal/cs', PGUSER: 'app' }).databaseUrl, 'postgres://db.internal/cs');
  t.is(loadConfig({ PGUSER: 'app' }).databaseUrl, 'postgres://127.0.0.1:5432/conda_store_events');
});

// Regression: WHATWG URL refused a user with no host (postgres://app@/cs?host=/run/postgresql:
// "Invalid URL"), and could not add the user to postgres:///cs?host=... (no authority to hold it).
test('a DATABASE_URL in any form node-postgres takes; without a user, the operating-system user as a parameter when there is no host', (t) => {
  const user = os.userInfo().username;
  t.is(loadConfig({ DATABASE_URL: 'postgres://app@/cs?host=/run/postgresql' }).databaseUrl, 'postgres://app@/cs?host=/run/postgresql');
  t.is(loadConfig({ DATABASE_URL: 'postgres:///cs?host=/run/postgresql' }).databaseUrl, `postgres:///cs?host=/run/postgresql&user=${user}`);
  t.is(loadConfig({ DATABASE_URL: 'postgres://db.internal/cs' }).databaseUrl, `postgres://${user}@db.internal/cs`);
  t.is(loadConfig({ DATABASE_URL: 'postgres://db.internal/cs?user=app' }).databaseUrl, 'postgres://db.internal/cs?user=app');
});

test('a LOG_LEVEL that is not a level is refused, naming the variable and the levels', (t) => {
  t.throws(() => loadConfig({ LOG_LEVEL: 'DEBUG' }), { message: /^LOG_LEVEL must be one of trace, debug, info, warn, error, fatal, silent, got "DEBUG"$/ });
  t.is(loadConfig({ LOG_LEVEL: 'silent' }).logLevel, 'silent');
});

test('an error without a message (a connection to every address of a name refused) is described by its causes', (t) => {
  const refused = new AggregateError([new Error('connect ECONNREFUSED ::1:5999'), new Error('connect ECONNREFUSED 127.0.0.1:5999')], '');
  t.is(describeError(refused), 'connect ECONNREFUSED ::1:5999; connect ECONNREFUSED 127.0.0.1:5999');
  t.is(describeError(new Error('plain')), 'plain');
});

// Regression: node-postgres lets a URL's options replace the config's, and reads PGOPTIONS only
// when the config has none: the log's session settings, or the user's, were dropped.
test('session settings of the code are added to those of DATABASE_URL or PGOPTIONS, last (they win)', (t) => {
  const ours = '-c default_transaction_isolation=read\\ committed';
  t.like(keepingOptions({ connectionString: 'postgres://app@db/cs?options=-c%20statement_timeout%3D5000', options: ours }, {}), {
    connectionString: undefined, host: 'db', user: 'app', database: 'cs', options: `-c statement_timeout=5000 ${ours}`,
  });
  t.deepEqual(keepingOptions({ connectionString: 'postgres://app@db/cs', options: ours }, { PGOPTIONS: '-c lock_timeout=100' }), {
    connectionString: 'postgres://app@db/cs', options: `-c lock_timeout=100 ${ours}`,
  });
  t.deepEqual(keepingOptions({ connectionString: 'postgres://app@db/cs', options: ours }, {}), { connectionString: 'postgres://app@db/cs', options: ours });
  t.deepEqual(keepingOptions({ connectionString: 'postgres://app@db/cs' }, { PGOPTIONS: '-c lock_timeout=100' }), { connectionString: 'postgres://app@db/cs' });
});
