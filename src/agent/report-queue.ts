/**
 * Serializes the agent's reports: one in flight at a time, so the server sees them in order
 * even across retries. A queued report is replaced by a newer one of the same job and status
 * (a progress report by a later one: only the latest matters, as reports carry whole state),
 * so a fast download never queues a report per chunk; phase changes are all sent, in order.
 */
import type { JsonObject } from '../protocol/json.ts';

interface Waiter {
  resolve: (ack: JsonObject) => void;
  reject: (err: unknown) => void;
}

interface Queued {
  software: JsonObject;
  waiters: Waiter[];
}

/** An ordered queue of reports that coalesces repeats of one phase. */
export class ReportQueue {
  private readonly send: (software: JsonObject) => Promise<JsonObject>;
  private readonly queue: Queued[] = [];
  private busy = false;

  /** `send` publishes one report and resolves with its accepted answer. */
  constructor(send: (software: JsonObject) => Promise<JsonObject>) {
    this.send = send;
  }

  /**
   * Queues a report. Resolves with the accepted answer of this report, or of a newer one
   * that replaced it before it was sent; rejects when that one failed for good.
   */
  submit(software: JsonObject): Promise<JsonObject> {
    return new Promise((resolve, reject) => {
      const last = this.queue[this.queue.length - 1];
      if (last && last.software.status === software.status && last.software.jobId === software.jobId) {
        last.software = software;
        last.waiters.push({ resolve, reject });
      } else {
        this.queue.push({ software, waiters: [{ resolve, reject }] });
      }
      if (!this.busy) void this.pump();
    });
  }

  private async pump(): Promise<void> {
    this.busy = true;
    for (let next = this.queue.shift(); next; next = this.queue.shift()) {
      try {
        const ack = await this.send(next.software);
        for (const w of next.waiters) w.resolve(ack);
      } catch (err) {
        for (const w of next.waiters) w.reject(err);
      }
    }
    this.busy = false;
  }
}
