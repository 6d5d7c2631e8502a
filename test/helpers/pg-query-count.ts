/**
 * Counts the queries this process sends to PostgreSQL (the in-process server's store among
 * them): every pg.Client's query() is seen, which the store's pool calls for each round trip.
 * Nothing is changed on the way: the query goes on as it was called.
 */
import pg from 'pg';

/** Queries seen while a `during` ran. */
export interface QueryLog {
  /**
   * Runs `fn` and answers its value and the text of every query sent meanwhile (by anything in
   * the process); `onQuery` hears each as it is sent, with its index in `queries`.
   */
  during<T>(fn: () => Promise<T>, onQuery?: (text: string, index: number) => void): Promise<{ value: T; queries: string[] }>;
  /** Puts pg.Client's query back. */
  restore(): void;
}

/** Starts watching pg.Client.prototype.query. */
export function watchPgQueries(): QueryLog {
  const original = pg.Client.prototype.query;
  let sink: string[] | undefined;
  let listener: ((text: string, index: number) => void) | undefined;
  (pg.Client.prototype as { query: unknown }).query = function (this: pg.Client, ...args: unknown[]) {
    if (sink) {
      const text = typeof args[0] === 'string' ? args[0] : String((args[0] as { text?: unknown } | undefined)?.text ?? '');
      sink.push(text);
      listener?.(text, sink.length - 1);
    }
    return (original as (...a: unknown[]) => unknown).apply(this, args);
  };
  return {
    async during(fn, onQuery) {
      const queries: string[] = [];
      sink = queries;
      listener = onQuery;
      try {
        return { value: await fn(), queries };
      } finally {
        sink = undefined;
        listener = undefined;
      }
    },
    restore: () => {
      pg.Client.prototype.query = original;
    },
  };
}
