import test from 'ava';
import { connect } from 'nats';
import { JetStreamPublishError, publishAcked, PublishNotAcknowledgedError } from '../src/ingest/jetstream-acks.js';
import { publishEvent, publishEvents, type PublishFailure } from '../src/ingest/publish.js';
import { eventSubject } from '../src/ingest/stream.js';
import { natsUrl, testNats } from './helpers/nats.js';

test('acknowledgements of many publishes in flight on one connection each reach their own publish', async (t) => {
  const nats = await testNats(t, { create: true });
  const subject = eventSubject(nats.names, 'NamespaceCreated');
  const ids = Array.from({ length: 300 }, (_, i) => `id-${i}`);
  const acks = await Promise.all(ids.map((id) => publishAcked(nats.nc, subject, JSON.stringify({ id }), id, nats.names.stream, 5000)));
  t.deepEqual(acks.map((ack) => ack.seq), ids.map((_, i) => i + 1), 'sent in order, each told its own sequence');
  t.true(acks.every((ack) => ack.stream === nats.names.stream && !ack.duplicate));
  const again = await publishAcked(nats.nc, subject, JSON.stringify({ id: 'id-7' }), 'id-7', nats.names.stream, 5000);
  t.deepEqual(again, { stream: nats.names.stream, seq: 8, duplicate: true });
});

test('a refusal by JetStream (another stream expected) rejects with its description and code', async (t) => {
  const nats = await testNats(t, { create: true });
  const error = await t.throwsAsync(publishAcked(nats.nc, eventSubject(nats.names, 'NamespaceCreated'), '{}', 'x', 'NOT_THIS_STREAM', 5000), {
    instanceOf: JetStreamPublishError,
    message: /expected stream does not match/,
  });
  t.is(error!.code, 400);
  t.is((await nats.jsm.streams.info(nats.names.stream)).state.messages, 0);
});

test('no acknowledgement (a plain subscriber that never answers) rejects with a timeout; a late answer is ignored', async (t) => {
  const nats = await testNats(t);
  const subject = `${nats.names.subjectPrefix}.silent`;
  let reply: string | undefined;
  const silent = nats.nc.subscribe(subject, { callback: (_error, msg) => (reply = msg.reply) });
  t.teardown(() => silent.unsubscribe());
  await nats.nc.flush();
  const timeout = await t.throwsAsync(publishAcked(nats.nc, subject, '{}', 'late', nats.names.stream, 200), { instanceOf: PublishNotAcknowledgedError, message: /within 200 ms/ });
  t.is(timeout!.reason, 'timeout');
  // The timeout may fire before the message is read (a stalled worker): the server sends it
  // before the PONG of a flush.
  await nats.nc.flush();
  t.truthy(reply);
  nats.nc.publish(reply!, JSON.stringify({ stream: nats.names.stream, seq: 1 }));
  await nats.nc.flush();
  t.pass('a late acknowledgement settles nothing twice');
});

// Regression (bench/ingest, 2026-12-07): a publisher that went
// on with synchronous work after sending (validating its next 150,000 events) failed its sent
// publishes on their deadlines: the timers run before the socket is read, so the acknowledgements
// waiting there, or the publishes still in the client's buffer, were never looked at.
test('time the publishing process is held up (its event loop blocked) does not count against the acknowledgement timeout', async (t) => {
  const nats = await testNats(t, { create: true });
  const subject = eventSubject(nats.names, 'NamespaceCreated');
  const publishing = Promise.all(['held-1', 'held-2'].map((id) => publishAcked(nats.nc, subject, JSON.stringify({ id }), id, nats.names.stream, 1000)));
  const until = Date.now() + 3000;
  while (Date.now() < until) {
    // held up: three times the timeout, before the publishes have even left
  }
  const acks = await publishing;
  t.deepEqual(acks.map((ack) => ack.seq), [1, 2]);
});

test('a connection that closes with publishes in flight rejects them as not acknowledged (the message may be stored: a retry is safe)', async (t) => {
  const nats = await testNats(t);
  const nc = await connect({ servers: natsUrl });
  const subject = `${nats.names.subjectPrefix}.silent`;
  const silent = nats.nc.subscribe(subject, { callback: () => undefined });
  t.teardown(() => silent.unsubscribe());
  await nats.nc.flush();
  const pending = publishAcked(nc, subject, '{}', 'lost', nats.names.stream, 60_000);
  await nc.close();
  const closed = await t.throwsAsync(pending, { instanceOf: PublishNotAcknowledgedError, message: /connection closed before JetStream acknowledged/ });
  t.is(closed!.reason, 'closed');
});

test('publishing on a connection already closed rejects (it does not throw), and nothing is left waiting', async (t) => {
  const nats = await testNats(t, { create: true });
  const nc = await connect({ servers: natsUrl });
  await nc.close();
  const publishing = publishAcked(nc, eventSubject(nats.names, 'NamespaceCreated'), '{}', 'never', nats.names.stream, 5000);
  t.true(publishing instanceof Promise);
  await t.throwsAsync(publishing, { message: /closed/i });
  t.is((await nats.jsm.streams.info(nats.names.stream)).state.messages, 0);
});

// Regression: an event published without an id got a fresh one at each call, and the failure did
// not say which: a retry of the same call went out as another event.
test('a failed publish carries the envelope it sent, id filled in, so that a retry is the same event', async (t) => {
  const nats = await testNats(t);
  const nc = await connect({ servers: natsUrl });
  const event = { type: 'NamespaceCreated' as const, data: { namespace_id: 7, name: 'data-science' } };
  // Someone listens on the subject but never acknowledges: the publish waits until the connection closes.
  const silent = nats.nc.subscribe(eventSubject(nats.names, 'NamespaceCreated'), { callback: () => undefined });
  t.teardown(() => silent.unsubscribe());
  await nats.nc.flush();
  const one = publishEvent(nc, event, { names: nats.names, timeoutMs: 60_000 });
  const many = publishEvents(nc, [event, { ...event, data: { namespace_id: 8, name: 'ml' } }], { names: nats.names, timeoutMs: 60_000 });
  await nc.close();
  const failed = await t.throwsAsync(one, { instanceOf: PublishNotAcknowledgedError });
  const { envelope } = failed as PublishFailure;
  t.like(envelope, { type: 'NamespaceCreated', stream: 'namespace-7', data: event.data });
  t.regex(envelope!.id, /^[0-9a-f-]{36}$/);
  const { envelopes } = (await t.throwsAsync(many, { instanceOf: PublishNotAcknowledgedError })) as PublishFailure;
  t.deepEqual(envelopes!.map((e) => e.stream), ['namespace-7', 'namespace-8']);
  t.true(envelopes!.every((e) => /^[0-9a-f-]{36}$/.test(e.id)), JSON.stringify(envelopes));
  t.not(envelopes![0]!.id, envelope!.id);
});

// Regression: a failure woke the loop that waits for room in the window, which then sent one
// more event ahead of the one that failed.
test('publishEvents sends nothing more once a publish of its window has failed', async (t) => {
  const nats = await testNats(t);
  const received: string[] = [];
  const silent = nats.nc.subscribe(eventSubject(nats.names, 'NamespaceCreated'), { callback: (_error, msg) => void received.push(msg.string()) });
  t.teardown(() => silent.unsubscribe());
  await nats.nc.flush();
  const events = [1, 2, 3, 4, 5].map((id) => ({ type: 'NamespaceCreated' as const, data: { namespace_id: id, name: `ns-${id}` } }));
  await t.throwsAsync(publishEvents(nats.nc, events, { names: nats.names, timeoutMs: 200, maxInFlight: 2 }), { instanceOf: PublishNotAcknowledgedError });
  await nats.nc.flush();
  t.is(received.length, 2, 'the window, and nothing after the failure');
});
