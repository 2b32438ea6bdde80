-- A fenced append's check, after its statement in the same transaction (append.ts: appendSteps
-- after append_events(), appendFast after the fast path's statement):
-- holds the fence's row until the append commits, and raises CS009 unless the fence is still at
-- the writer's epoch (migrations/20260101001800_writer_fences.ts). $1 the fence, $2 the epoch.
SELECT event_store.hold_fence($1::text, $2::bigint)
