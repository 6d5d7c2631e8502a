/**
 * Job deletions this process has heard of (`job.deleted`, local or relayed), counted per store,
 * for the caches that forget a deleted job: the tracker's jobs (jobIdentity) and the execution
 * writer's executions. A store call sent before the event and answered after it carries the job
 * as it was; remembered then, it would stay until newer entries pushed it out. So a cache takes
 * the count before the call and remembers its answer only if no deletion came meanwhile.
 *
 * A count rather than the deleted ids: nothing to bound, and a deletion is rare (an operator's,
 * or a few per retention pass), so that an answer about another job goes unremembered now and
 * then (read from the store the next time) costs nothing worth keeping ids for.
 */
import type { StateStore } from '../store/state-store.ts';

const heard = new WeakMap<StateStore, number>();

/** Records that a job of `store` was deleted (the tracker calls it on `job.deleted`). */
export function noteJobDeleted(store: StateStore): void {
  heard.set(store, (heard.get(store) ?? 0) + 1);
}

/** The deletions heard so far for `store`: take it before a call, compare after (`deletedSince`). */
export function jobDeletions(store: StateStore): number {
  return heard.get(store) ?? 0;
}

/** True if a job of `store` was deleted since `mark` (from `jobDeletions`) was taken: do not remember the answer. */
export function deletedSince(store: StateStore, mark: number): boolean {
  return jobDeletions(store) !== mark;
}
