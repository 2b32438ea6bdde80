/**
 * bench/ingest's latency baseline, run as a child process as `serve` is: the least a NATS-to-
 * PostgreSQL pipeline does. A durable pull consumer's messages are written as they arrive (what
 * came in while the previous transaction ran, up to BATCH), events and their rows in one plain
 * transaction (raw-writes.ts, the throughput baseline's writer), then acked. No validation, no
 * log function, no keys, no projection stage of its own. For each transaction it prints a line
 * on stdout: {"at": Date.now() after COMMIT, "ids": [event ids]}. Stops on SIGTERM.
 *
 * Environment: DATABASE_URL, NATS_URL, RAW_STREAM, RAW_DURABLE, BATCH.
 */
import { connect, type JsMsg } from 'nats';
import pg from 'pg';
import type { Envelope } from '../../src/catalogue/index.js';
import { rawWriter } from './raw-writes.js';

const env = (name: string) => {
  const value = process.env[name];
  if (!value) throw new Error(`raw-pipeline: ${name} is not set`);
  return value;
};
const batchSize = Number(env('BATCH'));
const client = new pg.Client({ connectionString: env('DATABASE_URL') });
await client.connect();
const nc = await connect({ servers: env('NATS_URL'), name: 'bench raw pipeline' });
const consumer = await nc.jetstream().consumers.get(env('RAW_STREAM'), env('RAW_DURABLE'));
const messages = await consumer.consume({ max_messages: batchSize * 2 });
const writer = rawWriter(client);
// The clock of serve's log lines (pino's `time`, Date.now()): both runs' latencies are read off
// the same clock, to the same (millisecond) precision.
const wallClock = () => Date.now();

let buffer: JsMsg[] = [];
let writing: Promise<void> | undefined;
let failed = false;

async function drain(): Promise<void> {
  while (buffer.length > 0) {
    const batch = buffer.slice(0, batchSize);
    buffer = buffer.slice(batch.length);
    const events = batch.map((msg) => msg.json<Envelope>());
    await writer.withRows(events);
    const at = wallClock();
    for (const msg of batch) msg.ack();
    process.stdout.write(`${JSON.stringify({ at, ids: events.map((e) => e.id) })}\n`);
  }
}

/** Starts a drain unless one runs; one that ends with messages left (they came as it finished) starts another. */
function kick(): void {
  if (writing || failed) return;
  writing = drain()
    .catch((error: unknown) => {
      failed = true;
      console.error(error);
      void messages.close();
    })
    .finally(() => {
      writing = undefined;
      if (buffer.length > 0) kick();
    });
}

process.on('SIGTERM', () => void messages.close());
process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
for await (const msg of messages) {
  buffer.push(msg);
  kick();
}
await writing;
await nc.drain();
await client.end();
process.exit(failed ? 1 : 0);
