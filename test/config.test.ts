/** Configuration from the environment (contract.md, "Configuration"): defaults, and clear errors. */
import os from 'node:os';
import test from 'ava';
import { loadConfig } from '../src/config.js';
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

test('EVENT_LOG other than postgres or eventstoredb, and eventstoredb without its URL or backend, are refused with what to set', (t) => {
  t.throws(() => loadConfig({ EVENT_LOG: 'mysql' }), { message: 'EVENT_LOG must be "postgres" or "eventstoredb", got "mysql"' });
  t.throws(() => loadConfig({ EVENT_LOG: 'eventstoredb' }), { message: 'EVENTSTOREDB_URL is required when EVENT_LOG=eventstoredb' });
  const config = loadConfig({ EVENT_LOG: 'eventstoredb', EVENTSTOREDB_URL: 'esdb://127.0.0.1:2113?tls=false' });
  t.throws(() => openEventLog(config), { message: /EVENT_LOG=eventstoredb: the EventStoreDB backend is not available in this version; use EVENT_LOG=postgres/ });
});
