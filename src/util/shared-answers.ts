/**
 * Answers kept per key and shared: callers asking for a key while its answer is computed
 * share that one computation, and the answer is given again for as long as `fresh` says its
 * stamp (a time, a fingerprint of the data) still holds; a computation that failed is not kept
 * (the next caller computes again). At most `max` keys, the one computed longest ago dropped
 * first. For the server's aggregations (http/insight-routes.ts: the devices count and a job's
 * chart; http/health-routes.ts: doctor's findings): open pages and tabs asking the same
 * question cost one read.
 */
import { rememberLru } from './lru.ts';

/** How SharedAnswers decides and bounds. */
export interface SharedAnswersOptions<S> {
  /** Most keys kept. */
  max: number;
  /** True when an answer stamped `kept` still answers a request made at `now`. */
  fresh: (kept: S, now: S) => boolean;
  /**
   * A computation still running answers every caller of its key, fresh or not. For stamps of
   * time: without it, a computation that takes longer than an answer is kept (a count over a
   * big fleet on a loaded server) is started again beside itself by the next caller.
   */
  shareRunning?: boolean;
  /** The stamp an answer gets as its computation ends (default: the stamp it was asked with): for an answer kept a time after it was made. */
  stampOnEnd?: () => S;
}

/** Answers per key, computed once while fresh and shared by concurrent callers. */
export class SharedAnswers<K, T, S> {
  private readonly entries = new Map<K, { stamp: S; running: boolean; value: Promise<T> }>();

  constructor(private readonly options: SharedAnswersOptions<S>) {}

  /** The answer for `key`: the kept one while fresh at `stamp` (or still running, with shareRunning), else a new one from `compute`. */
  get(key: K, stamp: S, compute: () => Promise<T>): Promise<T> {
    const hit = this.entries.get(key);
    if (hit && ((this.options.shareRunning && hit.running) || this.options.fresh(hit.stamp, stamp))) return hit.value;
    const entry = { stamp, running: true, value: compute() };
    entry.value.then(
      () => {
        entry.running = false;
        if (this.options.stampOnEnd) entry.stamp = this.options.stampOnEnd();
      },
      // a failure is not kept; a newer entry for the key, made meanwhile, stays
      () => this.entries.get(key) === entry && this.entries.delete(key),
    );
    rememberLru(this.entries, key, entry, this.options.max);
    return entry.value;
  }
}
