/**
 * How far a job, or one of its waves, got: its devices that finished (succeeded, failed, timed
 * out or rejected) out of all its devices, with those that never will (canceled, removed) named.
 * Not the API's `percentDone`, which leaves those out (docs/rollouts.md): beside the job's
 * device count it read "100% of 195" over a full bar when 13 of 195 updated and 182 were canceled.
 */
import { count, percent } from './format.ts';
import type { ExecutionStatus } from './types.ts';

const FINISHED: ExecutionStatus[] = ['SUCCEEDED', 'FAILED', 'TIMED_OUT', 'REJECTED'];

/** A progress bar's figures: `value` of `max`, and its words (`13 of 195 finished (6.7%) · 182 canceled`). */
export interface Progress {
  value: number;
  max: number;
  detail: string;
}

/** The progress of executions counted per state (a job's `counts`, or a wave's). */
export function progressOf(counts: Partial<Record<ExecutionStatus, number>>): Progress {
  const n = (s: ExecutionStatus) => counts[s] ?? 0;
  const max = Object.values(counts).reduce<number>((a, b) => a + (b ?? 0), 0);
  const value = FINISHED.reduce((a, s) => a + n(s), 0);
  const pct = percent(value, max); // as the bar's label rounds it
  const stopped = (['CANCELED', 'REMOVED'] as const).filter((s) => n(s) > 0).map((s) => `${count(n(s))} ${s.toLowerCase()}`);
  return { value, max, detail: `${count(value)} of ${count(max)} finished (${pct}%)${stopped.length > 0 ? ` · ${stopped.join(', ')}` : ''}` };
}
