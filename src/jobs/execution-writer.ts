/**
 * Read-modify-write of one execution with the store's conditional update (STYLE.md habit 7):
 * the tracker (device reports) and the rollout engine (dispatch, timeouts, cancel) change
 * the same rows concurrently, and neither may lose the other's write.
 */
import type { EventBus } from '../events/event-bus.ts';
import { isJsonObject, type JsonObject } from '../protocol/json.ts';
import type { ExecutionRecord, StateStore } from '../store/state-store.ts';
import { rememberLru } from '../util/lru.ts';
import { deletedSince, jobDeletions } from './job-deletions.ts';

/** Attempts before giving up on a contended row (the next tick or report tries again). */
const MAX_ATTEMPTS = 8;
/** Executions remembered per store (LRU); each costs a few hundred bytes. */
const CACHE_ENTRIES = 50_000;

/**
 * The last version of each execution written through a store in this process. An update is
 * dispatched, then reported on twice or more within seconds: the read of each
 * read-modify-write is served from here (a fleet update read every row three times, 6% of
 * the server's CPU). Safe with other writers (instances, other code paths): every write is
 * conditional on the version read, a stale entry makes it fail, and the retry reads the
 * store. An edit that finds nothing to do on a remembered row is confirmed on the store.
 */
const caches = new WeakMap<StateStore, Map<string, ExecutionRecord>>();

function cacheOf(store: StateStore): Map<string, ExecutionRecord> {
  let cache = caches.get(store);
  if (!cache) caches.set(store, (cache = new Map()));
  return cache;
}

/** Forgets every execution this process remembers of `store` (a database that may have gone back: StateStore.onDisruption). */
export function forgetAllExecutions(store: StateStore): void {
  caches.get(store)?.clear();
}

/**
 * Forgets what this process remembers of the executions of job `jobId` (deleted: on every
 * instance, the event being relayed). Otherwise they stay until 50,000 newer writes push
 * them out, about a kilobyte each. A scan of the cache: a deletion is rare, the cache bounded.
 */
export function forgetJobExecutions(store: StateStore, jobId: string): void {
  const cache = caches.get(store);
  if (!cache) return;
  const prefix = `${jobId}\n`;
  for (const slot of cache.keys()) if (slot.startsWith(prefix)) cache.delete(slot);
}

/** How many executions of job `jobId` this process remembers for `store` (tests). */
export function rememberedExecutions(store: StateStore, jobId: string): number {
  const prefix = `${jobId}\n`;
  let n = 0;
  for (const slot of caches.get(store)?.keys() ?? []) if (slot.startsWith(prefix)) n++;
  return n;
}

/**
 * Applies `edit` to the current execution and writes it if nobody wrote in between,
 * retrying on conflict. `edit` returns the fields to change, or undefined to leave the row
 * alone. Resolves with the written record, or undefined (no such row, or nothing to do).
 * Emits `execution.changed` after the commit.
 */
export async function mutateExecution(
  deps: { store: StateStore; events: EventBus },
  key: { jobId: string; deviceId: string },
  edit: (current: ExecutionRecord) => Partial<ExecutionRecord> | undefined,
  now: number,
  current?: ExecutionRecord,
): Promise<ExecutionRecord | undefined> {
  const cache = cacheOf(deps.store);
  const slot = `${key.jobId}\n${key.deviceId}`;
  let remembered = current ?? cache.get(slot);
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const cur = remembered ?? (await deps.store.getExecution(key.jobId, key.deviceId));
    const fromMemory = remembered !== undefined;
    remembered = undefined;
    if (!cur) return undefined;
    const edited = edit(cur);
    if (!edited) {
      if (!fromMemory) return undefined;
      continue; // nothing to do on what we remembered: confirm on the store's row
    }
    const change = withEarlierSuccess(cur, edited);
    const next: ExecutionRecord = { ...cur, ...change, updatedAt: now, version: cur.version + 1 };
    // a field set to undefined in `change` is removed (e.g. dueAt once nothing is due)
    for (const k of Object.keys(change) as (keyof ExecutionRecord)[]) if (change[k] === undefined) delete next[k];
    // the fields that changed: the store may write those columns only
    const mark = jobDeletions(deps.store);
    if (await deps.store.updateExecution(next, new Set(Object.keys(change) as (keyof ExecutionRecord)[]))) {
      // a job deleted since the write was sent (its event came before the answer) may be this
      // one, whose executions forgetJobExecutions has already forgotten: not remembered again
      if (deletedSince(deps.store, mark)) cache.delete(slot);
      else rememberLru(cache, slot, next, CACHE_ENTRIES);
      deps.events.emit('execution.changed', { previous: cur, current: next });
      return next;
    }
    cache.delete(slot);
  }
  return undefined;
}

/**
 * `change`, with the success a device reported for an earlier attempt (kept with that attempt's
 * outcome in `details.attempts`, execution-tracker.ts `earlierSuccess`) carried into
 * `details.lateSuccess` when it ends the execution TIMED_OUT or CANCELED without one: the device
 * runs the job's build, and `job show`, `device show` and the dashboard say so from
 * `lateSuccess`. Done here, where every execution write passes, rather than in each path that
 * ends one (a cancel of a queued or a sent retry, its timeout, a stop left unconfirmed, a
 * supersede, a retry taken back): one missed path was the bug. The latest such success is
 * taken; it names its attempt.
 */
export function withEarlierSuccess(cur: ExecutionRecord, change: Partial<ExecutionRecord>): Partial<ExecutionRecord> {
  const to = change.status;
  if ((to !== 'TIMED_OUT' && to !== 'CANCELED') || to === cur.status) return change;
  const details = change.details ?? cur.details;
  if (details.lateSuccess !== undefined) return change;
  // the row's record of past attempts, or the one before this write (a retry taken back
  // writes the details of the attempt it ends as, which had no record of itself)
  let kept: JsonObject | undefined;
  for (const past of [details.attempts, cur.details.attempts]) {
    for (const a of Array.isArray(past) ? past : []) {
      const late = isJsonObject(a) && isJsonObject(a.lateSuccess) ? a.lateSuccess : undefined;
      if (late && (kept === undefined || Number(late.at) > Number(kept.at))) kept = late;
    }
  }
  return kept ? { ...change, details: { ...details, lateSuccess: kept } } : change;
}
