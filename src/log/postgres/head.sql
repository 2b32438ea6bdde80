SELECT coalesce(max(global_position), 0) AS head FROM event_store.events
