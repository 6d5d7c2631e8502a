/**
 * Tells an operator's endpoint (a chat hook, an incident tool, a CI pipeline) when a rollout
 * changes state: started, paused (by an operator, below a wave's threshold, for approval),
 * on to its next wave, completed, canceled, aborted. One JSON POST per change to
 * `webhook.url`, so nobody has to watch a dashboard for a rollout that stopped at 3 a.m.
 *
 * - **Signed**: with `webhook.secret`, `x-updraft-signature: t=<unix seconds>,sha256=<hex>`
 *   is the HMAC-SHA256 of `<t>.<body>` (the receiver recomputes it, and refuses an old `t`:
 *   a captured delivery cannot be replayed later).
 * - **At least once, in order**: deliveries go one at a time; a network error, a timeout
 *   (10 s), a 408, a 429 or a 5xx is retried with a doubling pause (5 attempts); another 4xx
 *   is the receiver refusing it, logged and dropped. `x-updraft-delivery` is the same on
 *   every attempt and on every instance (`<jobId>:<job version>`), so a receiver drops
 *   duplicates.
 * - **Bounded**: at most 1,000 deliveries wait; past that the oldest is dropped, with a warning.
 * - **One sender**: with several instances every one sees every job change (the event relay);
 *   only the one driving rollouts (`isLeader`) sends.
 */
import { createHmac } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { JobRecord } from '../store/state-store.ts';
import type { Logger } from '../util/logger.ts';
import type { EventBus } from './event-bus.ts';

/** What the endpoint receives. */
export interface WebhookDelivery {
  /** `<jobId>:<job version>`: the same for every attempt and every instance. */
  id: string;
  /** `job.state`: the job's status changed; `job.wave`: an IN_PROGRESS job started its next wave. */
  type: 'job.state' | 'job.wave';
  /** Milliseconds since the epoch of the change. */
  at: number;
  job: {
    jobId: string;
    artifact: string;
    status: string;
    /** The status before, when this instance saw it. */
    previousStatus?: string;
    /** 1-based wave being rolled out, and how many there are. */
    wave: number;
    waves: number;
    /** Why it paused or aborted. */
    reason?: string;
    description?: string;
  };
}

/** What the notifier needs. */
export interface WebhookDeps {
  events: EventBus;
  url: string;
  /** HMAC key of the signature; empty: deliveries are not signed. */
  secret: string;
  /** True on the instance that drives rollouts: the only one that sends. */
  isLeader: () => boolean;
  logger: Logger;
  /** First retry pause in ms (doubled per attempt); default 1000. */
  retryDelayMs?: number;
  now?: () => number;
}

const MAX_QUEUED = 1000;
const ATTEMPTS = 5;
const TIMEOUT_MS = 10_000;
/** A running job's first sighting this long after its creation is a restart, not news. */
const NEW_JOB_MS = 60_000;

/** Sends job changes to the operator's endpoint. */
export class WebhookNotifier {
  private readonly deps: WebhookDeps;
  private readonly queue: { delivery: WebhookDelivery; body: string }[] = [];
  /** Each job's last status and wave seen (bounded like RecentEvents). */
  private readonly last = new Map<string, { status: string; wave: number }>();
  private off: (() => void) | undefined;
  private running = false;
  /** The drain under way (stop() waits for it), and whether one runs: set and cleared with no await between the queue's last check and the flag. */
  private sending: Promise<void> | undefined;
  private draining = false;
  private readonly stopped = new AbortController();
  /** Deliveries made, failed for good, and dropped from a full queue (tests, metrics). */
  readonly stats = { delivered: 0, failed: 0, dropped: 0 };

  constructor(deps: WebhookDeps) {
    this.deps = deps;
  }

  async start(): Promise<void> {
    this.running = true;
    this.off = this.deps.events.on('job.changed', ({ job }) => this.onJob(job));
    if (!this.deps.secret) this.deps.logger.warn('webhook deliveries are not signed: set webhook.secret (UPDRAFT_WEBHOOK_SECRET) so the receiver can check they come from here');
  }

  async stop(): Promise<void> {
    this.running = false;
    this.off?.();
    this.stopped.abort();
    await this.sending;
    if (this.queue.length > 0) this.deps.logger.warn('webhook deliveries not sent before the stop', { count: this.queue.length });
    this.queue.length = 0;
  }

  private now(): number {
    return this.deps.now ? this.deps.now() : Date.now();
  }

  private onJob(job: JobRecord): void {
    const progress = (job.progress ?? {}) as { wave?: number; pause?: { message?: string }; abortReason?: string };
    const wave = progress.wave ?? 0;
    const seen = this.last.get(job.jobId);
    this.last.set(job.jobId, { status: job.status, wave });
    if (this.last.size > 1000) this.last.delete(this.last.keys().next().value!);
    let type: WebhookDelivery['type'];
    if (!seen) {
      // a running job first seen long after its creation: this instance restarted or took over
      if ((job.status === 'IN_PROGRESS' || job.status === 'SCHEDULED') && this.now() - job.createdAt > NEW_JOB_MS) return;
      type = 'job.state';
    } else if (seen.status !== job.status) {
      type = 'job.state';
    } else if (job.status === 'IN_PROGRESS' && wave > seen.wave) {
      type = 'job.wave';
    } else {
      return; // progress within a state: not news
    }
    if (!this.running || !this.deps.isLeader()) return;
    const spec = job.spec as { plan?: { waves?: unknown[] } } | undefined;
    const reason = job.status === 'PAUSED' ? progress.pause?.message : job.status === 'ABORTED' ? progress.abortReason : undefined;
    const delivery: WebhookDelivery = {
      id: `${job.jobId}:${job.version ?? 1}`,
      type,
      at: job.updatedAt ?? this.now(),
      job: {
        jobId: job.jobId,
        artifact: `${job.artifactName}@${job.artifactVersion}`,
        status: job.status,
        ...(seen && seen.status !== job.status ? { previousStatus: seen.status } : {}),
        wave: wave + 1,
        waves: spec?.plan?.waves?.length ?? 1,
        ...(reason ? { reason } : {}),
        ...(job.description ? { description: job.description } : {}),
      },
    };
    this.queue.push({ delivery, body: JSON.stringify(delivery) });
    if (this.queue.length > MAX_QUEUED) {
      const dropped = this.queue.shift()!;
      this.stats.dropped++;
      this.deps.logger.warn('webhook queue full: the oldest delivery was dropped', { delivery: dropped.delivery.id });
    }
    if (!this.draining) this.sending = this.drain();
  }

  private async drain(): Promise<void> {
    this.draining = true;
    try {
      while (this.running && this.queue.length > 0) {
        // taken off the queue while it is sent: a full queue drops the oldest waiting, not this one
        const next = this.queue.shift()!;
        const ok = await this.deliver(next.delivery, next.body);
        if (!this.running) return;
        if (ok) this.stats.delivered++;
        else this.stats.failed++;
      }
    } finally {
      // cleared as the loop sees an empty queue: a delivery queued after it starts a new drain
      this.draining = false;
    }
  }

  /** True when the endpoint took it; false when it refused it or every attempt failed. */
  private async deliver(delivery: WebhookDelivery, body: string): Promise<boolean> {
    const base = this.deps.retryDelayMs ?? 1000;
    let last = '';
    for (let attempt = 1; attempt <= ATTEMPTS && this.running; attempt++) {
      const t = Math.floor(this.now() / 1000);
      const headers: Record<string, string> = { 'content-type': 'application/json', 'user-agent': 'updraft-webhook', 'x-updraft-event': delivery.type, 'x-updraft-delivery': delivery.id };
      if (this.deps.secret) headers['x-updraft-signature'] = `t=${t},sha256=${createHmac('sha256', this.deps.secret).update(`${t}.${body}`).digest('hex')}`;
      try {
        const res = await fetch(this.deps.url, { method: 'POST', headers, body, signal: AbortSignal.any([AbortSignal.timeout(TIMEOUT_MS), this.stopped.signal]) });
        await res.body?.cancel().catch(() => {});
        if (res.ok) return true;
        last = `HTTP ${res.status}`;
        if (res.status < 500 && res.status !== 408 && res.status !== 429) {
          this.deps.logger.warn('webhook delivery refused by the receiver; not retried', { delivery: delivery.id, status: res.status });
          return false;
        }
      } catch (err) {
        last = (err as Error).message;
      }
      if (attempt < ATTEMPTS) await sleep(base * 2 ** (attempt - 1), undefined, { signal: this.stopped.signal }).catch(() => {});
    }
    if (this.running) this.deps.logger.warn('webhook delivery failed after every attempt', { delivery: delivery.id, attempts: ATTEMPTS, error: last });
    return false;
  }
}
