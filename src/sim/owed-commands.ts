/**
 * Which devices the server still owes a command of a job (`SimOptions.commandOwed`): its
 * executions QUEUED or IN_PROGRESS, a retry the rollout holds back behind its rate, waves,
 * window, in-flight limit or a pause included. Asked per job, not per device: one listing of a
 * job's owed executions answers every device asking about it, so a fleet of failed devices
 * visiting at 1,000 a second does not send the server 1,000 device reads a second (review of
 * d646af1).
 *
 * A listing answers a device only if it started at the device's `since` or later (the start of
 * the visit that found no command, after the failure reached the device): an older one may
 * predate the retry's queuing. A device asks at least its idle time after its `since`, so in
 * steady state a job is listed about once per idle time, however many devices ask.
 */

/** One page of a job's owed executions (GET /api/v1/jobs/{id}/executions?status=QUEUED,IN_PROGRESS). */
export type OwedPage = { items: { deviceId: string }[]; next?: string };

/** Reads a page of the executions of `jobId` that are QUEUED or IN_PROGRESS, from cursor `after`. */
export type ListOwed = (jobId: string, after: string | undefined) => Promise<OwedPage>;

/** Answers `owed(deviceId, jobId, since)` from the job's latest listing started at `since` or later, listing again when there is none. */
export class OwedCommands {
  private readonly listings = new Map<string, { startedAt: number; owed: Promise<Set<string>> }>();

  constructor(private readonly listPage: ListOwed) {}

  /** Whether the server owes `deviceId` a command of `jobId`, by a listing started at `since` (ms, Date.now) or later. */
  async owed(deviceId: string, jobId: string, since: number): Promise<boolean> {
    let listing = this.listings.get(jobId);
    if (listing === undefined || listing.startedAt < since) {
      const started = { startedAt: Date.now(), owed: this.list(jobId) };
      listing = started;
      this.listings.set(jobId, started);
      // a failed listing is not kept: the next question lists again
      started.owed.catch(() => {
        if (this.listings.get(jobId) === started) this.listings.delete(jobId);
      });
    }
    return (await listing.owed).has(deviceId);
  }

  private async list(jobId: string): Promise<Set<string>> {
    const owed = new Set<string>();
    let after: string | undefined;
    do {
      const page = await this.listPage(jobId, after);
      for (const e of page.items) owed.add(e.deviceId);
      after = page.next;
    } while (after !== undefined);
    return owed;
  }
}
