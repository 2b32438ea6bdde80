-- On start, a failed projection is tried again from its checkpoint (after a fix and a restart).
UPDATE event_store.projections
   SET state = 'running', error = NULL, error_position = NULL, error_event_id = NULL, error_event_type = NULL, updated_at = now()
 WHERE name = ANY($1::text[]) AND state = 'failed'
