/**
 * Executions a device's report (or a supersede) could not be written to, tried again until they
 * are. The replica acknowledges a report once the shadow is committed (pattern step 9); its
 * execution is a second write, and one that failed (a full disk, a PostgreSQL error, a statement
 * timeout) was only logged: the execution stayed IN_PROGRESS until a restart's catch-up, for good
 * on a job without a timeout (QA: 38 of 40 SUCCESS reports acknowledged, never recorded).
 *
 * One entry per execution (coalesced: a device that reports again while one is owed adds to it),
 * tried with a backoff (0.5 s doubling to 30 s, with jitter) a batch at a time. What a try does is
 * the owner's (`ExecutionTracker.retry`): it derives the execution again from the device's shadow
 * as it stands, idempotently. Past `maxEntries` an execution is not remembered: a scan of every
 * open execution against its shadow (the owner's `scan`, as a start's catch-up) is owed instead.
 * `stop()` ends the tries (the next start's or lease's catch-up records what is left).
 */
import { asUpdraftError } from '../errors.ts';
import type { Logger } from '../util/logger.ts';

/** What one execution is owed. */
export interface OwedExecution {
  jobId: string;
  deviceId: string;
  /** An outcome (SUCCESS or FAILURE) whose write failed, as the device reported it: the last word of its attempt. */
  outcome?: unknown;
  /** A supersede whose write failed: the attempt it ends and the reason. */
  superseded?: { attempt: number; reason: string };
  /** With both: the outcome was reported before the supersede (its write failed first), and is applied before it. */
  outcomeFirst?: boolean;
  /** Tries made so far. */
  tries: number;
}

/** What the book needs. */
export interface UnrecordedReportsDeps {
  /** One try of `owed`; rejects when it could not be written (tried again later). */
  retry: (owed: OwedExecution) => Promise<void>;
  /** Every open execution derived again from its shadow, ending early once `stopped()`; rejects when it could not finish. */
  scan: (stopped: () => boolean) => Promise<void>;
  logger: Logger;
  /** Executions remembered at most (default 50,000: a few hundred bytes each). */
  maxEntries?: number;
  /** The first delay, doubled at each try up to `maxDelayMs` (defaults 500 ms and 30 s). */
  firstDelayMs?: number;
  maxDelayMs?: number;
}

/** Executions tried per round: a store back from an outage is not sent 50,000 writes at once. */
const BATCH = 500;

/** An execution owed, with when it is next tried (set when it is owed, not moved by later failures). */
type Entry = OwedExecution & { key: string; due: number };

/** Executions owed a write, tried again until it is made. */
export class UnrecordedReports {
  private readonly deps: UnrecordedReportsDeps;
  private readonly owed = new Map<string, Entry>();
  /**
   * The same entries as a binary min-heap on `due`: owing one, finding the earliest and taking
   * those due cost O(log n) (a push is O(1) on average, dues mostly growing), never a walk of
   * what is owed. That walk, per owe, made an outage quadratic: 50,000 failed reports took
   * 36 s of event loop, 0.7 ms each at the end, while the broker and replica waited.
   */
  private readonly heap: Entry[] = [];
  private scanOwed: { tries: number; due: number } | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** When the armed timer fires: it is armed again only for an earlier due. */
  private armedFor = Infinity;
  private heapSteps = 0;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(deps: UnrecordedReportsDeps) {
    this.deps = deps;
  }

  /** Executions owed now (tests). */
  get size(): number {
    return this.owed.size;
  }

  /** Entries the book has looked at to keep its order (tests: a few per owe and per try, never all of them). */
  get steps(): number {
    return this.heapSteps;
  }

  /** True while a scan of every open execution is owed (tests). */
  get scanPending(): boolean {
    return this.scanOwed !== undefined;
  }

  /** Remembers that `jobId`'s execution on `deviceId` is owed a write (with `add`'s outcome or supersede). */
  owe(jobId: string, deviceId: string, add: { outcome?: unknown; superseded?: OwedExecution['superseded'] } = {}, tries = 0): void {
    if (this.stopped) return;
    const key = `${jobId}\n${deviceId}`;
    let entry = this.owed.get(key);
    if (!entry) {
      if (this.owed.size >= (this.deps.maxEntries ?? 50_000)) {
        if (!this.scanOwed) this.deps.logger.warn('too many executions owed a write to remember each: every open execution is looked over again instead', { owed: this.owed.size });
        this.scanOwed ??= { tries: 0, due: this.dueAfter(0) };
        this.schedule();
        return;
      }
      entry = { key, jobId, deviceId, tries, due: this.dueAfter(tries) };
      this.owed.set(key, entry);
      this.push(entry);
    }
    // an outcome is kept (the latest); a supersede too: a later failure adds to what is owed.
    // An entry owed already keeps its due: the try reads the shadow as it stands then
    if (add.outcome !== undefined) {
      entry.outcome = add.outcome;
      entry.outcomeFirst = entry.superseded === undefined;
    }
    if (add.superseded) entry.superseded = add.superseded;
    entry.tries = Math.max(entry.tries, tries);
    this.schedule();
  }

  /** Ends the tries: waits for a round under way, forgets what is owed. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
    if (this.owed.size > 0 || this.scanOwed) this.deps.logger.warn('stopping with executions not recorded yet: the next start (or lease taken) records them from their shadows', { owed: this.owed.size });
    this.owed.clear();
    this.heap.length = 0;
    this.scanOwed = undefined;
  }

  private dueAfter(tries: number): number {
    const first = this.deps.firstDelayMs ?? 500;
    const delay = Math.min(this.deps.maxDelayMs ?? 30_000, first * 2 ** Math.min(tries, 20));
    return performance.now() + delay * (0.8 + 0.4 * Math.random());
  }

  /** Arms the timer for the earliest due, unless it is armed for that or earlier already. */
  private schedule(): void {
    if (this.stopped || this.running) return; // a round under way schedules the next when it ends
    const first = Math.min(this.scanOwed?.due ?? Infinity, this.heap[0]?.due ?? Infinity);
    if (first === Infinity || (this.timer !== undefined && this.armedFor <= first)) return;
    clearTimeout(this.timer);
    this.armedFor = first;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.armedFor = Infinity;
      this.running = this.round().finally(() => {
        this.running = undefined;
        this.schedule();
      });
    }, Math.max(0, first - performance.now()));
    this.timer.unref?.();
  }

  /** Tries what is due, a batch at a time. */
  private async round(): Promise<void> {
    const now = performance.now();
    const due: Entry[] = [];
    while (due.length < BATCH && this.heap.length > 0 && this.heap[0]!.due <= now) {
      const e = this.pop();
      this.owed.delete(e.key);
      due.push(e);
    }
    await Promise.all(
      due.map(async (e) => {
        try {
          await this.deps.retry(e);
          this.deps.logger.info('execution recorded on a later try', { jobId: e.jobId, deviceId: e.deviceId, tries: e.tries + 1 });
        } catch (err) {
          const tries = e.tries + 1;
          if (tries % 10 === 0) this.deps.logger.warn('execution still not recorded; tried again', { jobId: e.jobId, deviceId: e.deviceId, tries, error: asUpdraftError(err).message });
          this.putBack(e, tries);
        }
      }),
    );
    const scan = this.scanOwed;
    if (scan && scan.due <= now && !this.stopped) {
      this.scanOwed = undefined;
      try {
        await this.deps.scan(() => this.stopped);
        if (!this.stopped) this.deps.logger.info('open executions looked over again: what their shadows report is recorded');
      } catch (err) {
        if (!this.stopped) this.scanOwed ??= { tries: scan.tries + 1, due: this.dueAfter(scan.tries + 1) };
        this.deps.logger.warn('open executions not looked over; tried again', { error: asUpdraftError(err).message });
      }
    }
  }

  /**
   * Owes `e` again after its try failed. A failure meanwhile (a report queued before the try,
   * or refused by a full queue) may have owed the execution again: that entry is newer and
   * wins, its outcome over `e`'s (which it keeps only when it has none) and the later attempt's
   * supersede. Replacing it with `e`'s older outcome lost the newer one once the device's
   * shadow no longer held it (moved on to another job).
   */
  private putBack(e: Entry, tries: number): void {
    const newer = this.owed.get(e.key);
    if (!newer) {
      this.owe(e.jobId, e.deviceId, { outcome: e.outcome, ...(e.superseded ? { superseded: e.superseded } : {}) }, tries);
      // owe sets outcomeFirst as for an outcome owed now (true before the supersede is set): the
      // order is e's own (an outcome owed after its supersede, the agent's call-off, stays after it).
      // Past maxEntries owe remembers no entry (a scan is owed instead).
      const again = this.owed.get(e.key);
      if (again) again.outcomeFirst = e.outcomeFirst;
      return;
    }
    const newerOutcome = newer.outcome !== undefined;
    const olderSupersede = e.superseded !== undefined && (!newer.superseded || e.superseded.attempt > newer.superseded.attempt);
    if (!newerOutcome) newer.outcome = e.outcome;
    if (olderSupersede) newer.superseded = e.superseded;
    // which of the two kept came first: anything of `e`'s came before anything of `newer`'s
    newer.outcomeFirst = newerOutcome ? !olderSupersede && newer.outcomeFirst === true : olderSupersede ? e.outcomeFirst === true : true;
    newer.tries = Math.max(newer.tries, tries);
  }

  /** Adds `e` to the heap (sifted up to its place by `due`). */
  private push(e: Entry): void {
    const h = this.heap;
    let i = h.length;
    h.push(e);
    while (i > 0) {
      this.heapSteps++;
      const parent = (i - 1) >> 1;
      if (h[parent]!.due <= e.due) break;
      h[i] = h[parent]!;
      i = parent;
    }
    h[i] = e;
  }

  /** Takes the entry due first off the heap (the heap is not empty). */
  private pop(): Entry {
    const h = this.heap;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      let i = 0;
      for (;;) {
        this.heapSteps++;
        const l = 2 * i + 1;
        if (l >= h.length) break;
        const c = l + 1 < h.length && h[l + 1]!.due < h[l]!.due ? l + 1 : l;
        if (h[c]!.due >= last.due) break;
        h[i] = h[c]!;
        i = c;
      }
      h[i] = last;
    }
    return top;
  }
}
