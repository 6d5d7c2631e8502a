/**
 * The rollout plan's arithmetic, pure and clock-free so it can be derived again from stored
 * timestamps after a restart: wave boundaries, the rate allowance with exponential ramp-up,
 * and a wave's success rate.
 */
import type { ExecutionCount, ExecutionStatus } from '../store/state-store.ts';
import type { WaveSpec } from './job-spec.ts';

/**
 * The wave of each of `total` targets in order: wave i ends at its cumulative percentage of
 * `total` (rounded up) or `count` devices after the previous wave; the last wave takes the rest.
 * Returns the exclusive end index of every wave.
 */
export function waveEnds(waves: readonly WaveSpec[], total: number): number[] {
  const ends: number[] = [];
  let prev = 0;
  waves.forEach((w, i) => {
    let end = i === waves.length - 1 ? total : w.count !== undefined ? prev + w.count : Math.ceil(((w.percent ?? 100) / 100) * total);
    end = Math.min(total, Math.max(prev, end));
    ends.push(end);
    prev = end;
  });
  return ends;
}

/** The wave of the target at `index` given `ends` from waveEnds. */
export function waveOf(ends: readonly number[], index: number): number {
  const w = ends.findIndex((end) => index < end);
  return w === -1 ? ends.length - 1 : w;
}

/**
 * How many commands may have been sent `elapsedMs` after the rate epoch (a wave's start or a
 * resume): the integral of the per-minute rate, which starts at `initialPerMinute` and grows
 * by `factor` every minute up to `maxPerMinute`. One is always allowed at once, so a rollout
 * starts without waiting. Infinity when there is no limit.
 */
export function rateAllowance(plan: { maxPerMinute?: number; rampUp?: { initialPerMinute: number; factor: number } }, elapsedMs: number): number {
  const minutes = Math.max(0, elapsedMs) / 60_000;
  const max = plan.maxPerMinute ?? Infinity;
  if (!plan.rampUp) return max === Infinity ? Infinity : 1 + Math.floor(max * minutes);
  const { initialPerMinute, factor } = plan.rampUp;
  let total = 0;
  let rate = initialPerMinute;
  let m = 0;
  for (; m + 1 <= minutes; m++) {
    total += Math.min(rate, max);
    if (rate >= max || factor === 1) {
      // the rate no longer changes: the rest is linear
      const rest = minutes - (m + 1);
      return 1 + Math.floor(total + Math.min(rate, max) * rest);
    }
    rate *= factor;
  }
  return 1 + Math.floor(total + Math.min(rate, max) * (minutes - m));
}

/**
 * The most a job's unused allowance may hold `elapsedMs` after its rate epoch: one minute at
 * the rate of the current minute, plus the one always allowed. The allowance is an integral
 * over the epoch's whole span, so a time with less to send than the rate allowed (an
 * in-flight window full, a continuous job with no new device, sends that failed, a server
 * down or a clock stepped forward) built it up, and it was all sent at once when there was
 * something to send again; the engine gives up what is above this (`rateForfeit`), so no
 * minute sends more than about two minutes' worth. Infinity when there is no limit.
 */
export function rateCap(plan: { maxPerMinute?: number; rampUp?: { initialPerMinute: number; factor: number } }, elapsedMs: number): number {
  const max = plan.maxPerMinute ?? Infinity;
  if (!plan.rampUp) return max === Infinity ? Infinity : 1 + Math.ceil(max);
  const { initialPerMinute, factor } = plan.rampUp;
  const minute = Math.floor(Math.max(0, elapsedMs) / 60_000);
  // factor^minute overflows to Infinity for a long wave, which min() takes as the maximum
  return 1 + Math.ceil(Math.min(max, initialPerMinute * factor ** minute));
}

/** States that end an execution (for counting). */
export const FINISHED: readonly ExecutionStatus[] = ['SUCCEEDED', 'FAILED', 'TIMED_OUT', 'REJECTED'];

/** Counts per state over the waves selected by `inWave`. */
export function tally(counts: readonly ExecutionCount[], inWave: (wave: number) => boolean = () => true): Record<ExecutionStatus, number> {
  const out: Record<ExecutionStatus, number> = { QUEUED: 0, IN_PROGRESS: 0, SUCCEEDED: 0, FAILED: 0, TIMED_OUT: 0, REJECTED: 0, CANCELED: 0, REMOVED: 0 };
  for (const c of counts) if (inWave(c.wave)) out[c.status] += c.count;
  return out;
}

/** Success percentage of finished updates (REJECTED, CANCELED and REMOVED do not count); 100 when none finished. */
export function successPercent(t: Record<ExecutionStatus, number>): number {
  const finished = t.SUCCEEDED + t.FAILED + t.TIMED_OUT;
  return finished === 0 ? 100 : (t.SUCCEEDED / finished) * 100;
}
