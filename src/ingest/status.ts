/**
 * Ingestion figures for `status`: counters and rejected messages from the database, the
 * consumer's lag from NATS. NATS being unreachable is a figure too, not a failure of `status`.
 */
import { connect } from 'nats';
import type pg from 'pg';
import { statsKey } from './consumer.js';
import { eventsWildcard, isNotFoundError, natsConnectionOptions, redactedNatsUrl, type IngestNames } from './stream.js';

export type NatsFigures =
  | {
      reachable: true;
      /** False when `serve` has not created the consumer yet. */
      consumer: boolean;
      /** Messages in the stream not yet delivered to the ingester. */
      pending: number;
      /** Delivered, not yet acked (being ingested, or waiting for redelivery). */
      ackPending: number;
      /** pending + ackPending: messages not yet in the log. */
      lag: number;
      redelivered: number;
    }
  | { reachable: false; error: string };

export interface IngestionStatus {
  stream: string;
  durable: string;
  subjects: string;
  /** Messages whose event the ingester appended. */
  accepted: number;
  /** Messages whose event was already in the log (redeliveries, retries, republished events). */
  duplicates: number;
  /** The stream sequence of the last message handled (0: none yet). */
  lastSequence: number;
  /** When the stream of that sequence was created (null: not recorded, by an older release). */
  streamCreated: string | null;
  /** Rows of event_store.rejected_messages (all sources). */
  rejected: number;
  lastRejectedAt: string | null;
  nats: NatsFigures;
}

async function natsFigures(natsUrl: string, names: IngestNames, timeoutMs: number): Promise<NatsFigures> {
  let nc;
  try {
    nc = await connect({ ...natsConnectionOptions(natsUrl), timeout: timeoutMs, reconnect: false, maxReconnectAttempts: 0, name: 'conda-store-events status' });
  } catch (error) {
    return { reachable: false, error: (error as Error).message || String(error) };
  }
  try {
    const jsm = await nc.jetstreamManager({ timeout: timeoutMs });
    try {
      const info = await jsm.consumers.info(names.stream, names.durable);
      return {
        reachable: true,
        consumer: true,
        pending: info.num_pending,
        ackPending: info.num_ack_pending,
        lag: info.num_pending + info.num_ack_pending,
        redelivered: info.num_redelivered,
      };
    } catch (error) {
      if (!isNotFoundError(error)) throw error;
      // No consumer yet: the stream (a work queue) holds exactly what no ingester has taken.
      const waiting = await jsm.streams.info(names.stream).then((stream) => stream.state.messages, (streamError: unknown) => {
        if (isNotFoundError(streamError)) return 0;
        throw streamError;
      });
      return { reachable: true, consumer: false, pending: waiting, ackPending: 0, lag: waiting, redelivered: 0 };
    }
  } catch (error) {
    return { reachable: false, error: `JetStream: ${(error as Error).message}` };
  } finally {
    await nc.close().catch(() => undefined);
  }
}

export async function readIngestionStatus(pool: pg.Pool, natsUrl: string, names: IngestNames, options: { timeoutMs?: number } = {}): Promise<IngestionStatus> {
  const [stats, rejected, nats] = await Promise.all([
    // The whole row: stream_created comes with migration 20260101001300, and status still reads a
    // database that lacks it (it then lists the migration as pending).
    pool.query<{ accepted: string; duplicates: string; last_stream_sequence: string; stream_created?: Date | null }>(
      'SELECT * FROM event_store.ingestion_stats WHERE consumer = $1',
      [statsKey(names)],
    ),
    pool.query<{ count: string; last: Date | null }>('SELECT count(*)::text AS count, max(received_at) AS last FROM event_store.rejected_messages'),
    natsFigures(natsUrl, names, options.timeoutMs ?? 2000),
  ]);
  return {
    stream: names.stream,
    durable: names.durable,
    subjects: eventsWildcard(names),
    accepted: Number(stats.rows[0]?.accepted ?? 0),
    duplicates: Number(stats.rows[0]?.duplicates ?? 0),
    lastSequence: Number(stats.rows[0]?.last_stream_sequence ?? 0),
    streamCreated: stats.rows[0]?.stream_created?.toISOString() ?? null,
    rejected: Number(rejected.rows[0]!.count),
    lastRejectedAt: rejected.rows[0]!.last?.toISOString() ?? null,
    nats,
  };
}

/** The lines `status` prints. */
export function formatIngestionStatus(status: IngestionStatus, natsUrl: string): string[] {
  const lines = [
    `ingestion (stream ${status.stream}, consumer ${status.durable}, subjects ${status.subjects}):`,
    `  messages accepted: ${status.accepted}, duplicates: ${status.duplicates}, rejected: ${status.rejected}` +
      (status.lastRejectedAt ? ` (last at ${status.lastRejectedAt}; see event_store.rejected_messages)` : ''),
    `  last stream sequence handled: ${status.lastSequence}`,
  ];
  const nats = status.nats;
  if (!nats.reachable) lines.push(`  NATS unreachable at ${redactedNatsUrl(natsUrl)}: ${nats.error} (lag unknown)`);
  else if (!nats.consumer) lines.push(`  NATS ${redactedNatsUrl(natsUrl)}: consumer ${status.durable} not created yet (serve creates it); ${nats.lag} messages waiting in the stream`);
  else lines.push(`  consumer lag: ${nats.lag} (${nats.pending} not delivered yet, ${nats.ackPending} awaiting ack; ${nats.redelivered} redelivered)`);
  return lines;
}
