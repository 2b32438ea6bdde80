import pg from '/work/main/node_modules/pg/lib/index.js';
import { randomUUID } from 'node:crypto';
import { createPostgresEventLog } from '/work/main/src/log/postgres/index.ts';
import { migrateLatest } from '/work/main/src/db/migrate.ts';
const url = 'postgres://postgres@127.0.0.1:5432/cse_perf';
await migrateLatest(url);
const log = createPostgresEventLog({ connectionString: url });
const pool = new pg.Pool({ connectionString: url });
await pool.query('CREATE TABLE IF NOT EXISTS raw (LIKE event_store.events INCLUDING ALL)');
const data = { a: 'x'.repeat(300) };
async function time(label: string, fn: (i: number) => Promise<unknown>, n = 300) {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await fn(i);
  const ms = performance.now() - t0;
  console.log(label, (n / ms * 1000).toFixed(0), 'ev/s', (ms / n).toFixed(2), 'ms/op');
}
const tag = Date.now();
await time('raw insert', (i) => pool.query('INSERT INTO raw (global_position,id,stream,stream_version,type,data,metadata,transaction_id) VALUES ($1,$2,$3,0,$4,$5,$6,pg_current_xact_id())', [tag * 1000 + i, randomUUID(), `r-${tag}-${i}`, 'T', data, {}]));
await time('log.append', (i) => log.append({ stream: `s-${tag}-${i}`, expectedVersion: 'no_stream', events: [{ id: randomUUID(), type: 'T', data }] }));
//await time('raw insert', (i) => pool.query('INSERT INTO raw (global_position,id,stream,stream_version,type,data,metadata,transaction_id) VALUES ($1,$2,$3,0,$4,$5,$6,pg_current_xact_id())', [tag * 1000 + 500 + i, randomUUID(), `r2-${tag}-${i}`, 'T', data, {}]));
await time('notify only', () => pool.query(`SELECT pg_notify('x', '')`));
await time('select 1', () => pool.query(`SELECT 1`));
await log.close(); await pool.end();
