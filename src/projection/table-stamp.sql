-- A stamp of the catalog rows that describeTables (columns.ts) reads for the tables $2 of schema
-- $1: an md5 of each row's catalog, key and transaction id (xmin), in order. Adding, dropping or
-- altering a row writes it with a new xmin, so the stamp moves with
--   - the tables themselves (found by name: a table renamed or swapped in changes the oids);
--   - their columns and defaults, and the types of their columns (a type renamed);
--   - the constraints on them or pointing at them, and the parents of their foreign keys (a
--     parent or its columns renamed);
--   - their own triggers and rules;
--   - what depends on them (pg_depend), and the sequences they own (a sequence renamed, or owned
--     by another column).
-- A stamp that moves for nothing describeTables sees (an index added, a row rewritten with the
-- same content) only costs a reading of the tables again. xmin is kept when a row is frozen.
WITH t AS MATERIALIZED (
  SELECT array_agg(c.oid ORDER BY c.oid) AS oids FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = $1 AND c.relname = ANY($2)
), parents AS MATERIALIZED (
  SELECT array_agg(DISTINCT k.confrelid) AS oids FROM t, pg_constraint k WHERE k.contype = 'f' AND k.conrelid = ANY(t.oids)
), sequences AS MATERIALIZED (
  SELECT array_agg(DISTINCT d.objid) AS oids FROM t, pg_depend d
  WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid = ANY(t.oids) AND d.deptype IN ('a', 'i')
), rows AS (
  SELECT 'c' AS catalog, c.oid::text AS key, c.xmin FROM t, parents p, sequences s, pg_class c
   WHERE c.oid = ANY(t.oids) OR c.oid = ANY(p.oids) OR c.oid = ANY(s.oids)
  UNION ALL
  SELECT 'a', a.attrelid || '.' || a.attnum, a.xmin FROM t, parents p, pg_attribute a
   WHERE (a.attrelid = ANY(t.oids) OR a.attrelid = ANY(p.oids)) AND a.attnum > 0
  UNION ALL
  SELECT 'y', y.oid::text, y.xmin FROM pg_type y
   WHERE y.oid IN (SELECT DISTINCT a.atttypid FROM t, pg_attribute a WHERE a.attrelid = ANY(t.oids) AND a.attnum > 0)
  UNION ALL
  SELECT 'd', d.oid::text, d.xmin FROM t, pg_attrdef d WHERE d.adrelid = ANY(t.oids)
  UNION ALL
  SELECT 'k', k.oid::text, k.xmin FROM t, pg_constraint k WHERE k.conrelid = ANY(t.oids) OR k.confrelid = ANY(t.oids)
  UNION ALL
  SELECT 'g', g.oid::text, g.xmin FROM t, pg_trigger g WHERE g.tgrelid = ANY(t.oids)
  UNION ALL
  SELECT 'r', r.oid::text, r.xmin FROM t, pg_rewrite r WHERE r.ev_class = ANY(t.oids)
  UNION ALL
  SELECT 'p', d.classid || '.' || d.objid || '.' || d.objsubid || '.' || d.refobjsubid || '.' || d.deptype::text, NULL FROM t, pg_depend d
   WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = ANY(t.oids)
)
SELECT concat_ws(' ', (SELECT array_to_string(t.oids, ',') FROM t),
                 md5(string_agg(catalog || ' ' || key || ' ' || coalesce(xmin::text, ''), ',' ORDER BY catalog, key))) AS stamp
FROM rows
