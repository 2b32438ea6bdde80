/**
 * The package as another program imports it (contract.md, "Package and commands": ESM, Node 20+):
 * plain Node.js, without tsx or any other loader, through the package's name and its exports
 * (the compiled dist/ that `prepare` builds, with the SQL files beside it).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import test from 'ava';
import { root } from './helpers/cli.js';
import { freshDatabase } from './helpers/database.js';

// Regression (found by a review): the package exported its TypeScript sources, which plain
// Node.js refuses (ERR_UNKNOWN_FILE_EXTENSION): a program had to run under tsx to use it.
test('regression: plain Node.js imports the package by name, validates an event, and appends and reads it back', async (t) => {
  const db = await freshDatabase(t);
  const program = `
    import { createPostgresEventLog, validateEnvelope, publishEvent, EVENT_TYPES } from 'conda-store-events';
    const envelope = validateEnvelope({
      id: '6f1c2a9e-4b7d-4c3e-9a1f-2b3c4d5e6f70', type: 'NamespaceCreated', stream: 'namespace-7',
      data: { namespace_id: 7, name: 'data-science' },
    });
    const log = createPostgresEventLog({ connectionString: process.env.DATABASE_URL });
    try {
      const [appended] = await log.append({ stream: envelope.stream, expectedVersion: 'no_stream', events: [envelope] });
      const [read] = await log.readStream(envelope.stream);
      console.log(JSON.stringify({ types: EVENT_TYPES.length, publishEvent: typeof publishEvent, position: appended.globalPosition, read: read.data }));
    } finally {
      await log.close();
    }
  `;
  // NODE_OPTIONS left out: npm sets --import=tsx there (.npmrc), which would hide a missing build.
  const { NODE_OPTIONS: _, ...env } = process.env;
  const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', program], { cwd: root, env: { ...env, DATABASE_URL: db.url } });
  const result = JSON.parse(stdout) as { types: number; publishEvent: string; position: number; read: unknown };
  t.true(result.types > 30);
  t.is(result.publishEvent, 'function');
  t.is(result.position, 1);
  t.deepEqual(result.read, { namespace_id: 7, name: 'data-science' });
});
