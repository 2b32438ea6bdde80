SELECT event_id, global_position, stream_version, recorded_at, duplicate
FROM event_store.append_events(
  $1::uuid[], $2::int[], $3::text[], $4::jsonb[], $5::jsonb[],
  $6::text[], $7::text[],
  $8::int[], $9::text[], $10::text[], $11::text[],
  $12::int[], $13::text[], $14::text[],
  $15::int[], $16::text[], $17::text[], $18::text[], $19::text[]
)
