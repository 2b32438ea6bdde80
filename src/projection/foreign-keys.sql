-- The foreign keys that touch the tables $2 of schema $1, as child or as parent, with their
-- columns in key order. `nullable`: a column of the key may be NULL, so a child row can go in
-- before its parent exists and point at it later (how the runner orders a cycle of keys).
SELECT f.conname AS name,
       cn.nspname AS child_schema, child.relname AS child,
       (SELECT array_agg(a.attname::text ORDER BY k.i) FROM unnest(f.conkey) WITH ORDINALITY AS k(attnum, i)
          JOIN pg_attribute a ON a.attrelid = f.conrelid AND a.attnum = k.attnum) AS columns,
       pn.nspname AS parent_schema, parent.relname AS parent_table,
       parent.relkind = 'p' AS parent_partitioned,
       (SELECT array_agg(a.attname::text ORDER BY k.i) FROM unnest(f.confkey) WITH ORDINALITY AS k(attnum, i)
          JOIN pg_attribute a ON a.attrelid = f.confrelid AND a.attnum = k.attnum) AS parent_columns,
       f.confmatchtype = 's' AS match_simple,
       EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = f.conrelid AND a.attnum = ANY(f.conkey) AND NOT a.attnotnull) AS nullable
  FROM pg_constraint f
  JOIN pg_class child ON child.oid = f.conrelid
  JOIN pg_namespace cn ON cn.oid = child.relnamespace
  JOIN pg_class parent ON parent.oid = f.confrelid
  JOIN pg_namespace pn ON pn.oid = parent.relnamespace
 WHERE f.contype = 'f'
   AND ((cn.nspname = $1 AND child.relname = ANY($2)) OR (pn.nspname = $1 AND parent.relname = ANY($2)))
 ORDER BY child.relname, parent.relname, f.conname
