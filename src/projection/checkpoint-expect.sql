-- The guard of a batch sent in one round trip: locks the checkpoint rows $1 and raises CS101
-- unless their positions and states are $2 and $3 (migrations/20260101000700_checkpoint_guard.ts).
SELECT event_store.expect_checkpoints($1::text[], $2::bigint[], $3::text[])
