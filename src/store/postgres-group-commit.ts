/**
 * Group commit for PostgreSQL: writes queued in one tick (and while the previous batch
 * commits) run in arrival order inside ONE transaction on one connection, and every caller
 * is answered after that single commit. So N concurrent writes cost one WAL flush instead
 * of N, and writes of one instance behave exactly as if run one after another (the
 * contract's "in call order").
 *
 * The writes a fleet update is made of (shadow puts, execution updates) are *bulk* writes:
 * the bulk writes of one kind in a batch share ONE statement over the batch's rows, so a batch
 * of a thousand costs a handful of round trips instead of a thousand (each `await` of a
 * query is a round trip: node-postgres does not pipeline). Call order still holds: a bulk
 * write whose row (table and key) is already waiting in the batch, or any other write,
 * first runs every waiting statement, so two writes of one row always run one after the
 * other, and writes of different rows commute.
 *
 * A write that fails in SQL aborts a PostgreSQL transaction as a whole (unlike SQLite), and
 * a deadlock with another instance's batch aborts it too. Then the batch is rolled back and
 * every write of it is re-run in its own transaction, so each caller gets its own outcome
 * and one bad write never fails its neighbours. Writes throw an UpdraftError only when they
 * wrote nothing (a refused insert), which leaves the transaction usable.
 */
import type pg from 'pg';
import { UpdraftError, isUnreachable } from '../errors.ts';
import type { Logger } from '../util/logger.ts';

/**
 * Rows (all of one width) as one array per column: the parameters of a statement that
 * unnests them, `unnest($1::text[], $2::bigint[], ...)`.
 */
export function columnsOf(rows: readonly (readonly unknown[])[]): unknown[][] {
  const width = rows[0]?.length ?? 0;
  return Array.from({ length: width }, (_, c) => rows.map((row) => row[c]));
}

/** One write: runs its statements on the batch's connection; its result settles the caller. */
export type PgWrite<T> = (client: pg.PoolClient) => Promise<T>;

/**
 * Rows (all of one width) as ONE JSON array of arrays: the parameter of a statement that
 * takes them apart server-side (`FROM jsonb_array_elements($1::jsonb) AS r`, then `r->>0`,
 * `(r->>2)::bigint`, `r->5` for a jsonb column). The values of `jsonColumns` are JSON text
 * already (serialized when the write was queued, so a later change to the caller's object
 * cannot reach the batch) and go in as they are; the others are strings, numbers, booleans
 * or null. Against one text array per column, the form node-postgres escapes element by
 * element (a regular expression over each JSON document, twice), this takes a third to a
 * half of the client CPU and about four fifths of the database's for a batch of shadow
 * writes (measured in the fourteenth session, docs/benchmarks-history.md).
 */
export function rowsAsJson(rows: readonly (readonly unknown[])[], jsonColumns: readonly number[] = []): string {
  // one string built by appending: arrays of parts joined took 2.5 times as long
  let out = '[';
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i]!;
    out += i === 0 ? '[' : ',[';
    for (let c = 0; c < row.length; c++) {
      if (c > 0) out += ',';
      const v = row[c];
      if (v === undefined || v === null) out += 'null';
      else if (typeof v === 'number') out += Number.isFinite(v) ? String(v) : 'null';
      else if (typeof v === 'boolean') out += v ? 'true' : 'false';
      else out += jsonColumns.includes(c) ? (v as string) : JSON.stringify(v);
    }
    out += ']';
  }
  return `${out}]`;
}

/** Writes of one kind that can share one statement (an UPDATE ... FROM the rows, an INSERT ... SELECT). */
export interface PgBulkKind {
  /** The table written: the row key of a bulk write is unique within its table. */
  table: string;
  /**
   * The statement for many rows: $1 is every row as one JSON array (`rowsAsJson`); it
   * returns one row per row written, whose key `keyOf` gives.
   */
  many: string;
  /** Positions in a row of values that are JSON text (for `rowsAsJson`). */
  jsonColumns: readonly number[];
  keyOf: (written: Record<string, unknown>) => string;
  /** The same write for one row: true when it wrote. */
  one: (client: pg.PoolClient, row: unknown[]) => Promise<boolean>;
}

interface Bulk {
  kind: PgBulkKind;
  key: string;
  row: unknown[];
}

interface Pending {
  run: PgWrite<unknown>;
  bulk?: Bulk;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

/** Queues writes and commits them in batches, one batch at a time. */
export class PgGroupCommit {
  private readonly deps: { pool: pg.Pool; logger: Logger; maxBatch: number; where: string };
  private queue: Pending[] = [];
  private running: Promise<void> | undefined;

  constructor(deps: { pool: pg.Pool; logger: Logger; maxBatch: number; where: string }) {
    this.deps = deps;
  }

  /** Queues `run`; resolves with its result after its transaction committed. */
  enqueue<T>(run: PgWrite<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => this.push({ run, resolve: resolve as (v: unknown) => void, reject }));
  }

  /** Queues a bulk write of `row` (the row `key` of `kind.table`); resolves true when it wrote. */
  enqueueBulk(kind: PgBulkKind, key: string, row: unknown[]): Promise<boolean> {
    return new Promise<boolean>((resolve, reject) => this.push({ run: (c) => kind.one(c, row), bulk: { kind, key, row }, resolve: resolve as (v: unknown) => void, reject }));
  }

  private push(write: Pending): void {
    this.queue.push(write);
    // the next setImmediate, so every write issued in this tick joins the same batch
    this.running ??= new Promise<void>((done) => setImmediate(done)).then(() => this.loop());
  }

  /** Resolves when every queued write has been settled. */
  async drain(): Promise<void> {
    while (this.running) await this.running;
  }

  private async loop(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, this.deps.maxBatch);
        await this.commit(batch);
      }
    } finally {
      this.running = undefined;
    }
  }

  private async commit(batch: Pending[]): Promise<void> {
    let client: pg.PoolClient;
    try {
      client = await this.deps.pool.connect();
    } catch (err) {
      const failure = pgFailure(`cannot reach PostgreSQL at ${this.deps.where}`, err);
      for (const w of batch) w.reject(failure);
      return;
    }
    let broken: unknown;
    const guard = guardCheckedOut(client, (err) => this.deps.logger.warn('PostgreSQL connection lost during a commit', { error: err.message }));
    try {
      const outcomes = await this.together(client, batch);
      const results = outcomes ?? (await this.oneByOne(client, batch));
      batch.forEach((w, i) => {
        const o = results[i]!;
        if (o.ok) w.resolve(o.value);
        else w.reject(o.error);
      });
    } catch (err) {
      // the connection itself failed (COMMIT lost, server gone): the outcome is unknown
      broken = err;
      const failure = pgFailure(`commit of ${batch.length} writes to PostgreSQL failed`, err);
      this.deps.logger.error('group commit failed', { writes: batch.length, error: messageOf(err) });
      for (const w of batch) w.reject(failure);
    } finally {
      const lost = guard.end();
      client.release(broken instanceof Error ? broken : lost);
    }
  }

  /** The fast path: the whole batch in one transaction; undefined when a statement failed. */
  private async together(client: pg.PoolClient, batch: Pending[]): Promise<Outcome[] | undefined> {
    if (batch.length === 1) return undefined; // one write: the one-by-one path is the same transaction
    const outcomes: Outcome[] = new Array(batch.length);
    // bulk writes waiting for their statement, by kind (indexes into batch), and their rows
    const waiting = new Map<PgBulkKind, number[]>();
    const rows = new Set<string>();
    const flush = async (): Promise<void> => {
      for (const [kind, indexes] of waiting) await this.many(client, kind, indexes, batch, outcomes);
      waiting.clear();
      rows.clear();
    };
    await client.query('BEGIN');
    try {
      for (let i = 0; i < batch.length; i++) {
        const w = batch[i]!;
        if (w.bulk) {
          const row = `${w.bulk.kind.table}\u0000${w.bulk.key}`;
          if (rows.has(row)) await flush();
          rows.add(row);
          const same = waiting.get(w.bulk.kind);
          if (same) same.push(i);
          else waiting.set(w.bulk.kind, [i]);
          continue;
        }
        await flush();
        try {
          outcomes[i] = { ok: true, value: await w.run(client) };
        } catch (err) {
          if (!(err instanceof UpdraftError)) throw err;
          outcomes[i] = { ok: false, error: err };
        }
      }
      await flush();
    } catch (err) {
      await client.query('ROLLBACK');
      this.deps.logger.debug('batch aborted, re-running its writes one by one', { writes: batch.length, error: messageOf(err) });
      return undefined;
    }
    await client.query('COMMIT');
    return outcomes;
  }

  /** Runs the bulk writes `indexes` of one kind in one statement (one row: its own). */
  private async many(client: pg.PoolClient, kind: PgBulkKind, indexes: number[], batch: Pending[], outcomes: Outcome[]): Promise<void> {
    if (indexes.length === 1) {
      const i = indexes[0]!;
      outcomes[i] = { ok: true, value: await kind.one(client, batch[i]!.bulk!.row) };
      return;
    }
    const rows = rowsAsJson(
      indexes.map((i) => batch[i]!.bulk!.row),
      kind.jsonColumns,
    );
    const written = new Set((await client.query(kind.many, [rows])).rows.map((r: Record<string, unknown>) => kind.keyOf(r)));
    for (const i of indexes) outcomes[i] = { ok: true, value: written.has(batch[i]!.bulk!.key) };
  }

  /** Each write in its own transaction: the isolation path. */
  private async oneByOne(client: pg.PoolClient, batch: Pending[]): Promise<Outcome[]> {
    const outcomes: Outcome[] = [];
    for (const w of batch) {
      await client.query('BEGIN');
      try {
        const value = await w.run(client);
        await client.query('COMMIT');
        outcomes.push({ ok: true, value });
      } catch (err) {
        await client.query('ROLLBACK');
        outcomes.push({ ok: false, error: mapPgError(err) });
      }
    }
    return outcomes;
  }
}

/** What a request is answered when PostgreSQL refuses its text (`mapPgError`). */
export const UNSTORABLE_TEXT = 'a value of the request cannot be stored: text may hold neither a NUL character (U+0000) nor an unpaired surrogate (U+D800 to U+DFFF)';

/**
 * A PostgreSQL error as an UpdraftError: bad input is the caller's (BAD_REQUEST), a database
 * out of reach UNAVAILABLE (`pgFailure`), the rest is ours (INTERNAL). An UpdraftError (a
 * refusal of the store's own) passes as it is.
 */
export function mapPgError(err: unknown): UpdraftError {
  if (err instanceof UpdraftError) return err;
  const code = (err as { code?: unknown }).code;
  // text no store keeps, should a value past the edge's checks (`unstorableChar`) hold it:
  // invalid_text_representation (jsonb and a lone surrogate, `\ud800`), untranslatable_character
  // (jsonb and `\u0000`), character_not_in_repertoire (text and U+0000). Our words, not the
  // database's (SQLite keeps both), and the caller's fault, not a 500: the error is the cause
  if (code === '22P02' || code === '22P05' || code === '22021') {
    return new UpdraftError('BAD_REQUEST', UNSTORABLE_TEXT, { cause: err });
  }
  // string too long
  if (code === '22001') {
    return new UpdraftError('BAD_REQUEST', `the database refused the value: ${messageOf(err)}`, { cause: err });
  }
  return pgFailure('PostgreSQL', err);
}

/**
 * `<what>: <the error's message>`: UNAVAILABLE (503 with Retry-After) when PostgreSQL could not
 * be reached, did not answer a connection in time or ended the session (`isUnreachable`: a
 * restart, a failover, a network cut), since that passes with no change anywhere; INTERNAL
 * otherwise (an SQL error, a statement timeout: 57014 is not a connection failure).
 */
function pgFailure(what: string, err: unknown): UpdraftError {
  return new UpdraftError(isUnreachable(err) ? 'UNAVAILABLE' : 'INTERNAL', `${what}: ${messageOf(err)}`, { cause: err });
}

/**
 * A checked-out client has no 'error' listener (the pool's covers idle ones only): a
 * connection that dies between two statements (a failover, a terminated session) would throw
 * an unhandled 'error' event and end the process. This listens until `end`, which gives the
 * error it heard, if any, for the client's release (a broken connection leaves the pool);
 * the statement in flight fails with it on its own.
 */
export function guardCheckedOut(client: pg.PoolClient, onLost?: (err: Error) => void): { end(): Error | undefined } {
  let lost: Error | undefined;
  const listener = (err: Error) => {
    lost ??= err;
    onLost?.(err);
  };
  client.on('error', listener);
  return {
    end: () => {
      client.removeListener('error', listener);
      return lost;
    },
  };
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
