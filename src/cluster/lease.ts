/**
 * Leadership for work that one instance at a time must drive (rollouts: waves, rate
 * limits, timeouts), docs/design.md §7. The rollout engine asks `acquire` before each round of
 * work and does the round only while it holds the lease; another instance takes over
 * within one renewal period after the holder dies. State stays in the store, so the new
 * leader continues from what was committed.
 *
 * Implementations: `InProcessLease` (embedded, one process: always the leader) and
 * `PostgresAdvisoryLease` (several instances on one PostgreSQL).
 */

/** A named lease that at most one holder has at a time. */
export interface Lease {
  /** Tries to take (or keep) the lease; true while this instance holds it. Never throws for "held elsewhere". */
  acquire(): Promise<boolean>;
  /** True if this instance held the lease at its last acquire() and has not lost it since. */
  readonly held: boolean;
  /**
   * How many times this instance has taken the lease afresh. A holder that lost it and took
   * it again between two acquire()s has a new term: another instance may have led meanwhile,
   * and what it left in flight is recovered as after any takeover.
   */
  readonly term: number;
  /**
   * True when the last acquire() got no answer (the database that holds the lease could not be
   * reached), not "held elsewhere": the rollout engine tells an outage from a follower's wait.
   */
  readonly unreachable?: boolean;
  /** Gives the lease up (others can take it at once) and releases resources. */
  release(): Promise<void>;
}

/** The embedded topology: one process, so it always leads. */
export class InProcessLease implements Lease {
  private holding = false;
  private terms = 0;

  get held(): boolean {
    return this.holding;
  }

  get term(): number {
    return this.terms;
  }

  async acquire(): Promise<boolean> {
    if (!this.holding) this.terms++;
    this.holding = true;
    return true;
  }

  async release(): Promise<void> {
    this.holding = false;
  }
}
