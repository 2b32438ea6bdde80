/**
 * Ingestion as `serve` runs it: a NATS connection that reconnects by itself, the ingester and the
 * id-allocation responder on it, and a clean stop: stop fetching, finish and ack the in-flight
 * batch, drain the connection (acks and replies flushed), close.
 */
import { connect, type NatsConnection } from 'nats';
import type { EventLog } from '../log/types.js';
import type { Logger } from '../logger.js';
import { createIngester, type IngesterOptions } from './consumer.js';
import { startIdsResponder } from './ids-responder.js';
import { redactedNatsUrl, resolveNames, serviceConnectionOptions, type IngestNames } from './stream.js';
import { sleep } from '../sleep.js';

export interface IngestionServiceOptions extends Pick<IngesterOptions, 'batchSize' | 'consumer' | 'onBatch' | 'onRetry'> {
  natsUrl: string;
  log: EventLog;
  databaseUrl: string;
  logger: Logger;
  names?: Partial<IngestNames>;
  signal: AbortSignal;
}

/** Connects, retrying (with a warning) until NATS answers or `signal` aborts. */
async function connectUntil(natsUrl: string, logger: Logger, signal: AbortSignal): Promise<NatsConnection | undefined> {
  for (let attempt = 0; !signal.aborted; attempt++) {
    try {
      // After this first connection, the client reconnects by itself, forever.
      return await connect({ ...serviceConnectionOptions(natsUrl, 'conda-store-events serve'), waitOnFirstConnect: false, timeout: 5000 });
    } catch (error) {
      const delayMs = Math.min(1000 * 2 ** attempt, 15_000);
      if (attempt === 0 || delayMs >= 15_000) logger.warn({ err: error, natsUrl: redactedNatsUrl(natsUrl), delayMs }, 'NATS unreachable: ingestion waits for it (projections go on)');
      await sleep(delayMs, signal);
    }
  }
  return undefined;
}

/** Runs until `signal` aborts, then stops cleanly. */
export async function runIngestion(options: IngestionServiceOptions): Promise<void> {
  const { logger, signal } = options;
  const names = resolveNames(options.names);
  const nc = await connectUntil(options.natsUrl, logger, signal);
  if (!nc) return;
  logger.info({ natsUrl: redactedNatsUrl(options.natsUrl), server: nc.getServer() }, 'connected to NATS');
  void (async () => {
    for await (const status of nc.status()) {
      if (status.type === 'disconnect' || status.type === 'reconnect' || status.type === 'error') {
        logger[status.type === 'reconnect' ? 'info' : 'warn']({ nats: status.type, data: String(status.data) }, `NATS ${status.type}`);
      }
    }
  })().catch(() => undefined);

  const responder = startIdsResponder(nc, options.log, logger, names);
  try {
    await createIngester({ ...options, nc, names, logger: logger.child({ component: 'ingest' }) }).run(signal);
  } finally {
    // Every id request in hand answered first, then the drain: pending acks, naks and id replies
    // go out, and the connection closes. With NATS down the drain ends without closing it
    // (nats.js), and the connection's reconnect timers would keep a process that embeds this
    // running: closed then, saying what could not be sent.
    await responder.stop();
    await nc.drain().catch((error) => logger.warn({ err: error }, 'NATS drain failed'));
    if (!nc.isClosed()) {
      logger.warn('NATS unreachable at the stop: acks not sent come back as redeliveries, which the log takes as duplicates');
      await nc.close().catch(() => undefined);
    }
  }
}
