/**
 * A job's creation done once per client key (draft-ietf-httpapi-idempotency-key-header): the
 * Command pattern's idempotent handling of duplicates. A client whose connection dropped after
 * the server created its job sends the request again with the same `Idempotency-Key`; the key
 * is held by the job row itself (`StateStore.createJob`'s claim, unique in the store), so the
 * retry finds that job, on any instance, and is answered with it instead of a second rollout.
 */
import { UpdraftError } from '../errors.ts';
import { IdempotencyKeyTaken, type IdempotencyClaim, type KeyHolder, type StateStore } from '../store/state-store.ts';

/** What a keyed creation answers: the job made now, or the one the key already holds (`replayed`). */
export interface CreatedOnce<T> {
  value: T;
  replayed: boolean;
}

/** Seconds a client is asked to wait (`Retry-After`) before sending again a request whose job is still being created. */
export const IN_PROGRESS_RETRY_SECONDS = 1;

/**
 * Runs `create(claim)` unless a job holds `claim`'s key already, and then answers `replay(jobId)`:
 * the same job, nothing created. The key is checked before the work (targets resolved, a job of
 * many devices written in pieces) and again by the store in the write that makes the job exist,
 * so two requests racing with one key (two instances, one each) make one job: the loser wrote
 * nothing, or removed its pieces, and answers the winner's job. Refused: the key held for
 * another request (CONFLICT, 422) or by a job still being created (CONFLICT, 409, Retry-After).
 */
export async function createOnce<T>(store: StateStore, claim: IdempotencyClaim | undefined, create: (claim?: IdempotencyClaim) => Promise<T>, replay: (jobId: string) => Promise<T>): Promise<CreatedOnce<T>> {
  if (!claim) return { value: await create(), replayed: false };
  // a job deleted between finding it and reading it freed its key: the next try creates
  for (let attempt = 0; ; attempt++) {
    const held = await store.findIdempotencyKey(claim.key);
    try {
      if (held) return { value: await replay(answerable(claim, held)), replayed: true };
      return { value: await create(claim), replayed: false };
    } catch (err) {
      if (err instanceof IdempotencyKeyTaken) return { value: await replay(answerable(claim, err.holder)), replayed: true };
      if (held && attempt < 2 && err instanceof UpdraftError && err.code === 'NOT_FOUND' && !(await store.findIdempotencyKey(claim.key))) continue;
      throw err;
    }
  }
}

/** The job id of `held` when it answers `claim`'s request; otherwise why not. */
function answerable(claim: IdempotencyClaim, held: KeyHolder): string {
  if (held.fingerprint !== claim.fingerprint) {
    throw new UpdraftError(
      'CONFLICT',
      `Idempotency-Key ${claim.key} was used for another request (job ${held.jobId} was created with it from a different body or route): send a new key for a new job, or the first request unchanged to get its job`,
      { status: 422 },
    );
  }
  if (held.inProgress) throw new KeyInProgress(claim.key, held.jobId);
  return held.jobId;
}

/** The key's first request is still creating its job (409): the HTTP answer asks for a retry after IN_PROGRESS_RETRY_SECONDS. */
export class KeyInProgress extends UpdraftError {
  constructor(key: string, jobId: string) {
    super('CONFLICT', `a request with Idempotency-Key ${key} is in progress (job ${jobId} is being created); retry in a moment to get its job`);
  }
}
