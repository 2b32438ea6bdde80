import type pg from 'pg';

/** A row as PostgreSQL sends it in text format: one string (or null) per column. */
export type TextRow = (string | null)[];

/** What node-postgres' connection offers a Submittable (the interface pg-cursor is written against). */
interface Connection {
  stream: { cork?(): void; uncork?(): void };
  parsedStatements: Record<string, string>;
  close(message: { type: 'S' | 'P'; name: string }): void;
  parse(message: { text: string; name: string; types: unknown[] }): void;
  bind(message: { portal: string; statement: string; values: (string | null)[] }): void;
  execute(message: { portal: string; rows: number }): void;
  sync(): void;
  sendCopyFail(message: string): void;
}

/** One statement of a pipeline: a prepared statement's name, its text, and its parameters as text (or null). */
export interface PipelineStep {
  name: string;
  text: string;
  values: (string | null)[];
}

/**
 * Executions of named prepared statements whose result columns the caller knows, through
 * node-postgres' Submittable interface, in one round trip: for each statement Parse (once per
 * connection), Bind and Execute, then one Sync. `client.query(config)` also sends a Describe
 * every time, for which the server describes the result columns and node-postgres builds a
 * result object, a parser per column and an object per row: about a tenth of the Node.js time of
 * an append that returns one row (bench/append.ts). Here the rows come back as arrays of text.
 * For statements with a fixed result only, and text parameters (strings or null).
 *
 * Should a statement fail, PostgreSQL skips the messages after it up to the Sync: later
 * statements do not run, and within a transaction the caller rolls back. Which statements are
 * prepared on the connection is kept in node-postgres' own record (`parsedStatements`), written
 * here since node-postgres only writes it for a query with a name of its own.
 */
class LeanPipeline {
  private readonly rows: TextRow[][] = [];
  /** Steps whose Parse this submission sent, and how many steps have completed. */
  private readonly parsing: number[] = [];
  private completed = 0;
  private failed = false;
  private connection?: Connection;
  /**
   * Set by node-postgres when the client has a query_timeout: called when the query ends, it
   * clears the timer (which otherwise fires later, and holds the process open till then).
   */
  callback?: (error: unknown) => void;

  constructor(
    readonly steps: readonly PipelineStep[],
    private readonly settle: (error: unknown, rows?: TextRow[][]) => void,
  ) {}

  submit(connection: Connection): Error | null {
    this.connection = connection;
    // Refused before anything is written: a value the serializer throws on half-way through the
    // messages would leave them without their Sync, and the connection waiting for ever. A
    // returned error is reported through handleError, and the connection stays usable.
    for (const step of this.steps) {
      const index = step.values.findIndex((value) => value !== null && typeof value !== 'string');
      if (index >= 0) return new TypeError(`statement ${step.name}: parameter $${index + 1} is ${typeof step.values[index]}, not text (a string) or null`);
    }
    // Corked: every message leaves in one write, as node-postgres' own queries do.
    connection.stream.cork?.();
    try {
      this.steps.forEach((step, i) => {
        if (connection.parsedStatements[step.name] === undefined) {
          // A statement whose Parse went out in a pipeline that failed may or may not exist on
          // the server (the failing step's own Parse may have succeeded): Close first, which is
          // no error for a statement that does not exist, so that Parse finds the name free.
          connection.close({ type: 'S', name: step.name });
          connection.parse({ text: step.text, name: step.name, types: [] });
          this.parsing.push(i);
        }
        connection.bind({ portal: '', statement: step.name, values: step.values });
        connection.execute({ portal: '', rows: 0 });
      });
      connection.sync();
    } finally {
      connection.stream.uncork?.();
    }
    return null;
  }

  /** Records as prepared the statements parsed by a step that completed. */
  private recordParsed(): void {
    for (const i of this.parsing) {
      if (i < this.completed) this.connection!.parsedStatements[this.steps[i]!.name] = this.steps[i]!.text;
    }
  }

  handleDataRow(message: { fields: TextRow }): void {
    (this.rows[this.completed] ??= []).push(message.fields);
  }

  handleCommandComplete(): void {
    this.completed += 1;
  }

  handleEmptyQuery(): void {
    this.completed += 1;
  }

  /** Also a lost connection: node-postgres calls it for every query in flight or queued. */
  handleError(error: unknown): void {
    this.failed = true;
    this.recordParsed();
    this.callback?.(error);
    this.settle(error);
  }

  handleReadyForQuery(): void {
    if (this.failed) return; // settled by handleError (after a query_timeout, ReadyForQuery may still come)
    this.recordParsed();
    this.callback?.(undefined);
    this.settle(undefined, this.steps.map((_, i) => this.rows[i] ?? []));
  }

  // Not sent for a statement executed without Describe, or never for these: nothing to do.
  handleRowDescription(): void {}
  handlePortalSuspended(): void {}
  handleCopyData(): void {}
  handleCopyInResponse(connection: Connection): void {
    connection.sendCopyFail('not a COPY statement');
  }
}

/** Prepared statement names for statements built at run time (`stepOf`), one per text. */
const namesByText = new Map<string, string>();
let nextName = 0;

/**
 * A step for a statement whose text is built at run time, its prepared statement named after its
 * text. Only for texts from a bounded set of shapes (a projection's INSERT for a table and its
 * columns, with its rows as one parameter): each text stays prepared on every connection that ran
 * it, for the connection's life.
 */
export function stepOf(text: string, values: (string | null)[]): PipelineStep {
  let name = namesByText.get(text);
  if (name === undefined) namesByText.set(text, (name = `cse_run_${nextName++}`));
  return { name, text, values };
}

/** Executes `steps` on `client` in one round trip (see LeanPipeline); the rows of each step, as text. */
export function leanPipeline(client: pg.ClientBase, steps: readonly PipelineStep[]): Promise<TextRow[][]> {
  return new Promise((resolve, reject) => {
    const query = new LeanPipeline(steps, (error, rows) => (error ? reject(error) : resolve(rows!)));
    (client as unknown as { query(submittable: LeanPipeline): void }).query(query);
  });
}

/**
 * Executes the prepared statement `name` (`text`) with `values` on `client`; its rows as text.
 * A name used here (or in a pipeline) is not for `client.query({ name })` too: a statement whose
 * Parse succeeded in a pipeline that then failed exists on the server without node-postgres
 * knowing, and client.query would prepare it again (42P05).
 */
export async function leanQuery(client: pg.ClientBase, name: string, text: string, values: (string | null)[]): Promise<TextRow[]> {
  return (await leanPipeline(client, [{ name, text, values }]))[0]!;
}
