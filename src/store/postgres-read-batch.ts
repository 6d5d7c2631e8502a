/**
 * Point reads of one tick in one query, the read side of group commit: a rollout
 * dispatching a thousand devices, or a thousand devices downloading at once, read their
 * device and shadow rows in one round trip instead of a thousand (node-postgres does not
 * pipeline: each query on a connection waits for the previous answer, and every round trip
 * costs a system call on both sides).
 *
 * Reads queued until the current tick's callbacks and promise reactions have run go in one
 * query; a lone read waits no longer than that. Every caller gets its own record, never one
 * shared with another caller of the same key (callers may change what they read).
 */
import { columnsOf } from './postgres-group-commit.ts';

/** The query of a batch: parameter $n is the array of every read's key part n; the result has column `i`, the read's 1-based position. */
export interface PgReadBatchDeps<Row, R> {
  query: (sql: string, params: unknown[]) => Promise<Row[]>;
  sql: string;
  /** The same read for one key (parameters: its parts), cheaper to plan than the batch's join. */
  single: string;
  toRecord: (row: Row) => R;
  /** Most keys in one query. */
  maxBatch?: number;
}

interface Waiter<R> {
  key: readonly string[];
  resolve: (record: R | undefined) => void;
  reject: (err: unknown) => void;
}

/** Batches point reads of one kind of row. */
export class PgReadBatch<Row extends { i?: string | number }, R> {
  private readonly deps: PgReadBatchDeps<Row, R>;
  private pending: Waiter<R>[] = [];

  constructor(deps: PgReadBatchDeps<Row, R>) {
    this.deps = deps;
  }

  /** The record under `key` (its parts, in the order of the query's arrays), or undefined. */
  get(key: readonly string[]): Promise<R | undefined> {
    return new Promise((resolve, reject) => {
      if (this.pending.length === 0) process.nextTick(() => this.flush());
      this.pending.push({ key, resolve, reject });
    });
  }

  private flush(): void {
    const all = this.pending;
    this.pending = [];
    const max = this.deps.maxBatch ?? 1_000;
    for (let start = 0; start < all.length; start += max) void this.run(all.slice(start, start + max));
  }

  private async run(batch: Waiter<R>[]): Promise<void> {
    if (batch.length === 1) {
      const w = batch[0]!;
      try {
        const row = (await this.deps.query(this.deps.single, [...w.key]))[0];
        w.resolve(row && this.deps.toRecord(row));
      } catch (err) {
        w.reject(err);
      }
      return;
    }
    const params = columnsOf(batch.map((w) => w.key));
    let rows: Row[];
    try {
      rows = await this.deps.query(this.deps.sql, params);
    } catch (err) {
      for (const w of batch) w.reject(err);
      return;
    }
    const found: (Row | undefined)[] = new Array(batch.length);
    for (const row of rows) found[Number(row.i) - 1] = row;
    batch.forEach((w, n) => {
      const row = found[n];
      w.resolve(row && this.deps.toRecord(row));
    });
  }
}
