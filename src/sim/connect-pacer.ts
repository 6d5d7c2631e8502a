/**
 * The simulator's connect rate: each new connection takes the next slot of a schedule spaced
 * 1000/rate ms apart, so `--connect-rate N` holds at any N (1/s as well as 4,000/s) and in
 * both modes. A slot already due is taken at once (timers fire late: the connections they
 * held back catch up, and the average stays at the rate); a slot less than a millisecond
 * ahead too, since a timer cannot wait less.
 */

/** Time, injectable: tests drive the pacer on a virtual clock and count its waits. */
export interface PacerClock {
  now(): number;
  sleep(ms: number): Promise<void>;
}

export const realClock: PacerClock = {
  now: () => performance.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

export class ConnectPacer {
  private readonly interval: number;
  /** When the next slot is free. */
  private next = -Infinity;

  constructor(
    rate: number,
    private readonly clock: PacerClock = realClock,
  ) {
    if (!(rate > 0)) throw new RangeError(`connect rate must be positive, got ${rate}`);
    this.interval = 1000 / rate;
  }

  /** Resolves when the caller may open its connection (slots are handed out in call order). */
  async take(): Promise<void> {
    const now = this.clock.now();
    const at = Math.max(now, this.next);
    this.next = at + this.interval;
    if (at - now >= 1) await this.clock.sleep(at - now);
  }
}
