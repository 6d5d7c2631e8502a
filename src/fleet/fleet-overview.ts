/**
 * The dashboard's fleet overview: the fleet summary (device counts, versions running, jobs
 * per state) and the devices whose latest outcome in recent jobs is a failure, with their reasons.
 *
 * The summary counts the whole registry and every shadow (FleetView.summary), which takes
 * 0.2 s at 100,000 devices and 2 s at 1,000,000 on SQLite. Every open dashboard refreshes it
 * when events arrive, so it is computed at most once per `ttlMs` (longer when computing
 * takes long, see get()), and concurrent callers share one computation.
 */
import type { ExecutionRecord, ExecutionStatus, StateStore } from '../store/state-store.ts';
import type { FleetSummary, FleetView } from './fleet-view.ts';

/** A device whose latest outcome in the recent jobs is a failure, and that job. */
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
  updatedAt: number;
}

/** What the overview page shows. */
export interface FleetOverview extends FleetSummary {
  /** The devices whose latest outcome across the last `RECENT_JOBS` jobs is a failure, newest first, one row each. */
  failing: FailingDevice[];
  /** Milliseconds since the epoch when this was computed. */
  generatedAt: number;
}

const FAILED_STATES: ExecutionStatus[] = ['FAILED', 'TIMED_OUT', 'REJECTED'];
const RECENT_JOBS = 20;
const MAX_FAILING = 20;
/** Executions read per getExecutions call (one query per 1,000 on PostgreSQL; SQLite reads them in one go, holding the loop). */
const KEYS_PER_READ = 1000;

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
   * One row per device whose latest outcome in the recent jobs is a failure, naming that job:
   * a device that failed two jobs is listed once (the later failure), and one that succeeded
   * since (in another of these jobs, or its timed-out execution's late success) is not listed.
   * Until 2026-12-06 every failed execution was a row, named by its build: a device that failed
   * two jobs of one build read as listed twice, and one that then succeeded stayed listed.
   */
  private async failing(): Promise<FailingDevice[]> {
    const { store } = this.deps;
    const jobs = (await store.listJobs({ limit: RECENT_JOBS, omitSpec: true })).items;
    const byId = new Map(jobs.map((j) => [j.jobId, j]));
    // each device's latest failure among each job's first failures
    const latest = new Map<string, ExecutionRecord>();
    for (const job of jobs) {
      const page = await store.listJobExecutions(job.jobId, { status: FAILED_STATES, limit: MAX_FAILING });
      for (const e of page.items) {
        if (outcomeOf(e).succeeded) continue; // timed out, then it reported its success
        const seen = latest.get(e.deviceId);
        if (!seen || outcomeOf(e).at > outcomeOf(seen).at) latest.set(e.deviceId, e);
      }
    }
    // their executions of the other recent jobs, read together: the device's latest outcome
    // among them decides. A success after the failure clears it; a failure after it (of a job
    // whose first failures did not reach this device) is the one named (review of ea04977: the
    // row named the older job)
    const keys = [...latest.values()].flatMap((f) => jobs.filter((j) => j.jobId !== f.jobId).map((j) => ({ jobId: j.jobId, deviceId: f.deviceId })));
    const last = new Map<string, ExecutionRecord>(latest);
    for (let i = 0; i < keys.length; i += KEYS_PER_READ) {
      for (const e of await store.getExecutions(keys.slice(i, i + KEYS_PER_READ))) {
        if (!e || !(outcomeOf(e).succeeded || (FAILED_STATES as readonly string[]).includes(e.status))) continue;
        const held = last.get(e.deviceId);
        if (held && outcomeOf(e).at > outcomeOf(held).at) last.set(e.deviceId, e);
      }
    }
    for (const [deviceId, e] of last) {
      if (outcomeOf(e).succeeded) latest.delete(deviceId);
      else latest.set(deviceId, e);
    }
    const out: FailingDevice[] = [];
    for (const e of latest.values()) {
      const job = byId.get(e.jobId)!;
      const error = e.details.error;
      out.push({
        deviceId: e.deviceId,
        jobId: e.jobId,
        ...(job.description ? { jobDescription: job.description } : {}),
        artifact: `${job.artifactName}@${job.artifactVersion}`,
        status: e.status,
        reason: typeof error === 'string' ? error : null,
        updatedAt: e.updatedAt,
      });
    }
    return out.sort((a, b) => b.updatedAt - a.updatedAt || a.deviceId.localeCompare(b.deviceId)).slice(0, MAX_FAILING);
  }
}

/** When an execution's outcome came, and whether it is a success (a late one after a timeout counts). */
function outcomeOf(e: ExecutionRecord): { at: number; succeeded: boolean } {
  const late = e.details.lateSuccess as { at?: unknown } | undefined;
  if (late && typeof late === 'object' && typeof late.at === 'number') return { at: late.at, succeeded: true };
  return { at: e.updatedAt, succeeded: e.status === 'SUCCEEDED' };
}
