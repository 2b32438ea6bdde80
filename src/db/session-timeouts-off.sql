-- Turns off for this session those of the timeouts named in $1 that this server knows
-- (idle_session_timeout came with PostgreSQL 14: set_config of a name the server does not know
-- fails, a row of pg_settings that is not there sets nothing).
SELECT set_config(name, '0', false) FROM pg_settings WHERE name = ANY($1::text[])
