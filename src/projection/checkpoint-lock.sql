-- Taken at the start of every batch: the row locks serialise any two appliers of a projection, and
-- the runner compares the positions with its own, so a lost owner can never apply twice; and the
-- fingerprints with its projections' versions, so that it never applies to tables a newer release
-- rebuilt.
SELECT name, position, state, fingerprint FROM event_store.projections WHERE name = ANY($1::text[]) ORDER BY name FOR UPDATE
