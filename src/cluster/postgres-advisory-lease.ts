/**
 * A Lease on a PostgreSQL session-level advisory lock: `pg_try_advisory_lock(key)` on one
 * dedicated connection. The lock lives exactly as long as that session, so when the
 * holding instance dies (SIGKILL, network loss) PostgreSQL ends the session and the lock
 * is free for the next instance's acquire(), with no lease expiry to tune; a TCP
 * keepalive bounds how long a silently vanished holder keeps it.
 *
 * Work done under the lease must still use conditional writes: a holder that lost its
 * connection learns so only at its next acquire(), and the store's version checks make a
 * late write from it fail instead of clobbering the new leader's.
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import type { Logger } from '../util/logger.ts';
import type { Lease } from './lease.ts';

/** One named lease among the instances sharing a database. */
export class PostgresAdvisoryLease implements Lease {
  private readonly deps: { url: string; name: string; logger: Logger };
  private readonly key: string;
  private client: pg.Client | undefined;
  private holding = false;

  constructor(deps: { url: string; name: string; logger: Logger }) {
    this.deps = deps;
    // a stable 64-bit key from the name (advisory locks take a bigint)
    this.key = BigInt.asIntN(64, BigInt('0x' + createHash('sha256').update(`updraft-lease:${deps.name}`).digest('hex').slice(0, 16))).toString();
  }

  get held(): boolean {
    return this.holding;
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
      if (this.holding) this.deps.logger.info('lease acquired', { lease: this.deps.name });
      return this.holding;
    } catch (err) {
      if (this.holding) this.deps.logger.warn('lease lost with its database session', { lease: this.deps.name, error: (err as Error).message });
      this.holding = false;
      await this.drop();
      return false;
    }
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
    client.on('error', () => {
      // the session is gone, and the lock with it
      this.holding = false;
      this.client = undefined;
    });
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
