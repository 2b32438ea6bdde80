-- The server settings the store relies on without setting them itself (README, "Configuration"):
-- autovacuum takes the tables' statistics, and needs track_counts to know when.
SELECT current_setting('autovacuum') AS autovacuum, current_setting('track_counts') AS track_counts
