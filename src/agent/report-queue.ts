/**
 * Serializes the agent's reports: one in flight at a time, so the server sees them in order
 * even across retries. A report still waiting in the queue is replaced by a newer one of the
 * same job: reports carry the whole state, so only the latest matters (a progress report by
 * a later one, a phase by the next phase). Backpressure, not loss: while the server answers
 * quickly every phase is sent; when its answers lag (a fleet updating at once), a device
 * sends DOWNLOADING then, say, SUCCESS instead of four reports, and the broker and replica
 * carry fewer messages exactly when they are busiest. The outcome (SUCCESS, FAILURE) is
 * never replaced.
 *
 * A job's progress and phase reports are also paced: one per `intervalMs` at most, and
 * never sooner than ten times the last report's round trip after it, the one waiting being
 * replaced by newer ones meanwhile. A job's first report (the command was taken:
 * IN_PROGRESS) and its outcome go at once. On a real device a phase lasts seconds to
 * minutes and each is reported; a job that races through its phases (a small artifact, a
 * quick install) costs two reports instead of four or five. The round trip is the
 * backpressure: a server answering in 300 ms (a fleet updating at once) hears at most one
 * phase report per 3 s from each device.
 *
 * A phase report also waits until the phase has lasted `settleMs`: one that is over by then
 * (a quick install, reported as INSTALLING and then SUCCESS back to back) is folded into the
 * next report. Measured on a simulated fleet whose installs take no time: under load the
 * download outlasted the pace, so INSTALLING went out just before SUCCESS, 0.9 reports (and
 * about 2.7 MQTT messages) per device that said nothing the outcome did not.
 *
 * The stretch is at most `maxPaceMs` (10 s), and a round trip that spanned a lost connection
 * is not taken: it measured the outage, not the server. A 12 s outage during a report (three
 * attempts, a reconnect) was taken as a 25 s round trip and held the next phase report for
 * minutes, and the server's step timeout ended a healthy update TIMED_OUT (QA, 2026-12-07).
 *
 * The pace is measured on a monotonic clock, not the wall clock: a device's clock stepped
 * back (an RTC kept in local time, then corrected by NTP) put the last report an hour in the
 * future and held every phase report for that hour, and one stepped forward during a round
 * trip stretched the pause to ten times the step; the server then timed out a healthy update.
 */
import type { JsonObject } from '../protocol/json.ts';
import { MONOTONIC_CLOCK, type MonotonicClock } from './monotonic-clock.ts';

interface Waiter {
  resolve: (ack: JsonObject) => void;
  reject: (err: unknown) => void;
}

interface Queued {
  software: JsonObject;
  waiters: Waiter[];
  /** When the first report now folded into this entry was submitted (`clock` ms). */
  queuedAt: number;
}

const OUTCOMES: ReadonlySet<string> = new Set(['SUCCESS', 'FAILURE']);
/** A paced report waits at least this many round trips of the previous one. */
const RTT_FACTOR = 10;
/** The longest the round trips stretch the pace (ms): a server's step timeout counts from a phase's report. */
export const MAX_PACE_MS = 10_000;

/** An ordered queue of reports that coalesces a job's reports not yet sent. */
export class ReportQueue {
  private readonly send: (software: JsonObject) => Promise<JsonObject>;
  private readonly queue: Queued[] = [];
  private readonly intervalMs: number;
  private readonly settleMs: number;
  private readonly clock: MonotonicClock;
  private readonly maxPaceMs: number;
  private busy = false;
  /** The connection was down at some point while the report in flight was on its way (`connection`). */
  private sendInterrupted = false;
  /** The agent's connection is down (`connection`): a report sent now waits for the reconnect. */
  private offline = false;
  private lastSent: { jobId: unknown; at: number } = { jobId: undefined, at: -Infinity };
  /** Round trip of the last report (publish to accepted), ms. */
  private lastRttMs = 0;
  /** Ends the pacing wait early: a newer report (maybe an outcome) arrived. */
  private wake: (() => void) | undefined;

  /** `send` publishes one report and resolves with its accepted answer; `clock` (tests) defaults to MONOTONIC_CLOCK. */
  constructor(send: (software: JsonObject) => Promise<JsonObject>, opts: { intervalMs?: number; settleMs?: number; maxPaceMs?: number; clock?: MonotonicClock } = {}) {
    this.send = send;
    this.intervalMs = opts.intervalMs ?? 0;
    this.settleMs = opts.settleMs ?? 0;
    this.maxPaceMs = opts.maxPaceMs ?? MAX_PACE_MS;
    this.clock = opts.clock ?? MONOTONIC_CLOCK;
  }

  /**
   * The agent's connection went up or down. The round trip of a report that was on its way
   * while it was down, lost with a report in flight or sent while offline, is the outage's, not
   * the server's: it is not taken as the pace.
   */
  connection(online: boolean): void {
    this.offline = !online;
    if (!online && this.busy) this.sendInterrupted = true;
  }

  /**
   * Queues a report. Resolves with the accepted answer of this report, or of a newer one
   * that replaced it before it was sent; rejects when that one failed for good.
   */
  submit(software: JsonObject): Promise<JsonObject> {
    return new Promise((resolve, reject) => {
      const last = this.queue[this.queue.length - 1];
      if (last && last.software.jobId === software.jobId && !OUTCOMES.has(String(last.software.status))) {
        last.software = software;
        last.waiters.push({ resolve, reject });
      } else {
        this.queue.push({ software, waiters: [{ resolve, reject }], queuedAt: this.clock.now() });
      }
      if (!this.busy) void this.pump();
      else this.wake?.();
    });
  }

  private async pump(): Promise<void> {
    this.busy = true;
    for (let next = this.queue[0]; next; next = this.queue[0]) {
      const paced = !OUTCOMES.has(String(next.software.status)) && next.software.jobId === this.lastSent.jobId;
      const stretched = Math.min(RTT_FACTOR * this.lastRttMs, this.maxPaceMs);
      const wait = paced ? Math.max(this.lastSent.at + Math.max(this.intervalMs, stretched), next.queuedAt + this.settleMs) - this.clock.now() : 0;
      if (wait > 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(() => this.wake?.(), wait);
          this.wake = () => {
            clearTimeout(timer);
            this.wake = undefined;
            resolve();
          };
        });
        continue; // look again: the head may have been replaced by an outcome
      }
      this.queue.shift();
      const sentAt = this.clock.now();
      this.lastSent = { jobId: next.software.jobId, at: sentAt };
      this.sendInterrupted = this.offline;
      try {
        const ack = await this.send(next.software);
        if (!this.sendInterrupted) this.lastRttMs = this.clock.now() - sentAt;
        for (const w of next.waiters) w.resolve(ack);
      } catch (err) {
        for (const w of next.waiters) w.reject(err);
      }
    }
    this.busy = false;
  }
}
