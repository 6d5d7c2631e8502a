/**
 * The log of the "not yet" refusals of CA moves (certificate-renewal.ts): an agent whose --ca
 * bundle names a CA made by a rollover asks to move to it, and this server, which has not
 * switched to a newer CA, answers 409.
 *
 * Two kinds of agents ask. Those given the next CA (`updraft ca rollover --prepare`) ask an
 * hour apart until the switch: the expected state for weeks. And "orphans", whose bundle holds
 * no CA that issued their certificate but some other CA carrying the rollover extension (a
 * server CA renewed by another product writes the same one, agent/certificate-renewer.ts):
 * they ask once a day for as long as they run, and no switch ends it. The line said once an
 * hour at most with a count was said once an hour for ever by a fleet with a few dozen
 * orphans, telling the operator, wrongly, that a switch was awaited.
 *
 * So each device is said once (per server start; the last 100,000 remembered): its first
 * refusal counts into the line, said at once or, within the hour after the last one, at the
 * first refusal (of any device) after that hour; its later ones are at debug only. The line names the devices (the first
 * ten) and both causes, so that an orphan, which keeps its certificate and renews it as usual
 * when it is due, is found and its --ca bundle put right, and no refusal goes unsaid.
 */
import type { Logger } from '../util/logger.ts';
import { rememberLru } from '../util/lru.ts';

/** The "not yet" refusals of devices not said before are said at most once in this long, with their count. */
export const NOT_YET_LOG_INTERVAL_MS = 3_600_000;

/** How many devices already said are remembered (the oldest forgotten first: said again, once). */
const REMEMBERED = 100_000;

/** The device ids named in one line at most. */
const NAMED = 10;

/** Says the "not yet" refusals of CA moves: each device once, at most one line an hour. */
export class NotYetLog {
  /** Devices whose refusal was counted into a line (said, or to be said). */
  private readonly said = new Map<string, true>();
  /** Devices first refused since the last line, and how many (their ids: the first NAMED). */
  private count = 0;
  private named: string[] = [];
  /** When the last line was said (ms; undefined: none yet). */
  private loggedAt: number | undefined;

  constructor(
    private readonly logger: Logger,
    private readonly now: () => number,
  ) {}

  /** A move of `deviceId` refused as "not yet", for `reason`: at debug always, in the INFO line for its first. */
  refused(deviceId: string, reason: string): void {
    this.logger.debug('certificate renewal refused', { deviceId, reason });
    if (!this.said.has(deviceId)) {
      rememberLru(this.said, deviceId, true, REMEMBERED);
      this.count++;
      if (this.named.length < NAMED) this.named.push(deviceId);
    }
    // what is held is said at the first refusal after the hour, whoever's: held for a new
    // device's first, an orphan held so with none after it was never said (review of aaee903)
    if (this.count === 0) return;
    const now = this.now();
    if (this.loggedAt !== undefined && now - this.loggedAt < NOT_YET_LOG_INTERVAL_MS) return;
    this.logger.info(
      'certificate moves to a newer CA refused as "not yet": this server has not switched to a newer CA. Expected until the switch while one is prepared (updraft ca rollover --prepare); with none prepared, these devices\' --ca bundle holds another CA made by a rollover, not this server\'s next one: they keep their certificates (renewed as usual), put their --ca right. Each device is said once',
      {
        devices: this.count,
        deviceIds: this.named.join(' '),
        ...(this.loggedAt !== undefined ? { since: new Date(this.loggedAt).toISOString() } : {}),
      },
    );
    this.loggedAt = now;
    this.count = 0;
    this.named = [];
  }
}
