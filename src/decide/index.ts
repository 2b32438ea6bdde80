/**
 * Append-time rules: from validated envelopes to append requests that carry their key claims,
 * releases and preconditions, so that the log checks them atomically with the append, plus the
 * rules that need an aggregate's state (build status order). State is folded from the log; a
 * `version` precondition on what was read makes the decision fail, and be taken again, if the
 * stream moved meanwhile.
 */
import { EventValidationError, streamIssue, type CatalogueEvent, type Envelope } from '../catalogue/index.js';
import { upcast } from '../catalogue/upcast.js';
import { PreconditionFailedError } from '../log/errors.js';
import type { AppendRequest, EventLog, ExpectedVersion, Precondition } from '../log/types.js';
import { allowedFrom, evolveBuild, initialBuildState, type BuildState } from './build-state.js';
import { RuleViolationError } from './errors.js';
import { brokenDataRule } from './data-rules.js';
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

/** The append request of one envelope, with the rules that need no state. */
export function toAppendRequest(envelope: Envelope): AppendRequest {
  // The rules read the data at the current schema version, as the projections do (an older
  // version's fields may be named otherwise); the log stores the event as it was sent.
  const current = upcast(envelope);
  // validateEnvelope checks this too, but an envelope built in code need not have been through
  // it: build 8's data appended to build-7 would claim one aggregate's stream for another's row.
  const wrongStream = streamIssue(envelope.type, current.data, envelope.stream);
  if (wrongStream) throw new EventValidationError(envelope.type, [wrongStream]);
  const broken = brokenDataRule(current as CatalogueEvent);
  if (broken) throw new RuleViolationError(envelope.type, envelope.stream, broken.message);
  const changes = keyChanges(current, envelope.stream, envelope.id);
  return {
    stream: envelope.stream,
    expectedVersion: expectedVersionOf(envelope, changes.creates),
    events: [{ id: envelope.id, type: envelope.type, data: envelope.data as Record<string, unknown>, metadata: envelope.metadata ?? {} }],
    claims: changes.claims,
    releases: changes.releases,
    preconditions: changes.preconditions,
  };
}

const STALE = 'changed while this event was being decided';

/**
 * Builds' states for one batch of decisions: read once from the log, then advanced by the batch's
 * own events, except those the log already holds. A duplicate is appended as nothing (the log
 * reports it), so it must not move the state the events after it are decided on: a BuildScheduled
 * delivered again after its build started would otherwise put the build back to QUEUED for the
 * rest of the batch, and refuse the BuildCompleted behind it.
 */
function buildStates(log: EventLog) {
  const known = new Map<string, { state: BuildState; readVersion: number; idsInLog?: ReadonlySet<string> }>();
  return {
    async get(stream: string) {
      let entry = known.get(stream);
      if (!entry) {
        const events = await log.readStream(stream);
        const state = events.reduce((s, e) => evolveBuild(s, e.type), initialBuildState);
        entry = { state, readVersion: events.length - 1, idsInLog: new Set(events.map((e) => e.id)) };
        known.set(stream, entry);
      }
      return entry;
    },
    advance(stream: string, eventType: string, eventId: string) {
      const entry = known.get(stream);
      // No entry: nothing in this batch reads the stream (every read is made before the loop).
      if (entry?.idsInLog?.has(eventId.toLowerCase())) return;
      if (entry) entry.state = evolveBuild(entry.state, eventType);
      else known.set(stream, { state: evolveBuild(initialBuildState, eventType), readVersion: -1 });
    },
  };
}

/**
 * The build stream an envelope's status rules concern: its own. (EnvironmentCurrentBuildSet needs
 * only a build of the environment, a precondition of the log: conda-store sets the first build
 * current while it is QUEUED, and each build that completes; that a build set by hand must be
 * COMPLETED is checked by conda-store's API before it publishes the event.)
 */
function buildStreamOf(envelope: Envelope): string | undefined {
  return envelope.stream.startsWith('build-') ? envelope.stream : undefined;
}

/** The build stream whose state deciding `envelope` reads (a BuildScheduled starts one: nothing to read). */
const buildStateRead = (envelope: Envelope) => (envelope.type === 'BuildScheduled' ? undefined : buildStreamOf(envelope));

export type Decision = { request: AppendRequest; error?: undefined } | { request?: undefined; error: Error };

/**
 * Decides a batch of envelopes in order: each gets its append request, or the rule it breaks.
 * Every rule decided on state read from the log adds a `version` precondition on the stream
 * read (the version it was read at), so a concurrent change fails the append rather than
 * slipping through.
 */
export async function decide(log: EventLog, envelopes: Envelope[]): Promise<Decision[]> {
  const builds = buildStates(log);
  // The builds whose state a rule reads, from the log all at once (the pool runs the reads side
  // by side) rather than one after the other as the loop meets them.
  await Promise.all([...new Set(envelopes.flatMap((envelope) => buildStateRead(envelope) ?? []))].map((stream) => builds.get(stream)));
  const decisions: Decision[] = [];
  for (const envelope of envelopes) {
    try {
      const request = toAppendRequest(envelope);
      const buildStream = buildStateRead(envelope);
      if (buildStream) {
        const entry = await builds.get(buildStream);
        const allowed = allowedFrom[envelope.type];
        if (allowed && !(entry.state.status && allowed.includes(entry.state.status))) {
          throw new RuleViolationError(envelope.type, envelope.stream, `the build is ${entry.state.status ?? 'unknown'} (allowed: ${allowed.join(', ')})`);
        }
        // Every rule decided on the state read from the log, not only the first of the batch: the
        // log checks a version precondition against the stream as it was before the call, so an
        // ArtifactStored ahead of a BuildCompleted in the batch does not leave the completion
        // unguarded against a BuildFailed committed meanwhile by another writer.
        if (allowed && entry.readVersion >= 0) {
          const check: Precondition = { kind: 'version', stream: buildStream, version: entry.readVersion, message: `${buildStream} ${STALE}` };
          request.preconditions = [...(request.preconditions ?? []), check];
        }
      }
      if (buildStreamOf(envelope) === envelope.stream) builds.advance(envelope.stream, envelope.type, envelope.id);
      decisions.push({ request });
    } catch (error) {
      if (!(error instanceof RuleViolationError)) throw error;
      decisions.push({ error });
    }
  }
  return decisions;
}

/**
 * True when an append failed only because a stream read by `decide` moved: decide again. Only
 * `decide` adds `version` preconditions (producers' requests carry expected versions instead).
 */
export function isStaleDecision(error: unknown): boolean {
  return error instanceof PreconditionFailedError && error.condition === 'version';
}
