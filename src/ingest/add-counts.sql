-- Adds to the ingestion counters of consumer $1: $2 accepted, $3 duplicates, $4 rejected; $5 the
-- last stream sequence handled (0: none in these counts), of the stream created at $6. Several
-- processes write here (one owner at a time, but an older owner's write may come late): within
-- one stream the greatest sequence wins; a stream created again (numbered from 1 again) replaces
-- the sequence of the one before; a write without a creation time (an older release) keeps the
-- greatest, as before.
INSERT INTO event_store.ingestion_stats AS s (consumer, accepted, duplicates, rejected, last_stream_sequence, stream_created, updated_at)
VALUES ($1, $2, $3, $4, $5, CASE WHEN $5::bigint > 0 THEN $6::timestamptz END, now())
ON CONFLICT (consumer) DO UPDATE SET
  accepted = s.accepted + excluded.accepted,
  duplicates = s.duplicates + excluded.duplicates,
  rejected = s.rejected + excluded.rejected,
  last_stream_sequence = CASE
    WHEN excluded.last_stream_sequence = 0 THEN s.last_stream_sequence
    WHEN excluded.stream_created > s.stream_created OR (s.stream_created IS NULL AND excluded.stream_created IS NOT NULL) THEN excluded.last_stream_sequence
    WHEN excluded.stream_created < s.stream_created THEN s.last_stream_sequence
    ELSE greatest(s.last_stream_sequence, excluded.last_stream_sequence) END,
  stream_created = greatest(s.stream_created, excluded.stream_created),
  updated_at = now()
