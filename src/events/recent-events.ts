/**
 * The last few hundred fleet events, kept in memory so that a page opened now shows what
 * just happened before its live stream delivers anything new (the dashboard's "recent
 * events"). Bounded: a ring of `capacity` compact entries, whatever the fleet's size. Not
 * durable and per instance: durable history is in the executions (`fleet-view.ts`).
 */
import type { EventBus } from './event-bus.ts';

/** One event as the dashboard lists it. */
export interface RecentEvent {
  /** Increasing per server run. */
  seq: number;
  /** Milliseconds since the epoch. */
  at: number;
  type: 'job.changed' | 'execution.changed' | 'device.presence' | 'device.credentials';
  deviceId?: string;
  jobId?: string;
  /** The new state: a job or execution status, ONLINE / OFFLINE, or REVOKED / REINSTATED / DELETED (a device's credentials). */
  status: string;
  /** Execution events: the state before, when there was one. */
  previousStatus?: string;
  /** Why, when the event carries a reason (an execution's error, a job's pause or abort). */
  reason?: string;
}

/** A ring buffer of recent events fed by the event bus. */
export class RecentEvents {
  private readonly deps: { events: EventBus; capacity?: number; now?: () => number };
  private readonly ring: RecentEvent[] = [];
  private seq = 0;
  private offs: (() => void)[] = [];
  /** Each job's last status and record version seen: job.changed also fires on progress, which is not news here. */
  private readonly lastOfJob = new Map<string, { status: string; version: number }>();

  constructor(deps: { events: EventBus; capacity?: number; now?: () => number }) {
    this.deps = deps;
  }

  async start(): Promise<void> {
    const { events } = this.deps;
    this.offs = [
      events.on('device.presence', (e) => this.push({ type: 'device.presence', deviceId: e.deviceId, status: e.online ? 'ONLINE' : 'OFFLINE' })),
      // an operator's act on a device's access: revoked, reinstated, deleted (a registration or
      // a new secret is no news here: a provisioning line registers thousands at once)
      events.on('device.credentials', (e) => {
        const status = e.change === 'revoked' ? 'REVOKED' : e.change === 'reinstated' ? 'REINSTATED' : e.change === 'deleted' ? 'DELETED' : undefined;
        if (status) this.push({ type: 'device.credentials', deviceId: e.deviceId, status });
      }),
      events.on('execution.changed', ({ previous, current }) => {
        // progress reports within one state are noise here; state changes are the events
        if (previous?.status === current.status) return;
        const error = current.details.error;
        this.push({
          type: 'execution.changed',
          deviceId: current.deviceId,
          jobId: current.jobId,
          status: current.status,
          ...(previous ? { previousStatus: previous.status } : {}),
          ...(typeof error === 'string' ? { reason: error } : {}),
        });
      }),
      events.on('job.changed', ({ job, previous }) => {
        const version = job.version ?? 1;
        const last = this.lastOfJob.get(job.jobId);
        // an older record seen after a newer one (another instance's write relayed late): the
        // job's state did not go back; the same record again (a notice that wrote nothing) is no news
        if (last && (version < last.version || (version === last.version && last.status === job.status))) return;
        this.lastOfJob.set(job.jobId, { status: job.status, version });
        if (this.lastOfJob.size > 1000) this.lastOfJob.delete(this.lastOfJob.keys().next().value!);
        // progress of the same state: judged by the record the write replaced when the event
        // carries it (after a restart this memory is empty, and a running job's next wave was
        // listed as a change to IN_PROGRESS), else by what was seen here
        if ((previous ? previous.status : last?.status) === job.status) return;
        this.push({ type: 'job.changed', jobId: job.jobId, status: job.status, ...(jobReason(job.progress) ? { reason: jobReason(job.progress)! } : {}) });
      }),
    ];
  }

  async stop(): Promise<void> {
    for (const off of this.offs) off();
    this.offs = [];
  }

  private push(e: Omit<RecentEvent, 'seq' | 'at'>): void {
    this.ring.push({ seq: ++this.seq, at: this.deps.now ? this.deps.now() : Date.now(), ...e });
    if (this.ring.length > (this.deps.capacity ?? 500)) this.ring.shift();
  }

  /** Newest first, optionally only one device's or one job's, at most `limit`. */
  list(filter: { deviceId?: string; jobId?: string; limit: number }): RecentEvent[] {
    const out: RecentEvent[] = [];
    for (let i = this.ring.length - 1; i >= 0 && out.length < filter.limit; i--) {
      const e = this.ring[i]!;
      if (filter.deviceId !== undefined && e.deviceId !== filter.deviceId) continue;
      if (filter.jobId !== undefined && e.jobId !== filter.jobId) continue;
      out.push(e);
    }
    return out;
  }
}

function jobReason(progress: unknown): string | undefined {
  if (typeof progress !== 'object' || progress === null) return undefined;
  const p = progress as { abortReason?: unknown; pause?: { message?: unknown } };
  if (typeof p.abortReason === 'string') return p.abortReason;
  if (typeof p.pause?.message === 'string') return p.pause.message;
  return undefined;
}
