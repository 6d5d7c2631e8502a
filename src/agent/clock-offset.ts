/**
 * How far this device's clock is from the server's, read from the `timestamp` (the server's
 * seconds) of the answers to the device's own requests.
 *
 * Devices get their clocks wrong: no RTC battery, an RTC set to local time instead of UTC,
 * NTP blocked by a firewall. A clock ahead by more than a command's lifetime (the signed
 * manifest's, an hour by default) makes every update look expired. The agent therefore:
 * - judges what the *server* enforces (a download URL's or credential's expiry) by the
 *   server's time, so it neither asks again and again for URLs it takes for expired nor
 *   waits for a 403 to learn one is;
 * - keeps its own clock for what it enforces itself against a compromised distribution path
 *   (a manifest's or key certificate's expiry: a forged answer timestamp must not make a
 *   stale manifest look fresh), and names the offset in the refusal, so the operator sees
 *   "set the device's clock" rather than a riddle;
 * - reports an offset of a minute or more as `reported.agent.clockOffsetSeconds`, so that
 *   the fleet's wrong clocks can be listed.
 */

/** An offset at least this large (seconds, either way) is a wrong clock. */
export const WRONG_CLOCK_SECONDS = 60;
/** An answer slower than this says too little about when it was stamped. */
const MAX_ROUND_TRIP_MS = 5_000;

/** The latest estimate of this device's clock minus the server's. */
export class ClockOffset {
  private offsetSeconds: number | undefined;

  /**
   * Takes in an answer stamped `serverSeconds` (floored to the second) that came back between
   * `sentAtMs` and `receivedAtMs` by this device's clock; returns the new estimate, or
   * undefined when the answer says too little.
   */
  observe(sentAtMs: number, receivedAtMs: number, serverSeconds: unknown): number | undefined {
    if (typeof serverSeconds !== 'number' || !Number.isFinite(serverSeconds) || serverSeconds <= 0) return undefined;
    if (receivedAtMs < sentAtMs || receivedAtMs - sentAtMs > MAX_ROUND_TRIP_MS) return undefined;
    const deviceSeconds = (sentAtMs + receivedAtMs) / 2000;
    this.offsetSeconds = Math.round(deviceSeconds - (serverSeconds + 0.5));
    return this.offsetSeconds;
  }

  /** Seconds this device's clock is ahead of the server's (negative: behind), when known. */
  get seconds(): number | undefined {
    return this.offsetSeconds;
  }

  /** The server's time (ms) at device time `deviceNowMs`: the device's own when the offset is unknown. */
  serverTime(deviceNowMs: number): number {
    return deviceNowMs - (this.offsetSeconds ?? 0) * 1000;
  }

  /** ", by this device's clock, which is 2 h 0 min ahead of the server's: set it" when the clock is wrong; '' otherwise. */
  hint(): string {
    const s = this.offsetSeconds;
    if (s === undefined || Math.abs(s) < WRONG_CLOCK_SECONDS) return '';
    return ` by this device's clock, which is ${describeSeconds(Math.abs(s))} ${s > 0 ? 'ahead of' : 'behind'} the server's: set the device's clock (NTP, or an RTC kept in UTC)`;
  }
}

/** 7260 → "2 h 1 min"; 75 → "1 min 15 s". */
export function describeSeconds(total: number): string {
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  if (h > 0) return `${h} h ${m} min`;
  if (m > 0) return `${m} min${s ? ` ${s} s` : ''}`;
  return `${s} s`;
}
