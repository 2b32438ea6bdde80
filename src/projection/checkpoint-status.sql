SELECT name, position, state, fingerprint, error, error_position, error_event_id, error_event_type, updated_at
FROM event_store.projections ORDER BY name
