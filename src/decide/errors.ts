import { EventLogError } from '../log/errors.js';

/** An event that breaks an append-time rule of events.md (status order, creation first, ...). */
export class RuleViolationError extends EventLogError {
  override name = 'RuleViolationError';
  constructor(readonly eventType: string, readonly stream: string, reason: string) {
    super(`${eventType} on ${stream}: ${reason}`);
  }
}
