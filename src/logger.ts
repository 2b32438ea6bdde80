import pino from 'pino';

export type Logger = pino.Logger;

/** Structured JSON logs on stderr (contract.md: LOG_LEVEL), so stdout stays free for data (export). */
export function createLogger(level: string, name = 'conda-store-events'): Logger {
  return pino({ name, level }, pino.destination({ fd: 2, sync: true }));
}
