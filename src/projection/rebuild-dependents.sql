-- The objects that depend on a rebuild group's tables ($1: their names in public), on their row
-- types (and arrays of them) or on a sequence they own: what DROP ... CASCADE of the old tables
-- would drop with them (rebuild.ts, refuseDependents). view: the view, when the object is a view's
-- rule.
WITH grp AS (
  SELECT c.oid, c.reltype FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = 'public' AND c.relname = ANY($1) AND c.relkind = 'r'
), owned AS (
  SELECT grp.oid AS table_oid, grp.oid AS oid, 'pg_class'::regclass AS classid FROM grp
  UNION ALL SELECT grp.oid, grp.reltype, 'pg_type'::regclass FROM grp
  UNION ALL SELECT grp.oid, t.typarray, 'pg_type'::regclass FROM grp JOIN pg_type t ON t.oid = grp.reltype
  UNION ALL SELECT d.refobjid, d.objid, 'pg_class'::regclass FROM pg_depend d JOIN grp ON d.refobjid = grp.oid
   WHERE d.refclassid = 'pg_class'::regclass AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
)
SELECT DISTINCT
       CASE WHEN d.classid = 'pg_rewrite'::regclass THEN (SELECT vn.nspname || '.' || v.relname FROM pg_rewrite w JOIN pg_class v ON v.oid = w.ev_class
                                                           JOIN pg_namespace vn ON vn.oid = v.relnamespace
                                                          WHERE w.oid = d.objid AND w.rulename = '_RETURN') END AS view,
       pg_describe_object(d.classid, d.objid, d.objsubid) AS object, t.relname::text AS table
  FROM pg_depend d
  JOIN owned o ON d.refclassid = o.classid AND d.refobjid = o.oid
  JOIN pg_class t ON t.oid = o.table_oid
 -- normal dependencies, and a trigger's automatic one (a constraint trigger of another table
 -- declared FROM a group table); the group's own parts are excluded below
 WHERE (d.deptype = 'n' OR (d.deptype = 'a' AND d.classid = 'pg_trigger'::regclass))
   -- the group's own constraints (foreign keys between its tables included) and defaults
   AND NOT (d.classid = 'pg_constraint'::regclass AND (SELECT conrelid FROM pg_constraint WHERE oid = d.objid) IN (SELECT oid FROM grp))
   AND NOT (d.classid = 'pg_attrdef'::regclass AND (SELECT adrelid FROM pg_attrdef WHERE oid = d.objid) IN (SELECT oid FROM grp))
   -- the group's own policies and triggers (their expressions name its columns): refused apart (refuseUncarried)
   AND NOT (d.classid = 'pg_policy'::regclass AND (SELECT polrelid FROM pg_policy WHERE oid = d.objid) IN (SELECT oid FROM grp))
   AND NOT (d.classid = 'pg_trigger'::regclass AND (SELECT tgrelid FROM pg_trigger WHERE oid = d.objid) IN (SELECT oid FROM grp))
   -- the group's own rules (refused apart), relations (indexes, sequences, TOAST) and types
   AND NOT (d.classid = 'pg_rewrite'::regclass AND (SELECT ev_class FROM pg_rewrite WHERE oid = d.objid) IN (SELECT oid FROM grp))
   AND NOT (d.classid = 'pg_class'::regclass AND d.objid IN (SELECT oid FROM owned WHERE classid = 'pg_class'::regclass))
   AND NOT (d.classid = 'pg_type'::regclass AND d.objid IN (SELECT oid FROM owned WHERE classid = 'pg_type'::regclass))
   -- what refuseUncarried names (the group's extended statistics, its tables in a publication)
   AND NOT (d.classid = 'pg_statistic_ext'::regclass AND (SELECT stxrelid FROM pg_statistic_ext WHERE oid = d.objid) IN (SELECT oid FROM grp))
   AND NOT (d.classid = 'pg_publication_rel'::regclass)
 ORDER BY 3, 2
