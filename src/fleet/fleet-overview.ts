/**
 * The dashboard's fleet overview: the fleet summary (device counts, versions running, jobs
 * per state) and the devices whose latest outcome is a failure, the fleet's newest failures
 * first, with their reasons.
 *
 * The summary counts the whole registry and every shadow (FleetView.summary), which takes
 * 0.2 s at 100,000 devices and 2 s at 1,000,000 on SQLite. Every open dashboard refreshes it
 * when events arrive, so it is computed at most once per `ttlMs` (longer when computing
 * takes long, see get()), and concurrent callers share one computation.
 */
import { FAILURE_STATUSES, type ExecutionRecord, type ExecutionStatus, type FailureCursor, type FailureRecord, type OutcomeRecord, type StateStore } from '../store/state-store.ts';
import type { FleetSummary, FleetView } from './fleet-view.ts';

/** A device whose latest outcome is a failure, and that job. */
export interface FailingDevice {
  deviceId: string;
  jobId: string;
  /** The job's description, when it has one. */
  jobDescription?: string;
  /** The build the job installs, `name@version`. */
  artifact: string;
  status: ExecutionStatus;
  /** The device's or the server's reason, when known. */
  reason: string | null;
  /**
   * When that execution became a failure (the time the rows are ordered by): its `failed_at`,
   * which later writes such as a report do not move.
   */
  failedAt: number;
  /** The execution's last change (a report after the failure moves it): kept for the API's readers. */
  updatedAt: number;
}

/** What the overview page shows. */
export interface FleetOverview extends FleetSummary {
  /** Up to 20 devices whose latest outcome is a failure, the newest failure first, one row each (`failing()`). */
  failing: FailingDevice[];
  /** Milliseconds since the epoch when this was computed. */
  generatedAt: number;
}

/** Rows the overview lists. */
const MAX_FAILING = 20;
/** The fleet's newest failures read at a time (`listRecentFailures`): a device that failed several jobs, or succeeded since, takes more than one. */
const FAILURES_READ = 100;
/**
 * Pages of FAILURES_READ read at most, until MAX_FAILING rows are found: when the newest
 * failures are of devices that succeeded since, older ones are read (500 rows at most).
 */
const FAILURES_PAGES = 5;
/**
 * A candidate device's newest executions with an outcome read (by when queued,
 * `listLatestOutcomesOfDevices`, the queued, in-progress and canceled ones skipped): its
 * latest outcome is among them, or is its failure listed.
 */
const LATEST_READ = 5;

/** Computes the overview, shared and cached for a short time. */
export class FleetOverviewSource {
  private readonly deps: { store: StateStore; fleet: FleetView; ttlMs?: number; now?: () => number };
  private cached: { at: number; value: Promise<FleetOverview> } | undefined;
  /** How long the last computation took (ms). */
  private computeMs = 0;

  constructor(deps: { store: StateStore; fleet: FleetView; ttlMs?: number; now?: () => number }) {
    this.deps = deps;
  }

  private now(): number {
    return this.deps.now ? this.deps.now() : Date.now();
  }

  /**
   * The overview, at most `ttlMs` old (default 2 s), or ten times as long as computing it
   * took, whichever is longer: open dashboards then cost at most about a tenth of the
   * server's time whatever the fleet's size (2 s to compute at 1,000,000 devices on SQLite).
   */
  get(): Promise<FleetOverview> {
    const now = this.now();
    if (this.cached && now - this.cached.at < Math.max(this.deps.ttlMs ?? 2000, 10 * this.computeMs)) return this.cached.value;
    const value = this.compute(now);
    void value.then(() => (this.computeMs = this.now() - now)).catch(() => undefined);
    this.cached = { at: now, value };
    value.catch(() => {
      if (this.cached?.value === value) this.cached = undefined; // do not cache a failure
    });
    return value;
  }

  private async compute(now: number): Promise<FleetOverview> {
    const summary = await this.deps.fleet.summary();
    return { ...summary, failing: await this.failing(), generatedAt: now };
  }

  /**
   * One row per device whose latest outcome is a failure, the latest to fail first
   * (`listRecentFailures`: across jobs, by when each became a failure), naming that job. Each
   * candidate device is decided by its own newest outcome, from its newest executions that have
   * one (a few rows each, read together; those queued, in progress or canceled since do not
   * hide it): a device that failed two jobs is listed once (the later failure), and one that
   * succeeded since, in any job (a late success after a timeout too), is not listed. When the
   * newest failures are all of devices that succeeded since, older ones are read, page by page
   * (FAILURES_PAGES), each from after the last failure read (a cursor, not an offset: a
   * failure that left the list between two pages, a retry or a late success, shifted the next
   * page by one row until 2026-12-07, and the device first on it was not looked at). Until
   * 2026-12-07 the candidates were each of the last 20 jobs' first 20 failures by device id
   * (the newest failures could be missing on a big fleet), and a success since counted only in
   * the last 20 jobs or the failed one.
   */
  private async failing(): Promise<FailingDevice[]> {
    const { store } = this.deps;
    const out: FailingDevice[] = [];
    // the devices decided already: an older failure of theirs on a later page changes nothing
    const decided = new Set<string>();
    let after: FailureCursor | undefined;
    for (let page = 0; page < FAILURES_PAGES && out.length < MAX_FAILING; page++) {
      // the devices among these failures, the latest to fail first, with their failures read
      const failures = await store.listRecentFailures(FAILURES_READ, after);
      after = failures.at(-1);
      const read = new Map<string, FailureRecord[]>();
      for (const e of failures) {
        if (decided.has(e.deviceId)) continue;
        const held = read.get(e.deviceId);
        if (held) held.push(e);
        else read.set(e.deviceId, [e]);
      }
      const devices = [...read.keys()];
      // MAX_FAILING devices at a time, until the page is full: usually one round
      for (let at = 0; at < devices.length && out.length < MAX_FAILING; at += MAX_FAILING) {
        const some = devices.slice(at, at + MAX_FAILING);
        out.push(...(await this.decide(some, read)));
      }
      for (const deviceId of devices) decided.add(deviceId);
      if (failures.length < FAILURES_READ) break; // no older failure
    }
    return out.slice(0, MAX_FAILING);
  }

  /** The rows of those of `devices` whose latest outcome is a failure, in their order; `read`: their failures listed. */
  private async decide(devices: string[], read: Map<string, FailureRecord[]>): Promise<FailingDevice[]> {
    const { store } = this.deps;
    const newest = await store.listLatestOutcomesOfDevices(devices, LATEST_READ);
    const named = new Map<string, { e: ExecutionRecord; failedAt: number }>();
    for (const deviceId of devices) {
      // its newest outcomes as they are now, and its failures listed that are older than
      // those: the latest outcome among them (outcomeOf: by when each came) decides
      const rows = newest.get(deviceId) ?? [];
      const seen = new Set(rows.map((e) => e.jobId));
      let last: { e: OutcomeRecord; outcome: Outcome } | undefined;
      for (const e of [...rows, ...read.get(deviceId)!.filter((f) => !seen.has(f.jobId))]) {
        const outcome = outcomeOf(e);
        if (outcome && (!last || outcome.at > last.outcome.at)) last = { e, outcome };
      }
      // a failure's time is its failed_at, read with it (the listed failure's, or one that
      // failed after the list was read): when it came, not its last change
      if (last && !last.outcome.succeeded) named.set(deviceId, { e: last.e, failedAt: last.outcome.at });
    }
    if (named.size === 0) return [];
    const jobs = await store.getJobs([...new Set([...named.values()].map(({ e }) => e.jobId))], { omitSpec: true });
    const out: FailingDevice[] = [];
    for (const { e, failedAt } of named.values()) {
      const job = jobs.get(e.jobId);
      if (!job) continue; // its job deleted meanwhile
      const error = e.details.error;
      out.push({
        deviceId: e.deviceId,
        jobId: e.jobId,
        ...(job.description ? { jobDescription: job.description } : {}),
        artifact: `${job.artifactName}@${job.artifactVersion}`,
        status: e.status,
        reason: typeof error === 'string' ? error : null,
        failedAt,
        updatedAt: e.updatedAt,
      });
    }
    return out;
  }
}

/** An execution's outcome: when it came, and whether it is a success. */
interface Outcome {
  at: number;
  succeeded: boolean;
}

/**
 * The outcome of `e`, if it has one, and when it came: the time a device's outcomes are ordered
 * by, the latest deciding (docs/dashboard.md, "latest outcome").
 * - a late success (`details.lateSuccess`, the execution left TIMED_OUT or CANCELED): a success,
 *   at its `lateSuccess.at`, when the device's SUCCESS came (execution-tracker.ts);
 * - a success (SUCCEEDED): at its `updatedAt`, the write that ended it (the store keeps no
 *   other time of it; a write on a finished success since, if any, moves it later);
 * - a failure (FAILURE_STATUSES): at its `failedAt` (`failed_at`), when it became one, which a
 *   report since does not move; its `updatedAt` only when the store gives none (a failure
 *   state with a `lateSuccess` that has no time: not a standing failure to the store);
 * - anything else (queued, in progress, canceled, removed): none.
 * Until 2026-12-07 a failure was at its `updatedAt`: a report on an older failure made it the
 * device's latest, and the row named that job, at the report's time.
 */
function outcomeOf(e: OutcomeRecord): Outcome | undefined {
  const late = e.details.lateSuccess as { at?: unknown } | undefined;
  if (late && typeof late === 'object' && typeof late.at === 'number') return { at: late.at, succeeded: true };
  if (e.status === 'SUCCEEDED') return { at: e.updatedAt, succeeded: true };
  if (FAILURE_STATUSES.includes(e.status)) return { at: e.failedAt ?? e.updatedAt, succeeded: false };
  return undefined;
}
