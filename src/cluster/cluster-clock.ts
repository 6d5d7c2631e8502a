/**
 * The clock the instances sharing a PostgreSQL store keep jobs by: the database server's.
 *
 * Any instance may record a device's report (it stamps when the device entered its phase,
 * and when its execution is due), and the one holding the rollouts lease judges the
 * deadlines by its own clock. With each instance on its own clock, one 40 s behind the
 * leader cut every step timeout it stamped by 40 s: devices that updated in 3 s were
 * recorded TIMED_OUT (QA, two instances, a 30 s step timeout: 45 of 60). So each instance
 * measures how far its clock is from the database's (at start, before it serves, then every
 * minute) and stamps and judges by `now()`, its own clock corrected by that offset. NTP on
 * every instance is still the rule (manifests, URLs and tokens expire by the instance's own
 * clock, as devices check them): an offset over two seconds is logged as a warning.
 */
import type { StateStore } from '../store/state-store.ts';
import type { Logger } from '../util/logger.ts';

/** How often the offset is measured again (a clock that NTP steps is followed within this). */
const MEASURE_EVERY_MS = 60_000;
/** An offset past this is worth an operator's look. */
const WARN_OFFSET_MS = 2_000;

export interface ClusterClockDeps {
  store: Pick<StateStore, 'databaseTime'>;
  logger: Logger;
  /** This machine's clock (tests set it off). */
  localNow?: () => number;
}

/** The database's clock as seen from this instance; `now` is bound, to be passed as a clock. */
export class ClusterClock {
  private offset = 0;
  private timer: NodeJS.Timeout | undefined;
  private warned = false;
  private readonly localNow: () => number;

  constructor(private readonly deps: ClusterClockDeps) {
    this.localNow = deps.localNow ?? Date.now;
  }

  /** This instance's clock corrected to the database's. */
  readonly now = (): number => this.localNow() + this.offset;

  /** How far the database's clock is ahead of this instance's, in ms (negative: behind). */
  get offsetMs(): number {
    return this.offset;
  }

  /** Measures the offset once (it stays 0 if the store cannot tell), then every minute. */
  async start(): Promise<void> {
    await this.measure();
    this.timer = setInterval(() => void this.measure(), MEASURE_EVERY_MS);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One measurement, the round trip halved (a local database answers within a millisecond). */
  async measure(): Promise<void> {
    if (!this.deps.store.databaseTime) return;
    try {
      const sent = this.localNow();
      const db = await this.deps.store.databaseTime();
      const back = this.localNow();
      this.offset = Math.round(db - (sent + back) / 2);
    } catch (err) {
      this.deps.logger.warn("the database's clock could not be read; job times keep the last offset", { offsetMs: this.offset, error: (err as Error).message });
      return;
    }
    const far = Math.abs(this.offset) > WARN_OFFSET_MS;
    if (far && !this.warned) {
      this.deps.logger.warn(`this instance's clock is ${(Math.abs(this.offset) / 1000).toFixed(1)} s ${this.offset > 0 ? 'behind' : 'ahead of'} the database's: job times are kept by the database's clock, but manifests, URLs and tokens expire by this one; run NTP on every instance`, { offsetMs: this.offset });
    }
    this.warned = far;
  }
}
