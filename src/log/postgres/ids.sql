SELECT nextval(('event_store.ids_' || $1)::regclass)::int AS id FROM generate_series(1, $2)
