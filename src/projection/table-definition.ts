/**
 * A projection table's definition as PostgreSQL holds it after the migrations: columns, sequences,
 * constraints and indexes, as DDL that recreates it in another schema. Read from the catalog with
 * `search_path` set to the table's schema, so that every name in the DDL is unqualified and
 * resolves, when run with the target schema first in `search_path`, to the target's objects.
 * Used to create rebuild shadow tables, and (the DDL fields, hashed) as the schema part of a
 * fingerprint; the owner and privileges are carried over too, but are not part of a fingerprint.
 */
import type pg from 'pg';
import { quoteIdent as quote, sqlLiteral } from '../log/postgres/sql.js';

export interface TableDefinition {
  table: string;
  /** CREATE SEQUENCE statements for the sequences its columns own (serial ids). */
  sequences: string[];
  /** CREATE TABLE with columns, defaults, NOT NULL, and the constraints a bulk load needs (PK, UNIQUE, CHECK). */
  create: string;
  /** ALTER SEQUENCE ... OWNED BY, once the table exists. */
  ownership: string[];
  /** What is cheaper to add after the load: foreign keys and plain indexes. */
  finish: string[];
  /**
   * The foreign keys of `finish` whose ON DELETE / ON UPDATE action changes rows (CASCADE, SET
   * NULL, SET DEFAULT): a rebuild adds these before the load, so that a delete during the fill
   * cascades as it does live. The others only check, and are added after the load. Not those
   * to tables outside the ones read together:
   */
  beforeLoad: string[];
  /**
   * Those to tables outside the ones read together (another group's live tables): added before
   * the load too, but each in a transaction of its own (adding one locks the other table against
   * its writers; see outwardKeys).
   */
  outwardBeforeLoad: string[];
  /**
   * The rest of `finish` but the foreign keys to tables outside the ones read together: added once
   * the load is done, in the transaction that builds the indexes.
   */
  afterLoad: string[];
  /**
   * The foreign keys (not cascading) to tables outside the ones read together (another group's
   * live tables), each as the statements that add it NOT VALID and then validate it, each for a
   * transaction of its own after the indexes: added among them, a key held a lock on the other
   * table that stops its writers (SHARE ROW EXCLUSIVE) until the last index was built, minutes
   * on a large log; its validation takes one that does not (ROW SHARE).
   */
  outwardKeys: string[][];
  /**
   * The owner (when it is not the user reading the definition) and the privileges granted on the
   * table and its sequences: a reader's role keeps its access to a rebuilt table.
   */
  privileges: string[];
  /**
   * Storage parameters (fillfactor, autovacuum settings), its TOAST table's and its keys'
   * indexes' too, and the tablespaces of the table and of its keys' indexes: set as soon as the
   * table exists, while moving it costs nothing, before the load.
   */
  settings: string[];
  /**
   * The rest of what a rebuilt table keeps, set once it is loaded: comments, per-column
   * statistics targets, storage, compression and planner options (n_distinct), the index it is
   * clustered on, replica identity.
   */
  properties: string[];
  /**
   * What a rebuild cannot recreate on the new tables, named for the refusal (rebuild.ts): triggers,
   * rules, row-level security and its policies, column privileges, identity columns, collations
   * other than the type's, publications, extended statistics, a replica identity by index, an
   * unlogged table, inheritance (a parent's query would no longer see the new table's rows).
   * Dropped with the old table, each would be lost without a word, and some (a policy, a
   * publication) are security or replication.
   */
  unsupported: string[];
}

/**
 * `statement`, which creates an index, made to create it in `tablespace` (the database's default
 * when null). The rebuild's connection creates everything else in the database's default (its
 * default_tablespace is ''), as the live objects that have no tablespace of their own are.
 */
export function inTablespace(statement: string, tablespace: string | null): string {
  return tablespace === null ? statement : `SET LOCAL default_tablespace = ${quote(tablespace)}; ${statement}; SET LOCAL default_tablespace = ''`;
}


/**
 * The definitions of `tables` in `schema`, read together: a foreign key from one of them to a
 * table that is not among them goes in `outwardKeys`.
 */
export async function readTableDefinitions(client: pg.ClientBase, schema: string, tables: string[]): Promise<TableDefinition[]> {
  await client.query(`SET search_path TO ${quote(schema)}`);
  try {
    const definitions: TableDefinition[] = [];
    for (const table of tables) definitions.push(await readOne(client, schema, table, tables));
    return definitions;
  } finally {
    await client.query('RESET search_path');
  }
}

/**
 * A statement that revokes every privilege on `table` (as the search_path finds it) and on its
 * sequences granted to anyone but its owner: what default privileges gave them at creation.
 */
function revokeCreationGrants(table: string): string {
  const relation = `${sqlLiteral(quote(table))}::regclass`;
  return `DO $revoke$ DECLARE r record; BEGIN
  FOR r IN SELECT c.oid::regclass AS relation, c.relkind, a.grantee
             FROM pg_class c, aclexplode(c.relacl) a
            WHERE (c.oid = ${relation} OR c.oid IN (SELECT d.objid FROM pg_depend d WHERE d.refobjid = ${relation} AND d.deptype = 'a' AND d.classid = 'pg_class'::regclass))
              AND a.grantee <> c.relowner
  LOOP
    EXECUTE format('REVOKE ALL ON %s %s FROM %s', CASE r.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, r.relation,
                   CASE r.grantee WHEN 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r.grantee)) END);
  END LOOP;
END $revoke$`;
}

async function readOne(client: pg.ClientBase, schema: string, table: string, together: string[]): Promise<TableDefinition> {
  const { rows: [relation] } = await client.query<{ oid: number }>(
    `SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind = 'r'`,
    [schema, table],
  );
  if (!relation) throw new Error(`table ${schema}.${table} does not exist (run knex migrate:latest)`);
  const { rows: columns } = await client.query<{
    name: string; type: string; notnull: boolean; default: string | null; generated: string; identity: string; collated: boolean;
    acl: boolean; statistics: number | null; comment: string | null; storage: string | null; compression: string | null; options: string[] | null;
  }>(
    // Comments come quoted by the server (quote_literal), whatever standard_conforming_strings says.
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS notnull,
            pg_get_expr(d.adbin, d.adrelid) AS default, a.attgenerated AS generated, a.attidentity AS identity,
            a.attcollation <> t.typcollation AS collated, a.attacl IS NOT NULL AS acl, a.attstattarget AS statistics,
            quote_literal(col_description(a.attrelid, a.attnum)) AS comment,
            CASE WHEN a.attstorage <> t.typstorage THEN CASE a.attstorage WHEN 'p' THEN 'PLAIN' WHEN 'e' THEN 'EXTERNAL' WHEN 'm' THEN 'MAIN' ELSE 'EXTENDED' END END AS storage,
            CASE a.attcompression WHEN 'p' THEN 'pglz' WHEN 'l' THEN 'lz4' END AS compression, a.attoptions AS options
       FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
       LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
      WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY a.attnum`,
    [relation.oid],
  );
  const { rows: [table_] } = await client.query<{
    comment: string | null; reloptions: string[] | null; replica: string; rls: boolean; triggers: string[]; rules: string[]; policies: string[];
    publications: string[]; statistics: string[]; unlogged: boolean; tablespace: string | null; clustered: string | null;
    toastOptions: string[] | null; inheritance: boolean;
  }>(
    `SELECT quote_literal(obj_description(c.oid, 'pg_class')) AS comment, c.reloptions, c.relreplident AS replica,
            c.relrowsecurity OR c.relforcerowsecurity AS rls, c.relpersistence = 'u' AS unlogged,
            (SELECT spcname::text FROM pg_tablespace WHERE oid = c.reltablespace) AS tablespace,
            (SELECT quote_ident(i.relname) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = c.oid AND x.indisclustered) AS clustered,
            ARRAY(SELECT tgname::text FROM pg_trigger WHERE tgrelid = c.oid AND NOT tgisinternal ORDER BY 1) AS triggers,
            ARRAY(SELECT rulename::text FROM pg_rewrite WHERE ev_class = c.oid ORDER BY 1) AS rules,
            ARRAY(SELECT polname::text FROM pg_policy WHERE polrelid = c.oid ORDER BY 1) AS policies,
            -- Every publication that publishes the table: by name, and also FOR ALL TABLES or FOR
            -- TABLES IN SCHEMA (PostgreSQL 15), which a look at pg_publication_rel missed.
            ARRAY(SELECT pt.pubname::text FROM pg_publication_tables pt
                   WHERE pt.schemaname = (SELECT nspname FROM pg_namespace WHERE oid = c.relnamespace) AND pt.tablename = c.relname ORDER BY 1) AS publications,
            ARRAY(SELECT stxname::text FROM pg_statistic_ext WHERE stxrelid = c.oid ORDER BY 1) AS statistics,
            (SELECT reloptions FROM pg_class WHERE oid = c.reltoastrelid) AS "toastOptions",
            EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = c.oid OR inhparent = c.oid) AS inheritance
       FROM pg_class c WHERE c.oid = $1`,
    [relation.oid],
  );
  const { rows: sequences } = await client.query<{ name: string; column: string; type: string; start: string; increment: string; min: string; max: string; cache: string; cycle: boolean }>(
    `SELECT s.relname AS name, a.attname AS column, format_type(q.seqtypid, NULL) AS type, q.seqstart AS start,
            q.seqincrement AS increment, q.seqmin AS min, q.seqmax AS max, q.seqcache AS cache, q.seqcycle AS cycle
       FROM pg_depend d
       JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
       JOIN pg_sequence q ON q.seqrelid = s.oid
       JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
      WHERE d.refobjid = $1 AND d.deptype = 'a'
      ORDER BY s.relname`,
    [relation.oid],
  );
  // A key's index tablespace, and whether a foreign key's table is one of those read together.
  const { rows: constraints } = await client.query<{
    name: string; type: string; definition: string; acts: boolean; validated: boolean; tablespace: string | null; indexOptions: string[] | null; outward: boolean;
  }>(
    `SELECT k.conname AS name, k.contype AS type, pg_get_constraintdef(k.oid) AS definition, k.convalidated AS validated,
            k.contype = 'f' AND (k.confdeltype IN ('c', 'n', 'd') OR k.confupdtype IN ('c', 'n', 'd')) AS acts,
            CASE WHEN k.contype <> 'f' THEN (SELECT s.spcname::text FROM pg_class i JOIN pg_tablespace s ON s.oid = i.reltablespace WHERE i.oid = k.conindid) END AS tablespace,
            CASE WHEN k.contype <> 'f' THEN (SELECT i.reloptions FROM pg_class i WHERE i.oid = k.conindid) END AS "indexOptions",
            k.contype = 'f' AND NOT EXISTS (SELECT 1 FROM pg_class p WHERE p.oid = k.confrelid AND p.relnamespace = $2::regnamespace AND p.relname = ANY($3)) AS outward
       FROM pg_constraint k WHERE k.conrelid = $1 ORDER BY k.contype, k.conname`,
    [relation.oid, quote(schema), together],
  );
  const { rows: indexes } = await client.query<{ definition: string; tablespace: string | null }>(
    `SELECT pg_get_indexdef(i.indexrelid) AS definition, (SELECT s.spcname::text FROM pg_tablespace s WHERE s.oid = c.reltablespace) AS tablespace
       FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
      WHERE i.indrelid = $1 AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid)
      ORDER BY c.relname`,
    [relation.oid],
  );

  // The owner, when it is not the user reading (who will own the copy), and the grants to others.
  const { rows: acl } = await client.query<{ owner: string | null; grant: string | null }>(
    `SELECT CASE WHEN c.oid = $1 AND c.relowner <> (SELECT oid FROM pg_roles WHERE rolname = current_user)
                 THEN quote_ident(pg_get_userbyid(c.relowner)) END AS owner,
            CASE WHEN a.grantee IS NOT NULL AND a.grantee <> c.relowner
                 THEN 'GRANT ' || a.privilege_type || CASE c.relkind WHEN 'S' THEN ' ON SEQUENCE ' ELSE ' ON TABLE ' END || quote_ident(c.relname)
                      || ' TO ' || CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END
                      || CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END END AS grant
       FROM pg_class c LEFT JOIN LATERAL aclexplode(c.relacl) a ON true
      WHERE c.oid = $1 OR c.oid IN (SELECT d.objid FROM pg_depend d WHERE d.refobjid = $1 AND d.deptype = 'a' AND d.classid = 'pg_class'::regclass)
      ORDER BY 2`,
    [relation.oid],
  );

  // A generated column's expression is in pg_attrdef too, but is no DEFAULT (which may not name a column).
  const valueClause = (c: (typeof columns)[number]) =>
    c.generated === 's' ? ` GENERATED ALWAYS AS (${c.default}) STORED`
    : c.generated === 'v' ? ` GENERATED ALWAYS AS (${c.default}) VIRTUAL` // PostgreSQL 18
    : c.default ? ` DEFAULT ${c.default}` : '';
  const columnLines = columns.map((c) => `${quote(c.name)} ${c.type}${valueClause(c)}${c.notnull ? ' NOT NULL' : ''}`);
  const t = table_!;
  const names = (kind: string, list: string[]) => (list.length ? [`${kind} ${list.join(', ')}`] : []);
  const unsupported = [
    ...names('trigger', t.triggers),
    ...names('rule', t.rules),
    ...(t.rls ? ['row-level security'] : []),
    ...names('policy', t.policies),
    ...names('column privileges on', columns.filter((c) => c.acl).map((c) => c.name)),
    ...names('identity column', columns.filter((c) => c.identity !== '').map((c) => c.name)),
    ...names('a collation of its own on', columns.filter((c) => c.collated).map((c) => c.name)),
    ...names('publication', t.publications),
    ...names('extended statistics', t.statistics),
    ...(t.replica === 'i' ? ['a replica identity by index'] : []),
    ...(t.unlogged ? ['UNLOGGED'] : []),
    ...(t.inheritance ? ['inheritance (a parent or child table)'] : []),
  ];
  const alter = `ALTER TABLE ${quote(table)}`;
  const properties = [
    ...(t.comment !== null ? [`COMMENT ON TABLE ${quote(table)} IS ${t.comment}`] : []),
    ...columns.flatMap((c) => (c.comment !== null ? [`COMMENT ON COLUMN ${quote(table)}.${quote(c.name)} IS ${c.comment}`] : [])),
    // -1 (PostgreSQL 15, 16) or null (17 on) is the default target.
    ...columns.flatMap((c) => (c.statistics !== null && c.statistics >= 0 ? [`${alter} ALTER COLUMN ${quote(c.name)} SET STATISTICS ${c.statistics}`] : [])),
    ...columns.flatMap((c) => (c.storage ? [`${alter} ALTER COLUMN ${quote(c.name)} SET STORAGE ${c.storage}`] : [])),
    ...columns.flatMap((c) => (c.compression ? [`${alter} ALTER COLUMN ${quote(c.name)} SET COMPRESSION ${c.compression}`] : [])),
    // Per-column planner options (n_distinct): name=value pairs PostgreSQL checked, as reloptions.
    // Only PostgreSQL's own (some builds keep options of their own there, on every column).
    ...columns.flatMap((c) => {
      const options = (c.options ?? []).filter((option) => /^n_distinct(_inherited)?=/.test(option));
      return options.length ? [`${alter} ALTER COLUMN ${quote(c.name)} SET (${options.join(', ')})`] : [];
    }),
    ...(t.clustered ? [`${alter} CLUSTER ON ${t.clustered}`] : []),
    ...(t.replica === 'f' ? [`${alter} REPLICA IDENTITY FULL`] : t.replica === 'n' ? [`${alter} REPLICA IDENTITY NOTHING`] : []),
  ];
  // reloptions are name=value pairs of known parameters (PostgreSQL checked them): safe as they are.
  // The TOAST table's too, named toast.<parameter>.
  const reloptions = [...(t.reloptions ?? []), ...(t.toastOptions ?? []).map((option) => `toast.${option}`)];
  const settings = [
    ...(reloptions.length ? [`${alter} SET (${reloptions.join(', ')})`] : []),
    ...(t.tablespace ? [`${alter} SET TABLESPACE ${quote(t.tablespace)}`] : []),
    ...constraints.flatMap((c) => (c.tablespace ? [`ALTER INDEX ${quote(c.name)} SET TABLESPACE ${quote(c.tablespace)}`] : [])),
    // A key's index storage parameters (fillfactor), which pg_get_constraintdef leaves out.
    ...constraints.flatMap((c) => (c.indexOptions?.length ? [`ALTER INDEX ${quote(c.name)} SET (${c.indexOptions.join(', ')})`] : [])),
  ];
  // A CHECK constraint NOT VALID (old rows not checked) is added after the load, NOT VALID again
  // (its definition says so): in CREATE TABLE it would be validated, and old rows that break it fail the rebuild.
  const loadConstraints = constraints.filter((c) => c.type !== 'f' && c.validated).map((c) => `CONSTRAINT ${quote(c.name)} ${c.definition}`);
  const notValidated = constraints.filter((c) => c.type !== 'f' && !c.validated).map((c) => `ALTER TABLE ${quote(table)} ADD CONSTRAINT ${quote(c.name)} ${c.definition}`);
  const addForeignKey = (c: { name: string; definition: string }) => `ALTER TABLE ${quote(table)} ADD CONSTRAINT ${quote(c.name)} ${c.definition}`;
  const owner = acl.find((row) => row.owner)?.owner;
  const foreignKeys = constraints.filter((c) => c.type === 'f');
  const checkingKeys = foreignKeys.filter((c) => !c.acts);
  // pg_get_indexdef qualifies the table whatever the search_path: unqualify it.
  const unqualified = (definition: string) => definition.replace(` ON ${schema}.`, ' ON ').replace(` ON ${quote(schema)}.`, ' ON ');
  const plainIndexes = indexes.map((i) => unqualified(i.definition));
  // A key that the live table has NOT VALID comes NOT VALID in its definition, and stays so.
  const addOutward = (c: (typeof constraints)[number]) =>
    c.validated ? [`${addForeignKey(c)} NOT VALID`, `ALTER TABLE ${quote(table)} VALIDATE CONSTRAINT ${quote(c.name)}`] : [addForeignKey(c)];
  return {
    table,
    sequences: sequences.map(
      (s) => `CREATE SEQUENCE ${quote(s.name)} AS ${s.type} INCREMENT ${s.increment} MINVALUE ${s.min} MAXVALUE ${s.max} START ${s.start} CACHE ${s.cache}${s.cycle ? ' CYCLE' : ' NO CYCLE'}`,
    ),
    create: `CREATE TABLE ${quote(table)} (\n  ${[...columnLines, ...loadConstraints].join(',\n  ')}\n)`,
    ownership: sequences.map((s) => `ALTER SEQUENCE ${quote(s.name)} OWNED BY ${quote(table)}.${quote(s.column)}`),
    finish: [...foreignKeys.map(addForeignKey), ...notValidated, ...plainIndexes],
    beforeLoad: foreignKeys.filter((c) => c.acts && !c.outward).map(addForeignKey),
    outwardBeforeLoad: foreignKeys.filter((c) => c.acts && c.outward).map(addForeignKey),
    afterLoad: [
      ...checkingKeys.filter((c) => !c.outward).map(addForeignKey),
      ...notValidated,
      ...indexes.map((i) => inTablespace(unqualified(i.definition), i.tablespace)),
    ],
    outwardKeys: checkingKeys.filter((c) => c.outward).map(addOutward),
    privileges: [
      // First what the new table and its sequences were given at creation by default privileges
      // (ALTER DEFAULT PRIVILEGES of the rebuilding role), which the live table may not have: the
      // grants below are then exactly the live table's.
      revokeCreationGrants(table),
      // ALTER TABLE ... OWNER TO also gives the table's sequences to the new owner.
      ...(owner ? [`ALTER TABLE ${quote(table)} OWNER TO ${owner}`] : []),
      ...acl.flatMap((row) => (row.grant ? [row.grant] : [])),
    ],
    settings,
    properties,
    unsupported,
  };
}
