/**
 * `updraft job watch`: polls the job view and draws a progress bar with counts per state
 * (redrawn in place on a terminal, one line per change otherwise) until the job ends.
 * Exit 0 when it COMPLETED; 1 with one line when it was CANCELED or ABORTED, or on timeout.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { UpdraftError } from '../errors.ts';
import { EXECUTION_STATUSES } from '../jobs/execution-state.ts';
import type { JobView } from '../jobs/job-service.ts';
import type { JobRecord } from '../store/state-store.ts';
import { PASSING_STATUSES, type ApiClient } from './api-client.ts';
import { pathSegment } from './path-segment.ts';


const FINAL = ['COMPLETED', 'CANCELED', 'ABORTED'];

/** A progress bar of `width` cells for a percentage. */
export function progressBar(percent: number, width = 30): string {
  const full = Math.round((Math.max(0, Math.min(100, percent)) / 100) * width);
  return `[${'#'.repeat(full)}${'.'.repeat(width - full)}]`;
}

/** Why a job is where it is, as `  (…)` to append to a line: scheduled, paused, aborted, held by a storage outage, or waiting for a maintenance window; '' otherwise. */
export function jobNote(job: Pick<JobRecord, 'status' | 'progress' | 'spec'>): string {
  const p = (job.progress ?? {}) as { pause?: { message?: string }; abortReason?: string; windowClosed?: { opensAt?: number }; storageHeldSince?: number; heldBy?: string };
  const startAt = (job.spec as { plan?: { startAt?: unknown } } | undefined)?.plan?.startAt;
  if (job.status === 'SCHEDULED' && typeof startAt === 'number') return `  (starts sending ${new Date(startAt).toISOString()})`;
  if (job.status === 'PAUSED' && p.pause?.message) return `  (${p.pause.message})`;
  if (job.status === 'ABORTED' && p.abortReason) return `  (${p.abortReason})`;
  // the engine sends nothing new while the artifact storage does not answer (rollout-engine.ts)
  if (job.status === 'IN_PROGRESS' && typeof p.storageHeldSince === 'number' && p.heldBy === 'mqtt') return `  (held: the MQTT broker has not been reachable since ${new Date(p.storageHeldSince).toISOString()}; nothing new is sent until it is, devices already updating go on)`;
  if (job.status === 'IN_PROGRESS' && typeof p.storageHeldSince === 'number') return `  (held: the artifact storage has not answered since ${new Date(p.storageHeldSince).toISOString()}; nothing new is sent until it does, devices already updating go on)`;
  if (job.status === 'IN_PROGRESS' && p.windowClosed) return `  (outside its maintenance windows${p.windowClosed.opensAt !== undefined ? `: the next opens ${new Date(p.windowClosed.opensAt).toISOString()}` : ''})`;
  return '';
}

/** One line: bar, percentage, state, wave, non-zero counts. */
export function describeJob(v: JobView): string {
  const p = (v.job.progress ?? {}) as { wave?: number };
  const counts = EXECUTION_STATUSES.filter((s) => (v.counts[s] ?? 0) > 0).map((s) => `${s} ${v.counts[s]}`).join('  ');
  const waves = v.waves.length > 1 ? `  wave ${(p.wave ?? 0) + 1}/${v.waves.length}` : '';
  return `${progressBar(v.percentDone)} ${v.percentDone.toFixed(1).padStart(5)}%  ${v.job.status}${waves}  ${counts || 'no devices'}${jobNote(v.job)}`;
}

/** Watches until the job ends; throws (exit 1) if it did not complete. */
export async function watchJob(api: ApiClient, jobId: string, o: { json: boolean; intervalMs: number; timeoutMs?: number }): Promise<void> {
  const tty = process.stderr.isTTY === true && !o.json;
  // refused before the loop, whose errors are answers to wait on
  const path = `/api/v1/jobs/${pathSegment('job id', jobId)}?limit=1`;
  const deadline = o.timeoutMs ? Date.now() + o.timeoutMs : Infinity;
  let last = '';
  let unavailable = false;
  // a watch that never got an answer is refused at once (a wrong --server, an untrusted certificate)
  let reached = false;
  for (;;) {
    let v: JobView;
    try {
      // not the client's own waiting (UPDRAFT_RETRY_FOR): the watch's is bounded by --timeout, not
      // 30 s, and says when the server answers again; both would wait twice and say it twice
      v = await api.call<JobView>('GET', path, undefined, { retry: false });
    } catch (err) {
      // the server, or its database, down for now (503, a restart behind a balancer): the job
      // goes on without the watch, so the watch waits with it rather than end as if the job
      // had failed (exit 1 is a job canceled or aborted to a CI gate); --timeout still bounds it
      if (!reached || !(err instanceof UpdraftError) || !PASSING_STATUSES.has(err.status)) throw err;
      if (Date.now() > deadline) throw new UpdraftError('TIMEOUT', `job ${jobId} is not known to have ended after ${Math.round(o.timeoutMs! / 1000)} s: the server cannot answer now (${err.message})`);
      if (!unavailable) process.stderr.write(`${tty ? '\r\x1b[2K' : ''}updraft: the server cannot answer for now (${err.message}); watching on\n`);
      unavailable = true;
      await sleep(o.intervalMs);
      continue;
    }
    reached = true;
    if (unavailable) process.stderr.write('updraft: the server answers again\n');
    unavailable = false;
    const line = describeJob(v);
    const done = FINAL.includes(v.job.status);
    if (!o.json && line !== last) process.stderr.write(tty ? `\r\x1b[2K${line}` : `${line}\n`);
    last = line;
    if (done) {
      if (tty) process.stderr.write('\n');
      const { executions: _e, ...view } = v as JobView & { executions?: unknown };
      process.stdout.write(o.json ? JSON.stringify(view, null, 2) + '\n' : `job ${jobId} ${v.job.status}: ${EXECUTION_STATUSES.filter((s) => (v.counts[s] ?? 0) > 0).map((s) => `${s} ${v.counts[s]}`).join(', ')}\n`);
      if (v.job.status !== 'COMPLETED') throw new UpdraftError('INTERNAL', `job ${jobId} ended ${v.job.status}${(v.job.progress as { abortReason?: string } | undefined)?.abortReason ? `: ${(v.job.progress as { abortReason: string }).abortReason}` : ''}`);
      return;
    }
    if (Date.now() > deadline) {
      if (tty) process.stderr.write('\n');
      throw new UpdraftError('TIMEOUT', `job ${jobId} is still ${v.job.status} after ${Math.round(o.timeoutMs! / 1000)} s`);
    }
    await sleep(o.intervalMs);
  }
}
