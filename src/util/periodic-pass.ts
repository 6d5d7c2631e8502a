/**
 * A pass run every `everyMs` after the last one ended, so that passes never overlap: the
 * retention sweeps' timer (jobs/job-retention.ts, shadow/tombstone-retention.ts). The timer
 * alone does not keep the process alive; a pass that fails is reported to `failed`, and the
 * next one comes as usual. `stopping` is true from stop() on, for a pass to end early; stop()
 * waits for the pass under way.
 */
export class PeriodicPass {
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private stoppingNow = false;
  /** The pass under way (stop() waits for it). */
  private passing: Promise<unknown> | undefined;

  constructor(
    private readonly pass: () => Promise<unknown>,
    private readonly everyMs: number,
    private readonly failed: (err: unknown) => void,
  ) {}

  /** True once stop() was called: a pass under way ends at its next step. */
  get stopping(): boolean {
    return this.stoppingNow;
  }

  start(): void {
    this.stoppingNow = false;
    this.running = true;
    this.schedule();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.stoppingNow = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.passing;
  }

  private schedule(): void {
    if (!this.running) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.passing = this.pass()
        .catch(this.failed)
        .finally(() => {
          this.passing = undefined;
          this.schedule();
        });
    }, this.everyMs);
    this.timer.unref();
  }
}
