/**
 * Read-modify-write of one execution with the store's conditional update (STYLE.md habit 7):
 * the tracker (device reports) and the rollout engine (dispatch, timeouts, cancel) change
 * the same rows concurrently, and neither may lose the other's write.
 */
import type { EventBus } from '../events/event-bus.ts';
import type { ExecutionRecord, StateStore } from '../store/state-store.ts';

/** Attempts before giving up on a contended row (the next tick or report tries again). */
const MAX_ATTEMPTS = 8;

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
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const cur = attempt === 0 && current ? current : await deps.store.getExecution(key.jobId, key.deviceId);
    if (!cur) return undefined;
    const change = edit(cur);
    if (!change) return undefined;
    const next: ExecutionRecord = { ...cur, ...change, updatedAt: now, version: cur.version + 1 };
    // a field set to undefined in `change` is removed (e.g. dueAt once nothing is due)
    for (const k of Object.keys(change) as (keyof ExecutionRecord)[]) if (change[k] === undefined) delete next[k];
    if (await deps.store.updateExecution(next)) {
      deps.events.emit('execution.changed', { previous: cur, current: next });
      return next;
    }
  }
  return undefined;
}
