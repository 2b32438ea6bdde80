-- A stamp of each of the tables $2 of schema $1 (those that exist): an md5 of the catalog rows
-- that describeTables (columns.ts) reads for it, each as its catalog, key and transaction id
-- (xmin), in order. Adding, dropping or altering a row writes it with a new xmin, so a table's
-- stamp moves with
--   - the table itself (found by name: a table renamed or swapped in changes its oid);
--   - its columns and defaults, and the types of its columns (a type renamed);
--   - the constraints on it or pointing at it, and the parents of its foreign keys (a parent or
--     its columns renamed);
--   - its own triggers and rules;
--   - what depends on it (pg_depend), and the sequences it owns (a sequence renamed, or owned by
--     another column).
-- A stamp that moves for nothing describeTables sees (an index added, a row rewritten with the
-- same content) only costs a reading of the tables again. xmin is kept when a row is frozen.
-- The rebuild's swap uses definition-stamp.sql, which covers the whole of a table's definition.
WITH t AS MATERIALIZED (
  SELECT c.oid, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = $1 AND c.relname = ANY($2)
), parents AS MATERIALIZED (
  SELECT DISTINCT t.oid AS tbl, k.confrelid AS oid FROM t JOIN pg_constraint k ON k.conrelid = t.oid AND k.contype = 'f'
), sequences AS MATERIALIZED (
  SELECT DISTINCT t.oid AS tbl, d.objid AS oid FROM t JOIN pg_depend d
    ON d.refclassid = 'pg_class'::regclass AND d.refobjid = t.oid AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
), rows AS (
  SELECT t.oid AS tbl, 'c' AS catalog, c.oid::text AS key, c.xmin FROM t JOIN pg_class c ON c.oid = t.oid
  UNION ALL
  SELECT p.tbl, 'c', c.oid::text, c.xmin FROM parents p JOIN pg_class c ON c.oid = p.oid
  UNION ALL
  SELECT s.tbl, 'c', c.oid::text, c.xmin FROM sequences s JOIN pg_class c ON c.oid = s.oid
  UNION ALL
  SELECT t.oid, 'a', a.attrelid || '.' || a.attnum, a.xmin FROM t JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum > 0
  UNION ALL
  SELECT p.tbl, 'a', a.attrelid || '.' || a.attnum, a.xmin FROM parents p JOIN pg_attribute a ON a.attrelid = p.oid AND a.attnum > 0
  UNION ALL
  SELECT x.tbl, 'y', y.oid::text, y.xmin FROM (
    SELECT DISTINCT t.oid AS tbl, a.atttypid FROM t JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum > 0
  ) x JOIN pg_type y ON y.oid = x.atttypid
  UNION ALL
  SELECT t.oid, 'd', d.oid::text, d.xmin FROM t JOIN pg_attrdef d ON d.adrelid = t.oid
  UNION ALL
  SELECT t.oid, 'k', k.oid::text, k.xmin FROM t JOIN pg_constraint k ON k.conrelid = t.oid
  UNION ALL
  SELECT t.oid, 'k', k.oid::text, k.xmin FROM t JOIN pg_constraint k ON k.confrelid = t.oid
  UNION ALL
  SELECT t.oid, 'g', g.oid::text, g.xmin FROM t JOIN pg_trigger g ON g.tgrelid = t.oid
  UNION ALL
  SELECT t.oid, 'r', r.oid::text, r.xmin FROM t JOIN pg_rewrite r ON r.ev_class = t.oid
  UNION ALL
  SELECT t.oid, 'p', d.classid || '.' || d.objid || '.' || d.objsubid || '.' || d.refobjsubid || '.' || d.deptype::text, NULL FROM t JOIN pg_depend d
    ON d.refclassid = 'pg_class'::regclass AND d.refobjid = t.oid
)
SELECT t.relname AS table,
       t.oid || ' ' || md5(string_agg(r.catalog || ' ' || r.key || ' ' || coalesce(r.xmin::text, ''), ',' ORDER BY r.catalog, r.key)) AS stamp
FROM t JOIN rows r ON r.tbl = t.oid
GROUP BY t.oid, t.relname
