/**
 * The TypeScript producer example of README.md ("NATS contract"), quoted there verbatim from the
 * `import` line down, and run by test/ingest.test.ts against `serve` with the contract's names.
 */
import { connect } from 'nats';
import { publishEvent, requestIds } from 'conda-store-events';

const nc = await connect({ servers: process.env.NATS_URL ?? 'nats://127.0.0.1:4222' });
try {
  // New aggregates get their ids from the store's allocator: `serve` answers condastore.ids.<kind>.
  const [namespaceId] = await requestIds(nc, 'namespace');
  const [environmentId] = await requestIds(nc, 'environment');

  // Each call validates the event against the catalogue (an invalid one throws and nothing is
  // sent), fills in its id and stream, publishes it to condastore.events.<type> with
  // Nats-Msg-Id = its id, and returns once JetStream has stored it. The namespace is acknowledged
  // before the environment is sent, so it is appended first.
  const namespace = await publishEvent(nc, { type: 'NamespaceCreated', data: { namespace_id: namespaceId!, name: 'data-science' } });
  await publishEvent(nc, {
    type: 'EnvironmentCreated',
    data: { environment_id: environmentId!, namespace_id: namespaceId!, name: 'pandas', description: 'pandas and friends' },
    metadata: { producer: 'example', causation_id: namespace.id },
  });
  console.log(`published namespace ${namespaceId} and environment ${environmentId}`);
} finally {
  await nc.drain();
}
