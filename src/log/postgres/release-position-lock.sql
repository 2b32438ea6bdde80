-- Releases the position lock (7402/0, a session lock) if this connection still holds it: after a
-- fast-path append that failed between taking and releasing it (append-stream.sql), so that the
-- connection never goes back to its pool holding what every other appender waits for.
SELECT pg_advisory_unlock(7402, 0)
FROM pg_locks
WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
  AND classid = 7402 AND objid = 0 AND objsubid = 2 AND mode = 'ExclusiveLock'
