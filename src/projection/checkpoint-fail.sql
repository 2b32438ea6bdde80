UPDATE event_store.projections
   SET state = 'failed', error = $2, error_position = $3, error_event_id = $4, error_event_type = $5, updated_at = now()
 WHERE name = $1
