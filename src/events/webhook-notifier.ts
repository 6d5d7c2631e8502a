/**
 * Tells an operator's endpoint (a chat hook, an incident tool, a CI pipeline) when a rollout
 * changes state: started, paused (by an operator, below a wave's threshold, for approval),
 * on to its next wave, completed, canceled, aborted. One JSON POST per change to
 * `webhook.url`, so nobody has to watch a dashboard for a rollout that stopped at 3 a.m.
 *
 * - **Signed**: with `webhook.secret`, `x-updraft-signature: t=<unix seconds>,sha256=<hex>`
 *   is the HMAC-SHA256 of `<t>.<body>` (the receiver recomputes it, and refuses an old `t`:
 *   a captured delivery cannot be replayed later). While the secret is rotated
 *   (`webhook.previousSecret`), `x-updraft-signature-previous` is the same with the key it
 *   replaces: a receiver holding one secret verifies either header, so it can move to the new
 *   one at any moment, and the main header keeps its format for receivers that parse it
 *   strictly (a second `sha256=` in it would break them).
 * - **At least once, in order, across restarts and instances**: a change is written to the
 *   store (the shared settings, `webhook:<time>:<job>:<version>`) before it is sent, by every
 *   instance that sees it (the relayed events), the first write winning: so a change made
 *   while no instance drove rollouts, or queued when the sender stopped or died, is sent by
 *   the next one. Only the instance driving rollouts (`isLeader`) sends, one at a time, in
 *   the order of the changes (a job's own in the order of its versions), and marks each sent (kept an hour, so that a late copy from
 *   another instance is not taken for news). A network error, a timeout (10 s), a 408, a
 *   429 or a 5xx is retried with a doubling pause (5 attempts); another 4xx is the receiver
 *   refusing it, logged and dropped. A 3xx is not followed (fetch's default would turn the
 *   POST into a GET without the body, or send the signed body to another origin) and is a
 *   failure for good, logged like a refusal: the URL is not the final one, and another
 *   attempt would be redirected the same. `x-updraft-delivery` is the same on every
 *   attempt and on every instance (`<jobId>:<job version>`), so a receiver drops the
 *   duplicates a sender's death between sending and marking can cause.
 * - **Bounded**: at most 1,000 deliveries wait; past that the oldest waiting is dropped,
 *   with a warning.
 * - **The URL is a secret** (a chat hook's token is in its path, another receiver's in its
 *   query): no log line holds it, nor a redirect's target beyond its origin, nor the URL that
 *   fetch quotes in some errors.
 */
import { createHmac } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { JobRecord, StateStore } from '../store/state-store.ts';
import type { Logger } from '../util/logger.ts';
import { redactUrlsIn } from '../util/redact-url.ts';
import type { EventBus } from './event-bus.ts';

/** What the endpoint receives. */
export interface WebhookDelivery {
  /** `<jobId>:<job version>`: the same for every attempt and every instance. */
  id: string;
  /** `job.state`: the job's status changed; `job.wave`: an IN_PROGRESS job started its next wave. */
  type: 'job.state' | 'job.wave';
  /** Milliseconds since the epoch of the change, by the clock of the instance that made it: a job's later change may carry an earlier `at` (the version in `id` orders them). */
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
  /** Where deliveries wait (shared by the instances), so none is lost to a stop or a handover. */
  store: StateStore;
  url: string;
  /** HMAC key of the signature; empty: deliveries are not signed. */
  secret: string;
  /** During a rotation, the key `secret` replaces: `x-updraft-signature-previous` is signed with it (with `secret` only). */
  previousSecret?: string;
  /** True on the instance that drives rollouts: the only one that sends. */
  isLeader: () => boolean;
  logger: Logger;
  /** First retry pause in ms (doubled per attempt); default 1000. */
  retryDelayMs?: number;
  /** How often the sender looks for deliveries waiting in the store (written by another instance, or before a handover), in ms; default 5000. */
  scanMs?: number;
  /**
   * The clock job times are kept by (on a shared database, the database's:
   * `cluster/cluster-clock.ts`), which a change's age and a sent record's hour are judged by;
   * default this machine's. A signature's `t` is this machine's clock, as the receiver's is.
   */
  now?: () => number;
}

const MAX_QUEUED = 1000;
const ATTEMPTS = 5;
const TIMEOUT_MS = 10_000;
/** A running job's first sighting this long after its creation, or a paused or ended one's this long after its change, is a restart, not news. */
const NEW_JOB_MS = 60_000;
/** Key prefix of the deliveries in the store's shared settings. */
export const WEBHOOK_KEY = 'webhook:';
/** How long a sent delivery's record is kept: a copy written late by another instance is then not sent again. */
const SENT_KEPT_MS = 3_600_000;

/** A delivery as stored: waiting, or `sentAt` (delivered, or given up). */
interface Stored {
  delivery: WebhookDelivery;
  sentAt?: number;
}

/** Where a URL points, fit to log: scheme, host and port, and `/…` for a path or query, which may be a receiver's token. */
function originOf(url: URL): string {
  return url.origin === 'null' ? `${url.protocol}…` : `${url.origin}/${url.pathname === '/' && !url.search ? '' : '…'}`;
}

/** The store key of a job's change: in the order of the changes, the same on every instance. */
function keyOf(at: number, jobId: string, version: number): string {
  return `${WEBHOOK_KEY}${String(at).padStart(15, '0')}:${jobId}:${String(version).padStart(10, '0')}`;
}

/**
 * Removes the deliveries of job `jobId` still waiting in the store (its job deleted: what it
 * would tell of is gone); those sent stay their hour. Resolves with how many were removed.
 */
export async function dropWaitingDeliveries(store: Pick<StateStore, 'listSettings' | 'deleteSetting'>, jobId: string): Promise<number> {
  let dropped = 0;
  for (const { key, value } of await store.listSettings(WEBHOOK_KEY)) {
    // <prefix><time>:<jobId>:<version> (keyOf); job ids hold no colon
    const rest = key.slice(WEBHOOK_KEY.length);
    if (rest.slice(rest.indexOf(':') + 1, rest.lastIndexOf(':')) !== jobId) continue;
    let waiting = true;
    try {
      waiting = (JSON.parse(value) as Stored).sentAt === undefined;
    } catch {
      // unreadable: the sender's next pass removes it anyway
    }
    if (waiting && (await store.deleteSetting(key))) dropped++;
  }
  return dropped;
}

/**
 * The waiting deliveries (in the order of their keys: the changes' times) with each job's own
 * put in the order of its versions, in the places its times gave them. A job's times may go
 * back from one write to the next (its pause stamped by the instance that took the operator's
 * request, its abort by the leader's tick that began before the pause and read the job after
 * it; two clocks, or one stepped back); its versions never do (each write is conditional on
 * the one before). Other jobs' deliveries keep their places.
 */
function inVersionOrder<T extends { key: string; stored: Stored }>(waiting: T[]): T[] {
  const versionOf = (w: T) => Number(w.key.slice(w.key.lastIndexOf(':') + 1));
  const byJob = new Map<string, T[]>();
  for (const w of waiting) {
    const own = byJob.get(w.stored.delivery.job.jobId);
    if (own) own.push(w);
    else byJob.set(w.stored.delivery.job.jobId, [w]);
  }
  for (const own of byJob.values()) own.sort((a, b) => versionOf(a) - versionOf(b));
  const taken = new Map<string, number>();
  return waiting.map((w) => {
    const jobId = w.stored.delivery.job.jobId;
    const i = taken.get(jobId) ?? 0;
    taken.set(jobId, i + 1);
    return byJob.get(jobId)![i]!;
  });
}

/**
 * For a paused or ended job seen for the first time (a restart, an instance taking over, a
 * job this instance's memory let go): true only when this record is the write that set its
 * status (the pause's `at`, the end's `finishedAt` are that write's `updatedAt`) and that
 * write is recent. A later write to the job in the same status (its counts, a total settled
 * after a continuous job's stop) is no change, and the change seen again long after (a
 * replay) is not news: its delivery record, kept an hour after it was sent, may be gone, and
 * the first-write-wins key would no longer stop it.
 */
function isStatusChange(job: JobRecord, now: number): boolean {
  const progress = (job.progress ?? {}) as { pause?: { at?: unknown }; finishedAt?: unknown };
  const since = job.status === 'PAUSED' ? progress.pause?.at : progress.finishedAt;
  const at = job.updatedAt ?? job.createdAt;
  // a record that does not tell when its status began (written before these fields): by its age alone
  if (typeof since === 'number' && since !== at) return false;
  return now - at <= NEW_JOB_MS;
}

/** Sends job changes to the operator's endpoint. */
export class WebhookNotifier {
  private readonly deps: WebhookDeps;
  /** Each job's last status and wave seen (bounded like RecentEvents): what a change is judged by when its event does not carry the record it replaced. */
  private readonly last = new Map<string, { status: string; wave: number; version: number }>();
  private off: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  /** The drain under way (stop() waits for it), and whether another pass is wanted after it. */
  private sending: Promise<void> | undefined;
  private again = false;
  /** Records being written (stop() waits for them). */
  private readonly writes = new Set<Promise<void>>();
  private readonly stopped = new AbortController();
  /** Deliveries made, failed for good, and dropped from a full queue; and, on the sender, how many wait in the store (tests, metrics). */
  readonly stats = { delivered: 0, failed: 0, dropped: 0, waiting: 0 };

  constructor(deps: WebhookDeps) {
    this.deps = deps;
  }

  async start(): Promise<void> {
    this.running = true;
    this.off = this.deps.events.on('job.changed', ({ job, previous, waves }) => this.onJob(job, previous, waves));
    if (!this.deps.secret) this.deps.logger.warn('webhook deliveries are not signed: set webhook.secret (UPDRAFT_WEBHOOK_SECRET) so the receiver can check they come from here');
    // what waits in the store: written by another instance, or before a stop or a handover
    this.timer = setInterval(() => this.kick(), this.deps.scanMs ?? 5_000);
    this.timer.unref();
    this.kick();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.off?.();
    clearInterval(this.timer);
    this.stopped.abort();
    await Promise.all([this.sending, ...this.writes]);
  }

  private now(): number {
    return this.deps.now ? this.deps.now() : Date.now();
  }

  /** `waves`: the job's count of waves when `job` comes without its spec (a relayed event). */
  private onJob(job: JobRecord, previous: JobRecord | undefined, waves: number | undefined): void {
    const progress = (job.progress ?? {}) as { wave?: number; pause?: { message?: string }; abortReason?: string };
    const wave = progress.wave ?? 0;
    // a write's event carries the record it replaced: the change is judged by that, not by
    // this instance's memory, which a restart or a takeover emptied (the first write seen
    // after one, a resume or a next wave, was taken for a running job seen again, and lost)
    const version = job.version ?? 1;
    const known = this.last.get(job.jobId);
    // an older record seen after a newer one (another instance's event relayed late, a notice
    // of the record a tick began with): memory does not go back
    if (!known || version >= known.version) {
      this.last.set(job.jobId, { status: job.status, wave, version });
      if (this.last.size > 1000) this.last.delete(this.last.keys().next().value!);
    } else if (!previous) {
      return;
    }
    const seen = previous ? { status: previous.status, wave: ((previous.progress ?? {}) as { wave?: number }).wave ?? 0 } : known;
    let type: WebhookDelivery['type'];
    if (previous && this.now() - (job.updatedAt ?? job.createdAt) > SENT_KEPT_MS) {
      return; // a copy of a write seen past the hour its sent record is kept: the first-write-wins key no longer stops it
    } else if (!seen) {
      // no record replaced (a job's creation, a notice that wrote nothing) and never seen here:
      // a running job first seen long after its creation is this instance restarted or taking over
      if (job.status === 'IN_PROGRESS' || job.status === 'SCHEDULED') {
        if (this.now() - job.createdAt > NEW_JOB_MS) return;
      } else if (!isStatusChange(job, this.now())) {
        return;
      }
      type = 'job.state';
    } else if (seen.status !== job.status) {
      type = 'job.state';
    } else if (job.status === 'IN_PROGRESS' && wave > seen.wave) {
      type = 'job.wave';
    } else {
      return; // progress within a state: not news
    }
    if (!this.running) return;
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
        waves: spec?.plan?.waves?.length ?? waves ?? 1,
        ...(reason ? { reason } : {}),
        ...(job.description ? { description: job.description } : {}),
      },
    };
    // every instance writes it (the first write wins): the sender may be another one, or none for now
    const write = this.deps.store
      .addSetting(keyOf(delivery.at, job.jobId, job.version ?? 1), JSON.stringify({ delivery } satisfies Stored))
      .then((added) => {
        if (added) this.kick();
      })
      .catch((err: unknown) => this.deps.logger.warn('webhook delivery not recorded; it is sent only if another instance recorded it', { delivery: delivery.id, error: (err as Error).message }))
      .finally(() => this.writes.delete(write));
    this.writes.add(write);
  }

  /** Sends what waits, on the instance that drives rollouts; a pass under way goes round again. */
  private kick(): void {
    if (!this.running || !this.deps.isLeader()) return;
    if (this.sending) {
      this.again = true;
      return;
    }
    this.sending = this.drain()
      .catch((err: unknown) => this.deps.logger.warn('webhook deliveries not read from the store; trying again shortly', { error: (err as Error).message }))
      .finally(() => {
        this.sending = undefined;
        if (this.again) {
          this.again = false;
          this.kick();
        }
      });
  }

  /** One pass: the waiting deliveries, oldest first (a job's own in the order of its versions), one at a time; sent records past their hour removed. */
  private async drain(): Promise<void> {
    const { store } = this.deps;
    let waiting: { key: string; stored: Stored }[] = [];
    for (const { key, value } of await store.listSettings(WEBHOOK_KEY)) {
      let stored: Stored;
      try {
        stored = JSON.parse(value) as Stored;
      } catch {
        await store.deleteSetting(key);
        continue;
      }
      if (stored.sentAt === undefined) waiting.push({ key, stored });
      else if (this.now() - stored.sentAt > SENT_KEPT_MS) await store.deleteSetting(key);
    }
    waiting = inVersionOrder(waiting);
    // a receiver down for long: the oldest waiting are dropped, the latest news kept
    while (waiting.length > MAX_QUEUED) {
      const dropped = waiting.shift()!;
      await store.deleteSetting(dropped.key);
      this.stats.dropped++;
      this.deps.logger.warn('webhook queue full: the oldest delivery was dropped', { delivery: dropped.stored.delivery.id });
    }
    this.stats.waiting = waiting.length;
    for (const { key, stored } of waiting) {
      if (!this.running || !this.deps.isLeader()) return;
      const ok = await this.deliver(stored.delivery, JSON.stringify(stored.delivery));
      if (!this.running) return; // stopped mid-delivery: it waits in the store for the next sender
      if (ok) this.stats.delivered++;
      else this.stats.failed++;
      await store.putSetting(key, JSON.stringify({ delivery: stored.delivery, sentAt: this.now() } satisfies Stored));
      this.stats.waiting--;
    }
  }
  /** True when the endpoint took it; false when it refused or redirected it, or every attempt failed. */
  private async deliver(delivery: WebhookDelivery, body: string): Promise<boolean> {
    const base = this.deps.retryDelayMs ?? 1000;
    let last = '';
    for (let attempt = 1; attempt <= ATTEMPTS && this.running; attempt++) {
      const t = Math.floor(Date.now() / 1000);
      const headers: Record<string, string> = { 'content-type': 'application/json', 'user-agent': 'updraft-webhook', 'x-updraft-event': delivery.type, 'x-updraft-delivery': delivery.id };
      const sign = (secret: string) => `t=${t},sha256=${createHmac('sha256', secret).update(`${t}.${body}`).digest('hex')}`;
      if (this.deps.secret) headers['x-updraft-signature'] = sign(this.deps.secret);
      if (this.deps.secret && this.deps.previousSecret) headers['x-updraft-signature-previous'] = sign(this.deps.previousSecret);
      try {
        // not followed: a 301-303 turns the POST into a GET without the body (the notification
        // lost, yet counted delivered), a 307/308 sends the signed body to wherever it points
        const res = await fetch(this.deps.url, { method: 'POST', headers, body, redirect: 'manual', signal: AbortSignal.any([AbortSignal.timeout(TIMEOUT_MS), this.stopped.signal]) });
        await res.body?.cancel().catch(() => {});
        if (res.ok) return true;
        if (res.status >= 300 && res.status < 400) {
          this.deps.logger.warn('webhook delivery failed: the receiver redirected it, and a redirect is not followed; set webhook.url to the final URL; not retried', { delivery: delivery.id, status: res.status, location: this.target(res.headers.get('location')) });
          return false;
        }
        last = `HTTP ${res.status}`;
        if (res.status < 500 && res.status !== 408 && res.status !== 429) {
          this.deps.logger.warn('webhook delivery refused by the receiver; not retried', { delivery: delivery.id, status: res.status });
          return false;
        }
      } catch (err) {
        last = this.errorText(err);
      }
      if (attempt < ATTEMPTS) await sleep(base * 2 ** (attempt - 1), undefined, { signal: this.stopped.signal }).catch(() => {});
    }
    if (this.running) this.deps.logger.warn('webhook delivery failed after every attempt', { delivery: delivery.id, attempts: ATTEMPTS, error: last });
    return false;
  }

  /** A redirect's Location, fit to log: its origin (relative to `webhook.url`), not its path or query. */
  private target(location: string | null): string {
    if (location === null) return '(no Location)';
    try {
      return originOf(new URL(location, this.deps.url));
    } catch {
      return '(a Location that is not a URL)';
    }
  }

  /**
   * A failed attempt's error, fit to log: fetch's message, with its cause (`fetch failed`
   * alone says nothing), and the hook's URL, which fetch quotes in some errors ("Request
   * cannot be constructed from a URL that includes credentials: ..."), as `<webhook.url>`;
   * any other URL without its user info and query.
   */
  private errorText(err: unknown): string {
    const e = err as Error & { cause?: unknown };
    let text = String(e?.message ?? err);
    const cause = e?.cause instanceof Error ? e.cause.message : undefined;
    if (cause && !text.includes(cause)) text += ` (${cause})`;
    const forms = new Set([this.deps.url]);
    try {
      forms.add(new URL(this.deps.url).href);
    } catch {
      // not a URL: only the text as given can be quoted
    }
    for (const form of forms) text = text.split(form).join('<webhook.url>');
    return redactUrlsIn(text);
  }
}
