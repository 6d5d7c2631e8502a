/**
 * Runs tasks one at a time per key (one shadow) and concurrently across keys, with a bound
 * on the work waiting in total: past it, new work is refused (the caller answers 429)
 * instead of letting a backlog grow without limit.
 */
import { UpdraftError } from '../errors.ts';

/** Serializes work per key, bounded in total. */
export class KeyedQueue {
  private readonly tails = new Map<string, Promise<void>>();
  private pending = 0;
  private readonly maxPending: number;

  constructor(maxPending: number) {
    this.maxPending = maxPending;
  }

  /** Tasks accepted and not yet finished. */
  get size(): number {
    return this.pending;
  }

  /** Runs `task` after every earlier task of `key`; throws TOO_MANY_REQUESTS when full. */
  run<T>(key: string, task: () => Promise<T>): Promise<T> {
    if (this.pending >= this.maxPending) {
      return Promise.reject(new UpdraftError('TOO_MANY_REQUESTS', `Too many requests in flight (${this.maxPending}); retry later`));
    }
    this.pending++;
    const prev = this.tails.get(key) ?? Promise.resolve();
    const result = prev.then(task);
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(key, tail);
    void tail.then(() => {
      this.pending--;
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return result;
  }

  /** Resolves when every accepted task has finished. */
  async drain(): Promise<void> {
    while (this.tails.size > 0) await Promise.all([...this.tails.values()]);
  }
}
