/**
 * A device's last events for its dashboard page, from durable records first: each job
 * execution's queueing, the command sent, every earlier attempt's outcome and its current
 * state (so the page is right after a restart and on any instance), plus the presence
 * changes this server saw recently (in memory, `events/recent-events.ts`).
 */
import type { RecentEvents } from '../events/recent-events.ts';
import { waitOf } from '../jobs/deadlines.ts';
import type { ExecutionRecord } from '../store/state-store.ts';

/** One line of the device's timeline. */
export interface DeviceEvent {
  /** Milliseconds since the epoch. */
  at: number;
  /** queued, sent, attempt, state, presence. */
  kind: 'queued' | 'sent' | 'attempt' | 'state' | 'presence';
  jobId?: string;
  artifact?: string | null;
  /** An execution state, or ONLINE / OFFLINE. */
  status: string;
  reason?: string;
}

/** Merges the device's executions and recent presence into one list, newest first. */
export function deviceTimeline(executions: (ExecutionRecord & { artifact: string | null })[], recent: RecentEvents, deviceId: string, limit: number): DeviceEvent[] {
  const out: DeviceEvent[] = [];
  for (const e of executions) {
    const base = { jobId: e.jobId, artifact: e.artifact };
    out.push({ ...base, at: e.queuedAt, kind: 'queued', status: 'QUEUED' });
    const attempts = Array.isArray(e.details.attempts) ? e.details.attempts : [];
    for (const a of attempts) {
      if (typeof a !== 'object' || a === null || Array.isArray(a) || typeof a.at !== 'number') continue;
      out.push({ ...base, at: a.at, kind: 'attempt', status: `${String(a.status)} (attempt ${String(a.attempt)})`, ...(typeof a.error === 'string' ? { reason: a.error } : {}) });
    }
    if (e.dispatchedAt !== undefined) out.push({ ...base, at: e.dispatchedAt, kind: 'sent', status: 'COMMAND SENT' });
    if (e.status !== 'QUEUED') {
      const wait = e.status === 'IN_PROGRESS' ? waitOf(e.details) : undefined;
      const error = typeof e.details.error === 'string' ? e.details.error : wait && `the device's install gate put the install off (${wait.count}): ${wait.reason}`;
      const phase = e.details.agentStatus;
      const status = e.status === 'IN_PROGRESS' && typeof phase === 'string' ? `IN_PROGRESS (${phase})` : e.status;
      out.push({ ...base, at: e.updatedAt, kind: 'state', status, ...(error !== undefined ? { reason: error } : {}) });
    }
  }
  for (const p of recent.list({ deviceId, limit })) {
    if (p.type === 'device.presence') out.push({ at: p.at, kind: 'presence', status: p.status });
  }
  return out.sort((a, b) => b.at - a.at).slice(0, limit);
}
