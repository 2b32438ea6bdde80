import test, { type ExecutionContext } from 'ava';
import pg from 'pg';
import { leanPipeline, leanQuery, stepOf } from '../src/db/lean-query.js';
import { connect, freshDatabase } from './helpers/database.js';

async function client(t: ExecutionContext) {
  const db = await freshDatabase(t, { migrated: false });
  return Object.assign(await connect(t, db.url), { url: db.url });
}

test('lean query: rows as text arrays, the statement parsed once per connection', async (t) => {
  const c = await client(t);
  const text = 'SELECT $1::int + 1 AS n, $2::text AS s, NULL::int AS z';
  t.deepEqual(await leanQuery(c, 'lean_test', text, ['41', 'x']), [['42', 'x', null]]);
  t.deepEqual(await leanQuery(c, 'lean_test', text, ['1', 'y']), [['2', 'y', null]]);
  t.deepEqual(await leanQuery(c, 'lean_test', text, ['2', 'z']), [['3', 'z', null]]);
  const { rows } = await c.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_prepared_statements WHERE name = 'lean_test'");
  t.is(rows[0]!.n, 1);
  t.deepEqual(await leanQuery(c, 'lean_none', 'SELECT 1 WHERE false', []), []);
});

test('lean query: an error rejects with the server\'s error (code, constraint), and the connection goes on', async (t) => {
  const c = await client(t);
  await c.query('CREATE TABLE unique_things (id int PRIMARY KEY)');
  const insert = 'INSERT INTO unique_things VALUES ($1::int) RETURNING id';
  t.deepEqual(await leanQuery(c, 'lean_insert', insert, ['1']), [['1']]);
  const error = await t.throwsAsync(leanQuery(c, 'lean_insert', insert, ['1']));
  t.true(error instanceof pg.DatabaseError);
  t.like(error, { code: '23505', constraint: 'unique_things_pkey' });
  t.deepEqual(await leanQuery(c, 'lean_insert', insert, ['2']), [['2']]);
  // A statement that fails to parse is not taken for parsed.
  await t.throwsAsync(leanQuery(c, 'lean_bad', 'SELEKT 1', []), { message: /syntax error/ });
  await t.throwsAsync(leanQuery(c, 'lean_bad', 'SELEKT 1', []), { message: /syntax error/ });
});

test('lean pipeline: several statements in one round trip, the rows of each, every statement prepared once per connection', async (t) => {
  const c = await client(t);
  await c.query('CREATE TABLE things (id int PRIMARY KEY)');
  const steps = (id: number) => [
    stepOf('BEGIN', []),
    stepOf('INSERT INTO things VALUES ($1::int)', [String(id)]),
    stepOf('SELECT count(*) FROM things WHERE id <= $1::int', [String(id)]),
    stepOf('COMMIT', []),
  ];
  t.deepEqual(await leanPipeline(c, steps(1)), [[], [], [['1']], []]);
  t.deepEqual(await leanPipeline(c, steps(2)), [[], [], [['2']], []]);
  const { rows } = await c.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_prepared_statements WHERE name LIKE 'cse_run_%'");
  t.is(rows[0]!.n, 4);
  t.is(stepOf('COMMIT', []).name, steps(3)[3]!.name, 'one name per text');
});

test('lean pipeline: a failing statement stops the rest, nothing of the implicit transaction stays, and the connection goes on', async (t) => {
  const c = await client(t);
  await c.query('CREATE TABLE things (id int PRIMARY KEY)');
  const insert = (id: string) => stepOf('INSERT INTO things VALUES ($1::int)', [id]);
  const error = await t.throwsAsync(leanPipeline(c, [insert('1'), stepOf('SELECT 1 / $1::int', ['0']), insert('2')]));
  t.like(error, { code: '22012' });
  t.deepEqual((await c.query('SELECT id FROM things')).rows, []);
  t.deepEqual(await leanPipeline(c, [insert('3'), stepOf('SELECT 1 / $1::int', ['1'])]), [[], [['1']]]);
  t.deepEqual((await c.query('SELECT id FROM things')).rows, [{ id: 3 }]);
});

test('lean pipeline: a parameter that is not text is refused before anything is sent, and the connection goes on', async (t) => {
  const c = await client(t);
  const error = await t.throwsAsync(leanPipeline(c, [stepOf('SELECT $1::int', ['1']), stepOf('SELECT $1::int + $2::int', ['1', 2 as unknown as string])]));
  t.true(error instanceof TypeError);
  t.regex(error!.message, /parameter \$2 is number, not text/);
  t.deepEqual(await leanPipeline(c, [stepOf('SELECT $1::int', ['7'])]), [[['7']]]);
  const { rows } = await c.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_prepared_statements');
  t.is(rows[0]!.n, 1, 'nothing of the refused pipeline reached the server');
});

// Regression: a statement prepared by a pipeline that then failed at that very statement (its Parse
// succeeded, its execution did not) was not taken for prepared, and its next Parse failed with
// 42P05 "prepared statement already exists". It is closed before it is parsed again.
test('lean pipeline: a statement that failed after its Parse succeeded is prepared again without a clash', async (t) => {
  const c = await client(t);
  const divide = (by: string) => ({ name: 'lean_divide', text: 'SELECT 10 / $1::int', values: [by] });
  await t.throwsAsync(leanPipeline(c, [divide('0')]), { message: /division by zero/ });
  t.deepEqual(await leanPipeline(c, [divide('5')]), [[['2']]]);
  t.deepEqual(await leanPipeline(c, [divide('2')]), [[['5']]]);
  // A statement that does not parse stops the pipeline where it stands, and stays unprepared.
  await t.throwsAsync(leanPipeline(c, [divide('1'), { name: 'lean_bad', text: 'SELEKT 1', values: [] }]), { message: /syntax error/ });
  t.deepEqual(await leanPipeline(c, [divide('10')]), [[['1']]]);
});

test('lean query: a connection whose socket breaks under it rejects the query', async (t) => {
  const c = await client(t);
  c.on('error', () => undefined);
  const sleeping = leanQuery(c, 'lean_sleep', 'SELECT pg_sleep(30)', []);
  (c as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
  await t.throwsAsync(sleeping);
  await t.throwsAsync(leanQuery(c, 'lean_after', 'SELECT 1', []), { message: /not queryable|closed/ });
});

test('lean query: a query_timeout of the client applies to it', async (t) => {
  const db = await freshDatabase(t, { migrated: false });
  const c = new pg.Client({ connectionString: db.url, query_timeout: 2000 });
  await c.connect();
  t.teardown(() => c.end().catch(() => undefined));
  t.deepEqual(await leanQuery(c, 'lean_quick', 'SELECT 1', []), [['1']]);
  await t.throwsAsync(leanQuery(c, 'lean_slow', 'SELECT pg_sleep(10)', []), { message: /Query read timeout/ });
});

test('lean query: a backend terminated under it rejects the query', async (t) => {
  const c = await client(t);
  c.on('error', () => undefined);
  const pid = (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
  const sleeping = leanQuery(c, 'lean_sleep', 'SELECT pg_sleep(30)', []);
  const other = await connect(t, c.url);
  await other.query('SELECT pg_terminate_backend($1)', [pid]);
  await t.throwsAsync(sleeping);
});
