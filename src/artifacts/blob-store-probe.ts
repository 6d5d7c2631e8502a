/**
 * Whether the artifact storage answers now: the check `GET /readyz` makes of it
 * (server/readiness.ts), for the parts that act on the answer, such as the rollout engine,
 * which sends no new update command while devices could not download its build.
 */
import type { BlobStore } from './blob-store.ts';

/** A content address no blob has (the SHA-256 of nothing would be a real one). */
export const NO_BLOB = '0'.repeat(64);

/** What a probe found: `ok`, or `unreachable` (it failed) or `timeout` (no answer in time), with the detail for the log. */
export interface BlobStoreHealth {
  state: 'ok' | 'unreachable' | 'timeout';
  detail?: string;
}

/** Asks the store for the size of a blob no artifact has: any answer, even "absent", is an answer. */
export async function probeBlobStore(blobs: Pick<BlobStore, 'stat'>, timeoutMs = 2000): Promise<BlobStoreHealth> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const answered = blobs.stat(NO_BLOB).then(() => 'ok' as const);
    const late = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
    const state = await Promise.race([answered, late]);
    return state === 'ok' ? { state } : { state, detail: `no answer within ${timeoutMs} ms` };
  } catch (err) {
    return { state: 'unreachable', detail: (err as Error).message };
  } finally {
    clearTimeout(timer);
  }
}
