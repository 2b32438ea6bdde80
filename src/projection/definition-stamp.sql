-- A stamp of the definition of each of the tables $1 of schema public: an md5 of every catalog row
-- that readTableDefinitions (table-definition.ts) reads for it, each as its catalog, key and
-- transaction id (xmin). DDL writes the rows it changes with a new xmin (VACUUM and ANALYZE
-- update pg_class in place, and a frozen row keeps its xmin), so the stamp moves with any change
-- to the table, its columns, defaults, constraints, indexes, sequences, TOAST table, triggers,
-- rules, policies, publications, extended statistics, inheritance, privileges, options and
-- comments. The swap compares it under its locks, in one statement, against the stamp taken when
-- it last read the definitions in full (rebuild.ts). Not table-stamp.sql, the runner's: that one
-- covers what describeTables reads (and the parents of foreign keys), and runs before every large
-- batch of a catch-up, where the comments, indexes, policies and options this one reads would
-- only cost time; this one runs once per swap attempt.
WITH t AS MATERIALIZED (
  SELECT c.oid, c.relname FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY($1)
), related AS MATERIALIZED (
  -- The table itself, its indexes, its TOAST table and the sequences it owns.
  SELECT t.oid AS tbl, t.oid AS oid FROM t
  UNION SELECT t.oid, i.indexrelid FROM t JOIN pg_index i ON i.indrelid = t.oid
  UNION SELECT t.oid, c.reltoastrelid FROM t JOIN pg_class c ON c.oid = t.oid WHERE c.reltoastrelid <> 0
  UNION SELECT t.oid, d.objid FROM t JOIN pg_depend d
    ON d.refclassid = 'pg_class'::regclass AND d.refobjid = t.oid AND d.classid = 'pg_class'::regclass AND d.deptype = 'a'
), rows AS (
  SELECT r.tbl, 'class' AS catalog, c.oid::text AS key, c.xmin::text AS xmin FROM related r JOIN pg_class c ON c.oid = r.oid
  UNION ALL SELECT r.tbl, 'index', i.indexrelid::text, i.xmin::text FROM related r JOIN pg_index i ON i.indexrelid = r.oid
  UNION ALL SELECT r.tbl, 'sequence', s.seqrelid::text, s.xmin::text FROM related r JOIN pg_sequence s ON s.seqrelid = r.oid
  UNION ALL SELECT r.tbl, 'attribute', a.attrelid || '.' || a.attnum, a.xmin::text FROM related r JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0
  UNION ALL SELECT r.tbl, 'description', d.objoid || '.' || d.classoid || '.' || d.objsubid, d.xmin::text FROM related r JOIN pg_description d ON d.objoid = r.oid
  UNION ALL SELECT t.oid, 'type', y.oid::text, y.xmin::text FROM t JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum > 0 JOIN pg_type y ON y.oid = a.atttypid
  UNION ALL SELECT t.oid, 'default', d.oid::text, d.xmin::text FROM t JOIN pg_attrdef d ON d.adrelid = t.oid
  UNION ALL SELECT t.oid, 'constraint', k.oid::text, k.xmin::text FROM t JOIN pg_constraint k ON k.conrelid = t.oid
  UNION ALL SELECT t.oid, 'constraint comment', d.objoid || '.' || d.objsubid, d.xmin::text
    FROM t JOIN pg_constraint k ON k.conrelid = t.oid JOIN pg_description d ON d.objoid = k.oid AND d.classoid = 'pg_constraint'::regclass
  UNION ALL SELECT t.oid, 'trigger', g.oid::text, g.xmin::text FROM t JOIN pg_trigger g ON g.tgrelid = t.oid
  UNION ALL SELECT t.oid, 'rule', w.oid::text, w.xmin::text FROM t JOIN pg_rewrite w ON w.ev_class = t.oid
  UNION ALL SELECT t.oid, 'policy', p.oid::text, p.xmin::text FROM t JOIN pg_policy p ON p.polrelid = t.oid
  -- Every publication that publishes the table, by name, FOR ALL TABLES or by its schema: one
  -- created meanwhile, of any kind, moves the stamp.
  UNION ALL SELECT t.oid, 'publication', p.oid::text, p.xmin::text
    FROM t JOIN pg_publication_tables pt ON pt.schemaname = 'public' AND pt.tablename = t.relname JOIN pg_publication p ON p.pubname = pt.pubname
  UNION ALL SELECT t.oid, 'statistics', x.oid::text, x.xmin::text FROM t JOIN pg_statistic_ext x ON x.stxrelid = t.oid
  UNION ALL SELECT t.oid, 'inherits', h.inhrelid || '.' || h.inhparent, h.xmin::text FROM t JOIN pg_inherits h ON h.inhrelid = t.oid OR h.inhparent = t.oid
)
SELECT t.relname::text AS table,
       t.oid || ' ' || md5(coalesce(string_agg(r.catalog || ' ' || r.key || ' ' || r.xmin, ',' ORDER BY r.catalog, r.key), '')) AS stamp
FROM t LEFT JOIN rows r ON r.tbl = t.oid
GROUP BY t.oid, t.relname
ORDER BY 1
