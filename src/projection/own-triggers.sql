-- Tables of $2 in schema $1 whose inserts need more than their foreign-key triggers: triggers or
-- rules of their own, or a deferrable unique, primary-key or exclusion constraint (checked by an
-- internal trigger). The runner never turns their triggers off (see key-checks.ts).
SELECT c.relname AS table
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1 AND c.relname = ANY($2)
   AND (EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal)
        OR EXISTS (SELECT 1 FROM pg_rewrite r WHERE r.ev_class = c.oid AND r.rulename <> '_RETURN')
        OR EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype IN ('p', 'u', 'x') AND k.condeferrable))
