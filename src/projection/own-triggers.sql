-- Tables of $2 in schema $1 with triggers or rules of their own (not the ones PostgreSQL makes
-- for constraints): the runner never turns those off (see foreign-key-checks.ts).
SELECT c.relname AS table
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1 AND c.relname = ANY($2)
   AND (EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal)
        OR EXISTS (SELECT 1 FROM pg_rewrite r WHERE r.ev_class = c.oid AND r.rulename <> '_RETURN'))
