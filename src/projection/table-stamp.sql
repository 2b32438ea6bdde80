-- A stamp of the catalog rows that describeTables (columns.ts) reads for the tables $2 of schema
-- $1: their oids, and for their columns and defaults, the constraints on or pointing at them,
-- their own triggers and rules, how many rows and the sum of the rows' transaction ids (xmin).
-- Adding, dropping or altering any of these writes a row with a new xmin; swapping a table for
-- another (a rebuild) changes its oid. A stamp that changes for nothing else (a row rewritten with
-- the same content) only costs a reading of the tables again. xmin is kept when a row is frozen.
WITH t AS MATERIALIZED (
  SELECT array_agg(c.oid ORDER BY c.oid) AS oids FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = $1 AND c.relname = ANY($2)
)
SELECT concat_ws(' ',
  (SELECT array_to_string(t.oids, ',') FROM t),
  (SELECT count(*) || ':' || coalesce(sum(a.xmin::text::bigint), 0) FROM t, pg_attribute a WHERE a.attrelid = ANY(t.oids) AND a.attnum > 0),
  (SELECT count(*) || ':' || coalesce(sum(d.xmin::text::bigint), 0) FROM t, pg_attrdef d WHERE d.adrelid = ANY(t.oids)),
  (SELECT count(*) || ':' || coalesce(sum(k.xmin::text::bigint), 0) FROM t, pg_constraint k WHERE k.conrelid = ANY(t.oids) OR k.confrelid = ANY(t.oids)),
  (SELECT count(*) || ':' || coalesce(sum(g.xmin::text::bigint), 0) FROM t, pg_trigger g WHERE g.tgrelid = ANY(t.oids)),
  (SELECT count(*) || ':' || coalesce(sum(r.xmin::text::bigint), 0) FROM t, pg_rewrite r WHERE r.ev_class = ANY(t.oids))
) AS stamp
