INSERT INTO event_store.projections (name) SELECT unnest($1::text[]) ON CONFLICT (name) DO NOTHING
