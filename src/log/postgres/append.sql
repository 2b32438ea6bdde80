SELECT event_id, global_position, stream_version, recorded_at, duplicate
FROM event_store.append_events(
  $1::uuid[], $2::int[], $3::text[], $4::text[], $5::jsonb[], $6::jsonb[],
  $7::text[], $8::text[],
  $9::int[], $10::text[], $11::text[], $12::text[], $13::text[],
  $14::int[], $15::text[], $16::text[],
  $17::int[], $18::text[], $19::text[], $20::text[], $21::text[]
)
