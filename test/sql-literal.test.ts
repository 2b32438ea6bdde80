/**
 * Statements sent together in one simple query carry their values as literals (sqlLiteral,
 * inlineParameters), and arrays go as parameters in their text form (arrayParameter): PostgreSQL
 * must read back exactly the value, whatever it holds.
 */
import test from 'ava';
import pg from 'pg';
import { arrayParameter, inlineParameters, sqlLiteral, withoutComments } from '../src/log/postgres/sql.js';
import { serverUrl } from './helpers/database.js';

const tricky = [
  "it's", 'back\\slash', 'both \\\' quote', 'new\nline\ttab', '-- not a comment', '/* nor this */', '$1 $2', 'ünï😀', '',
  JSON.stringify({ summary: 'a "quoted" \\ value\n', depends: ['x >=1'] }),
];

test('a literal reads back as the very value, under either standard_conforming_strings', async (t) => {
  const client = new pg.Client({ connectionString: serverUrl });
  await client.connect();
  t.teardown(() => client.end());
  for (const setting of ['on', 'off']) {
    await client.query(`SET standard_conforming_strings = ${setting}`);
    await client.query('SET escape_string_warning = off');
    const { rows } = await client.query<{ v: string[] }>(`SELECT ${sqlLiteral(tricky)}::text[] AS v`);
    t.deepEqual(rows[0]!.v, tricky, `standard_conforming_strings ${setting}`);
    const { rows: numbers } = await client.query<{ v: string[] }>(`SELECT ${sqlLiteral([0, -5, 2 ** 53 - 1])}::bigint[]::text[] AS v`);
    t.deepEqual(numbers[0]!.v, ['0', '-5', String(2 ** 53 - 1)]);
  }
  const json = tricky.at(-1)!;
  const { rows } = await client.query<{ v: unknown }>(inlineParameters('SELECT $1::json AS v', [json]));
  t.deepEqual(rows[0]!.v, JSON.parse(json));
});

test('values that have no exact literal are refused; comments of an SQL file go before inlining', (t) => {
  t.throws(() => sqlLiteral(1.5), { message: /cannot inline number 1.5/ });
  t.throws(() => sqlLiteral({}), { message: /cannot inline object/ });
  t.throws(() => inlineParameters('SELECT $2', [1]), { message: 'no value for parameter $2' });
  t.is(inlineParameters(withoutComments('-- the name $1\nSELECT $1'), ['a\n--']), "SELECT 'a\n--'");
});

test('an array parameter reads back as the very array (text[], int[], uuid[]; quotes, backslashes, braces, NULL and "NULL"); PostgreSQL refuses a NUL, arrayParameter an element of the wrong type', async (t) => {
  const client = new pg.Client({ connectionString: serverUrl });
  await client.connect();
  t.teardown(() => client.end());
  const texts = [...tricky, '{a,b}', 'x, y', ' padded ', '"', '\\', 'a\\"b', 'NULL', 'null', null, '{3f0c2e0a-8a1b-4c55-9d1e-2b7f5c9a1d00}', '[2,"pkg-1","1.0.0"]'];
  // Written in one piece (its JSON): quotes and backslashes but no control characters.
  const plain = ['"', '\\', 'a\\"b', '[2,"pkg-1","1.0.0"]', 'NULL', 'null', null, '', '{a,b}', 'x, y', ' padded ', 'ünï😀'];
  t.is(arrayParameter(plain), `{${JSON.stringify(plain).slice(1, -1)}}`);
  const { rows } = await client.query<{ texts: (string | null)[]; plain: (string | null)[]; ints: (number | null)[]; none: string[] }>(
    'SELECT $1::text[] AS texts, $2::text[] AS plain, $3::int[] AS ints, $4::text[] AS none',
    [arrayParameter(texts), arrayParameter(plain), arrayParameter([0, -7, null, 2 ** 31 - 1]), arrayParameter([])]);
  t.deepEqual(rows[0], { texts, plain, ints: [0, -7, null, 2 ** 31 - 1], none: [] });
  const ids = ['3F0C2E0A-8A1B-4C55-9D1E-2B7F5C9A1D00', null, '{3f0c2e0a-8a1b-4c55-9d1e-2b7f5c9a1d01}'];
  const { rows: uuids } = await client.query<{ v: (string | null)[] }>('SELECT $1::uuid[]::text[] AS v', [arrayParameter(ids)]);
  t.deepEqual(uuids[0]!.v, ['3f0c2e0a-8a1b-4c55-9d1e-2b7f5c9a1d00', null, '3f0c2e0a-8a1b-4c55-9d1e-2b7f5c9a1d01']);
  // A NUL character cannot be in a text: PostgreSQL refuses it (class 22), never stores something else.
  const nul = await t.throwsAsync(client.query('SELECT $1::text[] AS v', [arrayParameter(['a\u0000b'])]));
  t.is((nul as { code?: string }).code, '22021');
  t.throws(() => arrayParameter([Number.NaN]), { message: 'cannot send NaN in an array parameter: only strings, safe integers and nulls' });
  t.throws(() => arrayParameter([1.5]), { message: 'cannot send 1.5 in an array parameter: only strings, safe integers and nulls' });
  for (const [value, type] of [[{}, 'object'], [[], 'object'], [1n, 'bigint'], [undefined, 'undefined']] as const) {
    t.throws(() => arrayParameter(['a', value as never]), { message: `cannot send ${type} in an array parameter: only strings, safe integers and nulls` });
  }
});
