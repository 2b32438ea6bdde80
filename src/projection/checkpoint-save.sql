UPDATE event_store.projections SET position = $2, updated_at = now() WHERE name = ANY($1::text[])
