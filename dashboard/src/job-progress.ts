/**
 * How far a job, or one of its waves, got, as `updraft job watch` and the API's `percentDone`
 * say it (jobs/job-service.ts view, docs/rollouts.md): its devices that finished (succeeded,
 * failed, timed out or rejected) out of those that are to finish, i.e. all but those canceled
 * (a device superseded by a newer job, a hotfix, ends canceled) or removed; with none to finish,
 * 100% once the job COMPLETED, else 0%. Those left out are named beside the figure, and the
 * bar's maximum is the devices counted, never the job's whole device count: "100% of 195" over
 * a full bar when 13 of 195 updated and 182 were canceled is what misled (QA), and counting the
 * canceled in read a completed job whose devices were hotfixed at under 100% where the CLI said 100%.
 */
import { count, percent } from './format.ts';
import type { ExecutionStatus } from './types.ts';

const FINISHED: ExecutionStatus[] = ['SUCCEEDED', 'FAILED', 'TIMED_OUT', 'REJECTED'];
const LEFT_OUT = ['CANCELED', 'REMOVED'] as const;

/** A progress bar's figures: `value` of `max`, and its words (`13 of 13 finished (100%) · 182 canceled, left out`). */
export interface Progress {
  value: number;
  max: number;
  detail: string;
}

/** The progress of executions counted per state (a job's `counts`, or a wave's); `completed`: the job COMPLETED. */
export function progressOf(counts: Partial<Record<ExecutionStatus, number>>, completed = false): Progress {
  const n = (s: ExecutionStatus) => counts[s] ?? 0;
  const total = Object.values(counts).reduce<number>((a, b) => a + (b ?? 0), 0);
  const relevant = total - LEFT_OUT.reduce((a, s) => a + n(s), 0);
  const finished = FINISHED.reduce((a, s) => a + n(s), 0);
  const left = LEFT_OUT.filter((s) => n(s) > 0).map((s) => `${count(n(s))} ${s.toLowerCase()}`);
  const note = left.length > 0 ? ` · ${left.join(', ')}, left out` : '';
  // none to finish: the bar full once the job completed, empty otherwise (as percentDone)
  if (relevant === 0) return { value: completed ? 1 : 0, max: 1, detail: `0 of 0 finished (${completed ? 100 : 0}%)${note}` };
  return { value: finished, max: relevant, detail: `${count(finished)} of ${count(relevant)} finished (${percent(finished, relevant)}%)${note}` };
}
