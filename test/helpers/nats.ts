/**
 * NATS for ingestion tests: a stream, subjects and durable consumer of the test's own on the
 * shared NATS server (deleted at teardown), raw publishing (for malformed messages), the
 * consumer's figures, an in-process ingester, and a TCP proxy to cut the database off and
 * restore it.
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import type { ExecutionContext } from 'ava';
import { connect, headers as natsHeaders, type JetStreamManager, type NatsConnection, type PubAck } from 'nats';
import { createIngester, type IngestBatchReport, type IngesterOptions } from '../../src/ingest/consumer.js';
import { ensureIngestion, type ConsumerSettings, type IngestNames } from '../../src/ingest/stream.js';
import type { EventLog } from '../../src/log/types.js';
import { silentLogger } from './projection.js';

export const natsUrl = process.env.NATS_URL || 'nats://127.0.0.1:4222';

export interface TestNats {
  nc: NatsConnection;
  jsm: JetStreamManager;
  names: IngestNames;
  /** The CLI's environment for these names: NATS_URL, NATS_STREAM, NATS_SUBJECT_PREFIX, NATS_DURABLE. */
  env: Record<string, string>;
}

/**
 * A connection and names of the test's own (`CSE_TEST_<hex>` on `cse-test-<hex>.events.>`);
 * with `create`, the stream and the consumer are made now (with the given settings, e.g. a
 * short ack wait), before any `serve` would make them. The stream is deleted at teardown.
 */
export async function testNats(t: ExecutionContext, options: { create?: ConsumerSettings | boolean } = {}): Promise<TestNats> {
  const hex = randomBytes(5).toString('hex');
  const names: IngestNames = { stream: `CSE_TEST_${hex}`, subjectPrefix: `cse-test-${hex}`, durable: `cse-test-${hex}` };
  const nc = await connect({ servers: natsUrl, name: `test ${t.title}` });
  const jsm = await nc.jetstreamManager();
  t.teardown(async () => {
    await jsm.streams.delete(names.stream).catch(() => undefined);
    await nc.close();
  });
  if (options.create) await ensureIngestion(nc, names, options.create === true ? {} : options.create);
  return {
    nc,
    jsm,
    names,
    env: { NATS_URL: natsUrl, NATS_STREAM: names.stream, NATS_SUBJECT_PREFIX: names.subjectPrefix, NATS_DURABLE: names.durable },
  };
}

/** Publishes bytes as they are (no validation) to a subject of the stream; `msgID` sets Nats-Msg-Id. */
export async function publishRaw(
  nc: NatsConnection,
  subject: string,
  body: string | Uint8Array,
  options: { msgID?: string; headers?: Record<string, string> } = {},
): Promise<PubAck> {
  const h = natsHeaders();
  for (const [key, value] of Object.entries(options.headers ?? {})) h.set(key, value);
  return nc.jetstream().publish(subject, typeof body === 'string' ? new TextEncoder().encode(body) : body, {
    headers: h,
    ...(options.msgID ? { msgID: options.msgID } : {}),
  });
}

export interface ConsumerFigures {
  /** Messages in the stream. */
  messages: number;
  pending: number;
  ackPending: number;
  ackFloor: number;
  redelivered: number;
}

export async function consumerFigures(jsm: JetStreamManager, names: IngestNames): Promise<ConsumerFigures> {
  const [consumer, stream] = await Promise.all([jsm.consumers.info(names.stream, names.durable), jsm.streams.info(names.stream)]);
  return {
    messages: stream.state.messages,
    pending: consumer.num_pending,
    ackPending: consumer.num_ack_pending,
    ackFloor: consumer.ack_floor.stream_seq,
    redelivered: consumer.num_redelivered,
  };
}

export interface RunningIngester {
  reports: IngestBatchReport[];
  /** Totals over the reports so far. */
  totals(): { messages: number; appended: number; duplicates: number; rejected: number };
  retries: number;
  /** Stops it (as serve does on SIGTERM) and waits until it has. */
  stop(): Promise<void>;
}

/** An ingester running in this process until stopped (at teardown at the latest). */
export function runIngester(
  t: ExecutionContext,
  options: { nc: NatsConnection; log: EventLog; databaseUrl: string; names: IngestNames } & Partial<IngesterOptions>,
): RunningIngester {
  const reports: IngestBatchReport[] = [];
  const controller = new AbortController();
  const state = { retries: 0 };
  const running = createIngester({
    logger: silentLogger,
    ...options,
    onBatch: (report) => {
      reports.push(report);
      options.onBatch?.(report);
    },
    onRetry: (info) => {
      state.retries += 1;
      options.onRetry?.(info);
    },
  }).run(controller.signal);
  void running.catch(() => undefined); // awaited by stop()
  const stop = async () => {
    controller.abort();
    await running;
  };
  t.teardown(stop);
  return {
    reports,
    totals: () => ({
      messages: reports.reduce((n, r) => n + r.messages, 0),
      appended: reports.reduce((n, r) => n + r.appended.length, 0),
      duplicates: reports.reduce((n, r) => n + r.duplicates, 0),
      rejected: reports.reduce((n, r) => n + r.rejected.length, 0),
    }),
    get retries() {
      return state.retries;
    },
    stop,
  };
}

export interface TcpProxy {
  port: number;
  /** `url` with its host and port replaced by the proxy's. */
  urlThrough(url: string): string;
  /** Drops every connection and refuses new ones (they are closed as soon as they open). */
  cut(): void;
  restore(): void;
  /**
   * Connections open now go silent both ways, without closing (a network partition): what either
   * end sends is held, never delivered. New connections go through as before.
   */
  freeze(): void;
  /** A network cut without resets: freeze(), and new connections are taken but go silent too. */
  partition(): void;
  /**
   * New connections pass the client's first write (a PostgreSQL startup message) and the server's
   * answers, then go silent one way: what the client sends next is held, never delivered (a cut
   * between the connect and the first query). restore() ends it for later connections.
   */
  holdAfterFirstWrite(): void;
  /** Connections dropped by cut() or refused while cut. */
  dropped: number;
}

/** A TCP proxy on 127.0.0.1 (random port) to `target`, closed at teardown. */
export async function tcpProxy(t: ExecutionContext, target: { host: string; port: number }): Promise<TcpProxy> {
  const sockets = new Set<net.Socket>();
  const pairs = new Set<[net.Socket, net.Socket]>();
  let isCut = false;
  let isPartitioned = false;
  let holdingAfterFirstWrite = false;
  let dropped = 0;
  const server = net.createServer((client) => {
    if (isCut) {
      dropped += 1;
      client.destroy();
      return;
    }
    if (isPartitioned) {
      client.pause();
      client.on('error', () => client.destroy());
      sockets.add(client);
      return;
    }
    const upstream = net.connect(target.port, target.host);
    sockets.add(client).add(upstream);
    const close = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
    upstream.pipe(client);
    if (holdingAfterFirstWrite) {
      client.once('data', (first: Buffer) => {
        upstream.write(first);
        client.pause();
      });
      return;
    }
    client.pipe(upstream);
    pairs.add([client, upstream]);
  });
  const freeze = () => {
    for (const [client, upstream] of pairs) {
      client.unpipe(upstream);
      upstream.unpipe(client);
      client.pause();
      upstream.pause();
    }
    pairs.clear();
  };
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  );
  return {
    port,
    urlThrough(url: string) {
      const u = new URL(url);
      u.hostname = '127.0.0.1';
      u.port = String(port);
      return u.toString();
    },
    cut() {
      isCut = true;
      dropped += sockets.size / 2;
      for (const socket of sockets) socket.destroy();
      sockets.clear();
    },
    restore() {
      isCut = false;
      holdingAfterFirstWrite = false;
    },
    holdAfterFirstWrite() {
      holdingAfterFirstWrite = true;
    },
    freeze,
    partition() {
      freeze();
      isPartitioned = true;
    },
    get dropped() {
      return dropped;
    },
  };
}

export interface PrivateNats {
  url: string;
  /** Stops the server (SIGTERM) and waits until it has exited. */
  stop(): Promise<void>;
  /** Starts it again on the same port and storage: JetStream state survives. With `auth`, that user and password instead of the first ones. */
  start(auth?: { user: string; pass: string }): Promise<void>;
  /** Writes `config` as the server's configuration file and has the server reload it (SIGHUP). */
  reload(config: string): Promise<void>;
}

/**
 * A NATS server of the test's own (JetStream, file storage in a temporary directory, a free port
 * on 127.0.0.1), for tests that restart NATS: the shared server must not be touched.
 */
export async function privateNats(t: ExecutionContext, auth?: { user: string; pass: string }, config?: string): Promise<PrivateNats> {
  const { spawn } = await import('node:child_process');
  const fs = await import('node:fs');
  const os = await import('node:os');
  const path = await import('node:path');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cse-nats-'));
  const port = await new Promise<number>((resolve) => {
    const probe = net.createServer().listen(0, '127.0.0.1', () => {
      const { port: free } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(free));
    });
  });
  let child: import('node:child_process').ChildProcess | undefined;
  // A configuration file (users and their permissions, say), when given: reload() rewrites it.
  const configFile = path.join(dir, 'server.conf');
  if (config !== undefined) fs.writeFileSync(configFile, config);
  const start = async (as = auth) => {
    const credentials = as ? ['--user', as.user, '--pass', as.pass] : [];
    const withConfig = config !== undefined ? ['-c', configFile] : [];
    child = spawn('nats-server', [...withConfig, '-js', '-sd', dir, '-a', '127.0.0.1', '-p', String(port), ...credentials], { stdio: 'ignore' });
    const deadline = Date.now() + 15_000;
    for (;;) {
      try {
        const nc = await connect({ servers: `nats://127.0.0.1:${port}`, timeout: 1000, ...as });
        await (await nc.jetstreamManager()).getAccountInfo();
        await nc.close();
        return;
      } catch (error) {
        if (Date.now() > deadline) throw new Error(`private nats-server did not start: ${(error as Error).message}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  };
  const stop = async () => {
    const running = child;
    if (!running || running.exitCode !== null) return;
    const exited = new Promise((resolve) => running.once('exit', resolve));
    running.kill('SIGTERM');
    await exited;
  };
  const reload = async (next: string) => {
    fs.writeFileSync(configFile, next);
    child?.kill('SIGHUP');
  };
  await start();
  t.teardown(async () => {
    await stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return { url: `nats://127.0.0.1:${port}`, stop, start, reload };
}
