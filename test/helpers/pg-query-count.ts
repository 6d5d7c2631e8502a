/**
 * Counts the queries this process sends to PostgreSQL (the in-process server's store among
 * them): every pg.Client's query() is seen, which the store's pool calls for each round trip.
 * Nothing is changed on the way: the query goes on as it was called.
 */
import pg from 'pg';

/** Queries seen while a `during` ran. */
export interface QueryLog {
  /** Runs `fn` and answers its value and the text of every query sent meanwhile (by anything in the process). */
  during<T>(fn: () => Promise<T>): Promise<{ value: T; queries: string[] }>;
  /** Puts pg.Client's query back. */
  restore(): void;
}

/** Starts watching pg.Client.prototype.query. */
export function watchPgQueries(): QueryLog {
  const original = pg.Client.prototype.query;
  let sink: string[] | undefined;
  (pg.Client.prototype as { query: unknown }).query = function (this: pg.Client, ...args: unknown[]) {
    if (sink) sink.push(typeof args[0] === 'string' ? args[0] : String((args[0] as { text?: unknown } | undefined)?.text ?? ''));
    return (original as (...a: unknown[]) => unknown).apply(this, args);
  };
  return {
    async during(fn) {
      const queries: string[] = [];
      sink = queries;
      try {
        return { value: await fn(), queries };
      } finally {
        sink = undefined;
      }
    },
    restore: () => {
      pg.Client.prototype.query = original;
    },
  };
}
