import type pg from 'pg';

/** A row as PostgreSQL sends it in text format: one string (or null) per column. */
export type TextRow = (string | null)[];

/** What node-postgres' connection offers a Submittable (the interface pg-cursor is written against). */
interface Connection {
  stream: { cork?(): void; uncork?(): void };
  parsedStatements: Record<string, string>;
  submittedNamedStatements: Record<string, string>;
  parse(message: { text: string; name: string; types: unknown[] }): void;
  bind(message: { portal: string; statement: string; values: (string | null)[] }): void;
  execute(message: { portal: string; rows: number }): void;
  sync(): void;
  sendCopyFail(message: string): void;
}

/**
 * One execution of a named prepared statement whose result columns the caller knows, through
 * node-postgres' Submittable interface: Parse (once per connection), then Bind, Execute and Sync.
 * `client.query(config)` also sends a Describe every time, for which the server describes the
 * result columns and node-postgres builds a result object, a parser per column and an object per
 * row: about a tenth of the Node.js time of an append that returns one row (bench/append.ts). Here
 * the rows come back as arrays of text. For statements with a fixed result only, and text
 * parameters (strings or null).
 */
class LeanQuery {
  private readonly rows: TextRow[] = [];
  /**
   * Set by node-postgres when the client has a query_timeout: called when the query ends, it
   * clears the timer (which otherwise fires later, and holds the process open till then).
   */
  callback?: (error: unknown) => void;

  constructor(
    readonly name: string,
    readonly text: string,
    private readonly values: (string | null)[],
    private readonly settle: (error: unknown, rows?: TextRow[]) => void,
  ) {}

  submit(connection: Connection): null {
    // Corked: the four messages leave in one write, as node-postgres' own queries do.
    connection.stream.cork?.();
    try {
      if (connection.parsedStatements[this.name] === undefined && connection.submittedNamedStatements[this.name] === undefined) {
        connection.parse({ text: this.text, name: this.name, types: [] });
        connection.submittedNamedStatements[this.name] = this.text;
      }
      connection.bind({ portal: '', statement: this.name, values: this.values });
      connection.execute({ portal: '', rows: 0 });
      connection.sync();
    } finally {
      connection.stream.uncork?.();
    }
    return null;
  }

  handleDataRow(message: { fields: TextRow }): void {
    this.rows.push(message.fields);
  }

  /** Also a lost connection: node-postgres calls it for every query in flight or queued. */
  handleError(error: unknown): void {
    this.callback?.(error);
    this.settle(error);
  }

  handleReadyForQuery(): void {
    this.callback?.(undefined);
    this.settle(undefined, this.rows);
  }

  // Not sent for a statement executed without Describe, or never for this one: nothing to do.
  handleRowDescription(): void {}
  handleCommandComplete(): void {}
  handleEmptyQuery(): void {}
  handlePortalSuspended(): void {}
  handleCopyData(): void {}
  handleCopyInResponse(connection: Connection): void {
    connection.sendCopyFail('not a COPY statement');
  }
}

/** Executes the prepared statement `name` (`text`) with `values` on `client`; its rows as text. */
export function leanQuery(client: pg.ClientBase, name: string, text: string, values: (string | null)[]): Promise<TextRow[]> {
  return new Promise((resolve, reject) => {
    const query = new LeanQuery(name, text, values, (error, rows) => (error ? reject(error) : resolve(rows!)));
    (client as unknown as { query(submittable: LeanQuery): void }).query(query);
  });
}
