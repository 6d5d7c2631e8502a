/**
 * Answers kept per key and shared: callers asking for a key while its answer is computed
 * share that one computation, and the answer is given again for as long as `fresh` says its
 * stamp (a time, a fingerprint of the data) still holds; a computation that failed is not kept
 * (the next caller computes again). At most `max` keys, the one computed longest ago dropped
 * first. For the dashboard's aggregations (http/insight-routes.ts): open pages and tabs asking
 * the same question cost one read.
 */
import { rememberLru } from './lru.ts';

/** How SharedAnswers decides and bounds. */
export interface SharedAnswersOptions<S> {
  /** Most keys kept. */
  max: number;
  /** True when an answer computed at `kept` still answers a request made at `now`. */
  fresh: (kept: S, now: S) => boolean;
}

/** Answers per key, computed once while fresh and shared by concurrent callers. */
export class SharedAnswers<K, T, S> {
  private readonly entries = new Map<K, { stamp: S; value: Promise<T> }>();

  constructor(private readonly options: SharedAnswersOptions<S>) {}

  /** The answer for `key`: the kept one while fresh at `stamp`, else a new one from `compute`. */
  get(key: K, stamp: S, compute: () => Promise<T>): Promise<T> {
    const hit = this.entries.get(key);
    if (hit && this.options.fresh(hit.stamp, stamp)) return hit.value;
    const entry = { stamp, value: compute() };
    // a failure is not kept; a newer entry for the key, made meanwhile, stays
    entry.value.catch(() => this.entries.get(key) === entry && this.entries.delete(key));
    rememberLru(this.entries, key, entry, this.options.max);
    return entry.value;
  }
}
