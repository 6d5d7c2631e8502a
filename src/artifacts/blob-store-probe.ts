/**
 * Whether the artifact storage answers now: the check `GET /readyz` makes of it
 * (server/readiness.ts), for the parts that act on the answer, such as the rollout engine,
 * which sends no new update command while devices could not download its build.
 */
/** A content address no blob has (the SHA-256 of nothing would be a real one). */
export const NO_BLOB = '0'.repeat(64);

/** What a probe found: `ok`, or `unreachable` (it failed) or `timeout` (no answer in time), with the detail for the log. */
export interface BlobStoreHealth {
  state: 'ok' | 'unreachable' | 'timeout';
  detail?: string;
}

/**
 * What the probe asks of a store: BlobStore's `stat`, given a signal aborted when the probe
 * stops waiting. A store that can end its request on it should (S3BlobStore does): the probe
 * is asked every few seconds through an outage, and a request left hung at each holds one of
 * the client's sockets until none is left, for the probe and for downloads alike.
 */
export interface ProbedStore {
  stat(sha256: string, opts?: { signal?: AbortSignal }): Promise<number | undefined>;
}

/** Asks the store for the size of a blob no artifact has: any answer, even "absent", is an answer. */
export function probeBlobStore(blobs: ProbedStore, timeoutMs = 2000): Promise<BlobStoreHealth> {
  return answersWithin((signal) => blobs.stat(NO_BLOB, { signal }), timeoutMs);
}

/**
 * `ok` when `ask` settles within `timeoutMs`, `unreachable` when it fails first, `timeout`
 * otherwise; the signal given to `ask` is aborted at the timeout, so it can end what it
 * started rather than leave it running. The check of each dependency /readyz makes.
 */
export async function answersWithin(ask: (signal: AbortSignal) => Promise<unknown>, timeoutMs: number): Promise<BlobStoreHealth> {
  const ac = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  try {
    const answered = ask(ac.signal).then(() => 'ok' as const);
    const late = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
    const state = await Promise.race([answered, late]);
    if (state === 'ok') return { state };
    ac.abort(); // its failure, that follows, is no news: the race has already settled
    return { state, detail: `no answer within ${timeoutMs} ms` };
  } catch (err) {
    return { state: 'unreachable', detail: (err as Error).message };
  } finally {
    clearTimeout(timer);
  }
}
