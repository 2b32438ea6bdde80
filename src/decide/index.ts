/**
 * Append-time rules: from a validated envelope to the append request that carries its key claims,
 * releases and preconditions, so that the log checks them atomically with the append.
 */
import type { Envelope } from '../catalogue/index.js';
import type { AppendRequest, ExpectedVersion } from '../log/types.js';
import { RuleViolationError } from './errors.js';
import { keyChanges } from './keys.js';

export { RuleViolationError } from './errors.js';
export { KEY, keyChanges } from './keys.js';

/** The expected version an envelope is appended with: an aggregate's first event must start its stream. */
function expectedVersionOf(envelope: Envelope, creates: boolean): ExpectedVersion {
  const given = envelope.expectedVersion ?? 'any';
  if (!creates || given === 'no_stream') return given;
  if (given === 'any') return 'no_stream';
  throw new RuleViolationError(envelope.type, envelope.stream, `it starts the stream, so expectedVersion must be "no_stream" or absent, not ${JSON.stringify(given)}`);
}

export function toAppendRequest(envelope: Envelope): AppendRequest {
  const changes = keyChanges(envelope, envelope.stream);
  return {
    stream: envelope.stream,
    expectedVersion: expectedVersionOf(envelope, changes.creates),
    events: [{ id: envelope.id, type: envelope.type, data: envelope.data as Record<string, unknown>, metadata: envelope.metadata ?? {} }],
    claims: changes.claims,
    releases: changes.releases,
    preconditions: changes.preconditions,
  };
}
