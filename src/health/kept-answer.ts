/**
 * One answer computed at a time and kept a while: every request while it is computed shares
 * that computation, and its result is answered for `keptMs` after it ended; a computation that
 * failed is not kept (the next request computes again).
 */
export class KeptAnswer<T> {
  private entry: { value: Promise<T>; doneAt?: number } | undefined;

  /** `compute` makes the answer; `now` is the clock its age is measured by (tests move it). */
  constructor(
    private readonly compute: () => Promise<T>,
    private readonly keptMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** The kept answer, the one being computed, or a new one. */
  get(): Promise<T> {
    const e = this.entry;
    if (e && (e.doneAt === undefined || this.now() - e.doneAt < this.keptMs)) return e.value;
    const entry: { value: Promise<T>; doneAt?: number } = { value: Promise.resolve().then(this.compute) };
    entry.value.then(
      () => (entry.doneAt = this.now()),
      () => this.entry === entry && (this.entry = undefined),
    );
    this.entry = entry;
    return entry.value;
  }
}
