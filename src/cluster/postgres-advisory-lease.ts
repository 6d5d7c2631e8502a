/**
 * A Lease on a PostgreSQL session-level advisory lock: `pg_try_advisory_lock(key)` on one
 * dedicated connection. The lock lives exactly as long as that session, so when the
 * holding instance dies (SIGKILL, network loss) PostgreSQL ends the session and the lock
 * is free for the next instance's acquire(), with no lease expiry to tune; a TCP
 * keepalive bounds how long a silently vanished holder keeps it.
 *
 * Work done under the lease must still use conditional writes: a holder that lost its
 * connection may learn so only at its next acquire(), and the store's version checks make a
 * late write from it fail instead of clobbering the new leader's.
 *
 * A loss is a warning that says why and what follows, whenever it is seen (the connection
 * ending between two acquire()s, as when the database restarts, or a query failing), and the
 * next attempt says whether another instance took over: whoever reads the log of an instance
 * that stopped driving rollouts needs to know it was not a crash of this one, and that nothing
 * is to be done.
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import { isUnreachable } from '../errors.ts';
import type { Logger } from '../util/logger.ts';
import type { Lease } from './lease.ts';

/** One named lease among the instances sharing a database. */
export class PostgresAdvisoryLease implements Lease {
  private readonly deps: { url: string; name: string; logger: Logger };
  private readonly key: string;
  private client: pg.Client | undefined;
  private holding = false;
  /** Set when the lease was lost: the next acquire() says who has it now. */
  private lost = false;
  private terms = 0;
  private noAnswer = false;

  constructor(deps: { url: string; name: string; logger: Logger }) {
    this.deps = deps;
    // a stable 64-bit key from the name (advisory locks take a bigint)
    this.key = BigInt.asIntN(64, BigInt('0x' + createHash('sha256').update(`updraft-lease:${deps.name}`).digest('hex').slice(0, 16))).toString();
  }

  get held(): boolean {
    return this.holding;
  }

  /** Whether the last acquire() could not reach the database (Lease.unreachable). */
  get unreachable(): boolean {
    return this.noAnswer;
  }

  /** Times the lock was taken afresh (Lease.term). */
  get term(): number {
    return this.terms;
  }

  async acquire(): Promise<boolean> {
    try {
      const client = await this.connection();
      if (this.holding) {
        // still our session? then the lock is still ours
        await client.query('SELECT 1');
        return true;
      }
      const { rows } = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1) AS ok', [this.key]);
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
      await this.drop();
      return false;
    }
  }

  /** The session that held the lock is gone: said once, with what follows. */
  private lose(err: Error | undefined): void {
    this.holding = false;
    this.lost = true;
    this.deps.logger.warn(
      `the ${this.deps.name} lease was lost: its PostgreSQL connection ended${err ? ` (${err.message})` : ''}, and PostgreSQL freed the lock with it. Another instance takes the lease over at its next attempt; this one tries to take it again at each of its own`,
      { lease: this.deps.name },
    );
  }

  async release(): Promise<void> {
    const wasHeld = this.holding;
    this.holding = false;
    if (this.client && wasHeld) await this.client.query('SELECT pg_advisory_unlock($1)', [this.key]).catch(() => {});
    await this.drop();
  }

  private async connection(): Promise<pg.Client> {
    if (this.client) return this.client;
    const client = new pg.Client({ connectionString: this.deps.url, keepAlive: true });
    // the session is gone, and the lock with it: between two acquire()s too (a restart of the
    // database, a terminated backend, a network loss), so it is said when it happens
    const gone = (err?: Error) => {
      if (this.client !== client) return;
      this.client = undefined;
      if (this.holding) this.lose(err);
    };
    client.on('error', (err) => gone(err));
    client.on('end', () => gone());
    await client.connect();
    this.client = client;
    return client;
  }

  private async drop(): Promise<void> {
    const c = this.client;
    this.client = undefined;
    await c?.end().catch(() => {});
  }
}
