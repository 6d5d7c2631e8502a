/**
 * The fleet view (docs/design.md §4): which devices run what (version distribution, from
 * reported state, the truth after device-side rollbacks), the fleet summary behind
 * `updraft status`, and a device's history of jobs and outcomes.
 */
import { parseReportedSoftware } from '../protocol/software.ts';
import type { ExecutionRecord, JobStatus, Page, StateStore } from '../store/state-store.ts';

/** How many devices run one build. */
export interface VersionCount {
  name: string | null;
  version: string | null;
  devices: number;
}

/** The fleet summary. */
export interface FleetSummary {
  devices: { registered: number; revoked: number; online: number; reporting: number };
  versions: VersionCount[];
  jobs: Record<JobStatus, number>;
}

const PAGE = 1000;
/** Rows per counting query: about 10 ms of SQLite each, so the event loop is never held long. */
const COUNT_PAGE = 10_000;

/** Reads the fleet's state. */
export class FleetView {
  private readonly deps: { store: StateStore; onlineCount: () => number };

  constructor(deps: { store: StateStore; onlineCount: () => number }) {
    this.deps = deps;
  }

  /** Devices per reported name@version (devices that never reported count as null), most common first. */
  async versions(): Promise<VersionCount[]> {
    const counts = new Map<string, VersionCount>();
    let after: string | undefined;
    do {
      // counted by the database, a page at a time: reading a million shadows into the process
      // and parsing each took 5-7 s (measured); the page keeps each query short
      const page = await this.deps.store.countReportedSoftware({ limit: COUNT_PAGE, ...(after ? { after } : {}) });
      for (const c of page.counts) {
        // the same rule as everywhere a report is read: a version, and a status an agent sends
        if (!parseReportedSoftware({ version: c.version, status: c.status })) continue;
        const key = `${c.name ?? ''}@${c.version}`;
        const v = counts.get(key) ?? { name: c.name, version: c.version, devices: 0 };
        v.devices += c.devices;
        counts.set(key, v);
      }
      after = page.next;
    } while (after);
    return [...counts.values()].sort((a, b) => b.devices - a.devices || String(a.version).localeCompare(String(b.version)));
  }

  /** Devices (registered, revoked, online, reporting), versions and jobs per state. */
  async summary(): Promise<FleetSummary> {
    let registered = 0;
    let revoked = 0;
    let after: string | undefined;
    do {
      const page = await this.deps.store.countDevices({ limit: COUNT_PAGE, ...(after ? { after } : {}) });
      registered += page.counts.registered;
      revoked += page.counts.revoked;
      after = page.next;
    } while (after);
    const versions = await this.versions();
    const reporting = versions.reduce((n, v) => n + v.devices, 0);
    const jobs: Record<JobStatus, number> = { SCHEDULED: 0, IN_PROGRESS: 0, PAUSED: 0, COMPLETED: 0, CANCELED: 0, ABORTED: 0 };
    after = undefined;
    do {
      const page = await this.deps.store.listJobs({ limit: PAGE, omitSpec: true, ...(after ? { after } : {}) });
      for (const j of page.items) jobs[j.status]++;
      after = page.next;
    } while (after);
    return { devices: { registered, revoked, online: this.deps.onlineCount(), reporting }, versions, jobs };
  }

  /**
   * A page of a device's jobs, newest first, with the artifact each installed, every attempt's
   * outcome and, where its failed attempt left one, the device's log (without its lines).
   */
  async history(deviceId: string, options: { after?: string; limit: number }): Promise<Page<HistoryItem>> {
    const executions = await this.deps.store.listDeviceExecutions(deviceId, options);
    // the device's logs of failed attempts of these jobs, one per job at most (`jobs/job-logs.ts`)
    const jobIds = executions.items.map((e) => e.jobId);
    const logs = new Map((await this.deps.store.listDeviceJobLogs(deviceId, Math.max(jobIds.length, 1), jobIds)).map((l) => [l.jobId, l]));
    // the page's jobs read together: a getJob each was a round trip each on PostgreSQL (1,000 for the timeline)
    const jobs = await this.deps.store.getJobs(jobIds, { omitSpec: true }); // a spec can list 100,000 devices
    const items: HistoryItem[] = [];
    for (const e of executions.items) {
      const job = jobs.get(e.jobId);
      const log = logs.get(e.jobId);
      items.push({ ...e, artifact: job ? `${job.artifactName}@${job.artifactVersion}` : null, ...(log ? { log: { agentJobId: log.agentJobId, receivedAt: log.receivedAt, lineCount: log.lineCount } } : {}) });
    }
    return executions.next !== undefined ? { items, next: executions.next } : { items };
  }
}

/** One job in a device's history (`GET /api/v1/devices/{id}/history`). */
export type HistoryItem = ExecutionRecord & { artifact: string | null; log?: { agentJobId: string; receivedAt: number; lineCount: number } };
