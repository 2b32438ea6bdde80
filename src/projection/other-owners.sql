-- The owners of the live tables $1 (schema public) other than the rebuilding role, in name order
-- (rebuild.ts: they get USAGE and CREATE on the shadow schema).
SELECT DISTINCT pg_get_userbyid(c.relowner)::text AS owner
FROM pg_class c
WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY ($1)
  AND c.relowner <> (SELECT oid FROM pg_roles WHERE rolname = current_user)
ORDER BY 1
