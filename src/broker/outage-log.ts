/**
 * The errors of a connection to an external broker while the broker cannot be reached. mqtt.js
 * emits `error` at every failed reconnect attempt (ECONNREFUSED once a second by default), and
 * each was a WARN line: a QA pass stopping Mosquitto for 45 s got 44 from the request
 * connection and 44 from the event relay's, about 7,000 lines an hour per instance for a
 * longer outage. Now an outage is logged as a database or bucket outage is (ThrottledLog):
 * its first error at once, then at most one line per 30 s with the count of those left out,
 * and the count still pending when the connection is back (the caller writes the "back" line).
 */
import { ThrottledLog } from '../util/log-throttle.ts';
import type { Logger } from '../util/logger.ts';

/** One connection's errors, throttled per outage. */
export class BrokerOutageLog {
  private readonly logger: Logger;
  private readonly msg: string;
  private readonly fields: Record<string, unknown>;
  /** The outage in progress: its throttle and how many errors it had; none while connected. */
  private outage: { log: ThrottledLog; errors: number } | undefined;

  constructor(logger: Logger, msg: string, fields: Record<string, unknown> = {}) {
    this.logger = logger;
    this.msg = msg;
    this.fields = fields;
  }

  /** An mqtt.js `error`: the first of an outage is written, the rest throttled. */
  error(err: Error): void {
    // a throttle per outage: the first error of the next outage is written at once, even
    // within 30 s of this one's last line (it may have another cause)
    this.outage ??= { log: new ThrottledLog(this.logger), errors: 0 };
    this.outage.errors++;
    this.outage.log.warn(this.msg, { ...this.fields, error: err.message });
  }

  /** The connection is back: writes the count left out, if any; returns the outage's errors (0: none). */
  back(): number {
    const outage = this.outage;
    this.outage = undefined;
    outage?.log.close();
    return outage?.errors ?? 0;
  }

  /** The connection is closed for good: the count left out, if any, is written now. */
  close(): void {
    this.back();
  }
}
