-- The guard of a batch sent in one round trip: locks the checkpoint rows $1 and raises CS101
-- unless their positions, states and fingerprints are $2, $3 and $4
-- (migrations/20260101000700_checkpoint_guard.ts, 20260101001400_checkpoint_guard_fingerprints.ts).
SELECT event_store.expect_checkpoints($1::text[], $2::bigint[], $3::text[], $4::text[])
