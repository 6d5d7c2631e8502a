/**
 * A Lease on a PostgreSQL session-level advisory lock: `pg_try_advisory_lock(key)` on one
 * dedicated connection. The lock lives exactly as long as that session, so when the
 * holding instance dies (SIGKILL, a crash) PostgreSQL ends the session and the lock
 * is free for the next instance's acquire(), with no lease expiry to tune.
 *
 * Every acquire() ends within a bound, also against a database that hangs (a network
 * partition that drops packets, a stuck server: the connection is open and nothing answers):
 * connecting waits at most `connectTimeoutMs`, each query at most `queryTimeoutMs`. A timeout
 * is "not held, unreachable", and the session is closed, so the next acquire() starts a fresh
 * one. A holder checks its session at each acquire() (`SELECT 1`): a check left unanswered for
 * `queryTimeoutMs` counts as lost, so the holder stops leading at its first silent check, while
 * PostgreSQL keeps the lock for that session until it ends it itself (its TCP keepalive, or
 * the close sent when the network comes back): another instance cannot have the lock before.
 *
 * Work done under the lease must still use conditional writes: a holder learns that its
 * session ended only at its next acquire() (or when the connection reports it), and the
 * store's version checks make a late write from it fail instead of clobbering the new
 * leader's (docs/deployment.md, "Several instances": the bound).
 *
 * A loss is a warning that says why and what follows, whenever it is seen (the connection
 * ending between two acquire()s, as when the database restarts, or a query failing or getting
 * no answer), and the next attempt says whether another instance took over: whoever reads the
 * log of an instance that stopped driving rollouts needs to know it was not a crash of this
 * one, and that nothing is to be done.
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import { isUnreachable, UpdraftError } from '../errors.ts';
import type { Logger } from '../util/logger.ts';
import type { Lease } from './lease.ts';

/** What a PostgresAdvisoryLease needs. */
export interface PostgresAdvisoryLeaseDeps {
  /** The database the instances share (`--db`). */
  url: string;
  /** The lease's name: instances contend for the same name; different names are independent. */
  name: string;
  logger: Logger;
  /**
   * Longest a new session may take to connect (TCP, TLS, authentication) before acquire()
   * gives up: "not held, unreachable". The state store's own connect timeout by default.
   */
  connectTimeoutMs?: number;
  /**
   * Longest a query of the lease (taking the lock, the holder's check of its session,
   * releasing) may wait for its answer before it counts as none: not held, unreachable, the
   * session closed. Bounds how long a holder cut from the database goes on leading.
   */
  queryTimeoutMs?: number;
}

/** The defaults of PostgresAdvisoryLeaseDeps. */
export const LEASE_DEFAULTS = {
  // the PostgreSQL store's connect timeout (PostgresStoreDeps.connectTimeoutMs)
  connectTimeoutMs: 30_000,
  // its queries answer in a round trip (pg_try_advisory_lock never waits): 10 s of silence
  // is a database that does not answer, not a slow one
  queryTimeoutMs: 10_000,
} as const;

/**
 * node-postgres's errors for its own timeouts (lib/client.js): `connectionTimeoutMillis`
 * destroys the socket with 'timeout expired', `query_timeout` fails the query with 'Query read
 * timeout'. Neither carries a code, so errors.ts's isUnreachable() does not know them.
 */
const PG_TIMEOUTS = new Set(['timeout expired', 'Query read timeout']);

/** One named lease among the instances sharing a database. */
export class PostgresAdvisoryLease implements Lease {
  private readonly deps: PostgresAdvisoryLeaseDeps;
  private readonly key: string;
  private client: pg.Client | undefined;
  private holding = false;
  /** Set when the lease was lost: the next acquire() says who has it now. */
  private lost = false;
  private terms = 0;
  private noAnswer = false;
  /** The acquire() under way: callers that overlap (a timer faster than a timeout) share it. */
  private attempt: Promise<boolean> | undefined;

  constructor(deps: PostgresAdvisoryLeaseDeps) {
    this.deps = deps;
    // a stable 64-bit key from the name (advisory locks take a bigint)
    this.key = BigInt.asIntN(64, BigInt('0x' + createHash('sha256').update(`updraft-lease:${deps.name}`).digest('hex').slice(0, 16))).toString();
  }

  get held(): boolean {
    return this.holding;
  }

  /** Whether the last acquire() could not reach the database, or got no answer in time (Lease.unreachable). */
  get unreachable(): boolean {
    return this.noAnswer;
  }

  /** Times the lock was taken afresh (Lease.term). */
  get term(): number {
    return this.terms;
  }

  private get connectTimeoutMs(): number {
    return this.deps.connectTimeoutMs ?? LEASE_DEFAULTS.connectTimeoutMs;
  }

  private get queryTimeoutMs(): number {
    return this.deps.queryTimeoutMs ?? LEASE_DEFAULTS.queryTimeoutMs;
  }

  acquire(): Promise<boolean> {
    // one at a time: two sessions of this instance would contend for the lock with each other
    this.attempt ??= this.tryAcquire().finally(() => (this.attempt = undefined));
    return this.attempt;
  }

  private async tryAcquire(): Promise<boolean> {
    try {
      const client = await this.connection();
      if (this.holding) {
        // still our session? then the lock is still ours; no answer in time counts as lost
        await this.ask(client, 'SELECT 1');
        return true;
      }
      const { rows } = await this.ask<{ ok: boolean }>(client, 'SELECT pg_try_advisory_lock($1) AS ok', [this.key]);
      this.holding = rows[0]?.ok === true;
      if (this.holding) this.terms++;
      if (this.holding) this.deps.logger.info(this.lost ? 'lease taken again after losing it' : 'lease acquired', { lease: this.deps.name });
      else if (this.lost) this.deps.logger.warn(`the ${this.deps.name} lease is held by another instance now (it took over after this one lost it); this instance keeps trying to take it at each attempt`, { lease: this.deps.name });
      this.lost = false;
      this.noAnswer = false;
      return this.holding;
    } catch (err) {
      this.noAnswer = isUnreachable(err);
      if (this.holding) this.lose(err as Error);
      this.holding = false;
      // a session that did not answer may answer later: closed, so no late answer is taken for
      // this attempt's, and the next attempt starts a fresh one
      await this.drop(true);
      return false;
    }
  }

  /** A query on the lease's session; no answer within queryTimeoutMs is UNAVAILABLE. */
  private async ask<R extends pg.QueryResultRow = pg.QueryResultRow>(client: pg.Client, sql: string, params?: unknown[]): Promise<pg.QueryResult<R>> {
    try {
      return await client.query<R>(sql, params);
    } catch (err) {
      throw noAnswer(err, `PostgreSQL did not answer the ${this.deps.name} lease's query within ${this.queryTimeoutMs} ms`);
    }
  }

  /** The session that held the lock is gone, or silent: said once, with what follows. */
  private lose(err: Error | undefined): void {
    this.holding = false;
    this.lost = true;
    // only noAnswer() makes UpdraftErrors here: the session is silent, not ended
    if (err instanceof UpdraftError) {
      this.deps.logger.warn(
        `the ${this.deps.name} lease is given up: ${err.message} (a network partition or a stuck server). This instance stops now, before PostgreSQL can give the lock to another instance (only once it ends this session), and tries to take the lease again at each attempt`,
        { lease: this.deps.name },
      );
      return;
    }
    this.deps.logger.warn(
      `the ${this.deps.name} lease was lost: its PostgreSQL connection ended${err ? ` (${err.message})` : ''}, and PostgreSQL freed the lock with it. Another instance takes the lease over at its next attempt; this one tries to take it again at each of its own`,
      { lease: this.deps.name },
    );
  }

  async release(): Promise<void> {
    // an acquire() under way would otherwise leave a session (and the lock) behind this release
    await this.attempt?.catch(() => false);
    const wasHeld = this.holding;
    this.holding = false;
    let answered = true;
    if (this.client && wasHeld) await this.ask(this.client, 'SELECT pg_advisory_unlock($1)', [this.key]).catch(() => (answered = false));
    await this.drop(!answered);
  }

  private async connection(): Promise<pg.Client> {
    if (this.client) return this.client;
    const client = new pg.Client({
      connectionString: this.deps.url,
      keepAlive: true,
      connectionTimeoutMillis: this.connectTimeoutMs,
      // client side: a partition or a stuck server never answers, so a server-side
      // statement_timeout would never fire (and these queries never wait on a lock)
      query_timeout: this.queryTimeoutMs,
    });
    // the session is gone, and the lock with it: between two acquire()s too (a restart of the
    // database, a terminated backend, a network loss), so it is said when it happens
    const gone = (err?: Error) => {
      if (this.client !== client) return;
      this.client = undefined;
      if (this.holding) this.lose(err);
    };
    client.on('error', (err) => gone(err));
    client.on('end', () => gone());
    try {
      await client.connect();
    } catch (err) {
      throw noAnswer(err, `PostgreSQL did not answer the ${this.deps.name} lease's connection within ${this.connectTimeoutMs} ms`);
    }
    this.client = client;
    return client;
  }

  /**
   * Closes the session. `force`: at once, without the goodbye whose answer a database that
   * does not answer would make end() wait for for ever (node-postgres waits for the socket to
   * close); the server frees the lock when the close reaches it.
   */
  private async drop(force: boolean): Promise<void> {
    const c = this.client;
    this.client = undefined;
    if (!c) return;
    const ended = c.end().catch(() => {});
    if (force) c.connection.stream.destroy();
    else {
      // a graceful end bounded as a query is: the database may stop answering just now
      const timer = setTimeout(() => c.connection.stream.destroy(), this.queryTimeoutMs);
      timer.unref();
      await ended;
      clearTimeout(timer);
    }
    await ended;
  }
}

/** `err` as UNAVAILABLE with `message` when it is one of node-postgres's timeouts; as it is otherwise. */
function noAnswer(err: unknown, message: string): unknown {
  return err instanceof Error && PG_TIMEOUTS.has(err.message) ? new UpdraftError('UNAVAILABLE', message, { cause: err }) : err;
}
