/**
 * The devices whose access was withdrawn (revoked, or deleted while this instance ran), held
 * in memory so that a device's request is checked against them without a store read: the
 * request path is the hot path. Why it is needed: behind an external Mosquitto with
 * certificate logins (`updraft broker mosquitto-config --updraft-ca`), Mosquitto does not
 * use the password file on the device listener, so a revoked device (left out of it) still
 * logs in with its certificate, and its requests reach Updraft attributed to it. The
 * embedded broker refuses it at CONNECT and closes its connection at the revocation; no
 * instance can close a connection held by Mosquitto.
 *
 * Loaded at start from the store (the revoked devices, selected in the database, page by page),
 * then kept by the registry's `device.credentials` events, which every instance hears (the
 * event relay brings those of the others): each one rereads that device. A device deleted
 * before this instance started is not in the store and not known here: its requests are
 * not refused by this (docs/security.md).
 */
import { routeRequests, type MessageBus } from '../broker/message-bus.ts';
import type { EventBus } from '../events/event-bus.ts';
import { AWS_THINGS_PREFIX } from '../protocol/aws-topics.ts';
import { parseJobLogTopic } from '../protocol/topics.ts';
import { ThrottledLog } from '../util/log-throttle.ts';
import type { StateStore } from '../store/state-store.ts';
import type { Logger } from '../util/logger.ts';

/** Devices read per page at start. */
const PAGE = 1000;
/** A reread the store failed: tried again this long after, until it succeeds. */
const RETRY_MS = 2000;
/** Rereads at a time. */
const READERS = 4;

/** The revoked and deleted devices, in memory, kept current by the registry's events. */
export class RevokedDevices {
  private readonly deps: { store: StateStore; events: EventBus; logger: Logger };
  /** Device id → why its requests are refused. */
  private readonly withdrawn = new Map<string, 'revoked' | 'deleted'>();
  /** Devices to read again, in event order (a device named twice is read once). */
  private readonly pending = new Set<string>();
  /** Devices being read → whether an event came meanwhile (read again after). */
  private readonly inFlight = new Map<string, boolean>();
  private active = 0;
  /** Devices an event named while the start's scan ran: the scan's older reading does not apply to them. */
  private touchedDuringLoad: Set<string> | undefined;
  private off: (() => void) | undefined;
  private stopped = false;

  constructor(deps: { store: StateStore; events: EventBus; logger: Logger }) {
    this.deps = deps;
  }

  /** Follows the events, then reads the revoked devices from the store. */
  async start(): Promise<void> {
    this.stopped = false;
    this.touchedDuringLoad = new Set();
    this.off = this.deps.events.on('device.credentials', ({ deviceId }) => this.reread(deviceId));
    try {
      let after: string | undefined;
      do {
        const page = await this.deps.store.listDevices({ ...(after !== undefined ? { after } : {}), limit: PAGE, revokedOnly: true });
        for (const d of page.items) if (d.revoked && !this.touchedDuringLoad.has(d.deviceId)) this.withdrawn.set(d.deviceId, 'revoked');
        after = page.next;
      } while (after !== undefined);
    } finally {
      this.touchedDuringLoad = undefined;
    }
  }

  /** Stops following the events. */
  stop(): void {
    this.stopped = true;
    this.off?.();
    this.off = undefined;
  }

  /** Why `deviceId`'s requests are refused (`device revoked`, ...), or undefined: a map lookup. */
  refusal(deviceId: string): string | undefined {
    const why = this.withdrawn.get(deviceId);
    if (why === undefined) return undefined;
    return why === 'revoked' ? `device ${deviceId} is revoked: its requests are refused (reinstate it: updraft device reinstate ${deviceId})` : `device ${deviceId} is not registered (deleted): its requests are refused`;
  }

  /** A device's credentials changed (registered, revoked, reinstated, deleted): read it again. */
  private reread(deviceId: string): void {
    this.touchedDuringLoad?.add(deviceId);
    // one being read is read again after: what it reads may predate this event
    if (this.inFlight.has(deviceId)) this.inFlight.set(deviceId, true);
    else this.pending.add(deviceId);
    this.pump();
  }

  /**
   * Reads the pending devices, READERS at a time: a bulk registration of 10,000 devices is
   * 10,000 events on every instance, which must not take the store's connections from requests.
   */
  private pump(): void {
    for (const deviceId of this.pending) {
      if (this.stopped || this.active >= READERS) return;
      this.pending.delete(deviceId);
      this.active++;
      this.inFlight.set(deviceId, false);
      void this.read(deviceId).finally(() => {
        this.active--;
        if (this.inFlight.get(deviceId)) this.pending.add(deviceId);
        this.inFlight.delete(deviceId);
        this.pump();
      });
    }
  }

  private async read(deviceId: string): Promise<void> {
    try {
      const d = await this.deps.store.getDevice(deviceId);
      if (!d) this.withdrawn.set(deviceId, 'deleted');
      else if (d.revoked) this.withdrawn.set(deviceId, 'revoked');
      else this.withdrawn.delete(deviceId);
    } catch (err) {
      // the store down: the device is judged by what was known before until a reread succeeds
      this.deps.logger.warn('a device whose credentials changed cannot be reread; retrying: until then its requests are judged by what was known before', { deviceId, error: (err as Error).message });
      setTimeout(() => {
        if (this.stopped) return;
        if (this.inFlight.has(deviceId)) this.inFlight.set(deviceId, true);
        else this.pending.add(deviceId);
        this.pump();
      }, RETRY_MS).unref();
    }
  }
}

/**
 * `bus` without the job-log uploads (`state/{id}/job-log`) and AWS jobs requests
 * (`$aws/things/{id}/jobs/...`) of a withdrawn device, which go unanswered: the other requests
 * of such a device are refused where they are handled (its shadow requests by the replica, 403;
 * credentials and certificate renewals, 403 `device revoked`). Without it a revoked device that
 * an external broker admitted by its certificate stored job logs and moved its AWS jobs'
 * executions. Each dropped request is said at most once per 30 s (a WARN, with the count of the
 * others).
 */
export function refuseWithdrawn(bus: MessageBus, revoked: RevokedDevices, logger: Logger): MessageBus {
  const log = new ThrottledLog(logger);
  return routeRequests(bus, (msg, next) => {
    if (msg.sender.kind === 'device' && (parseJobLogTopic(msg.topic) !== undefined || isAwsJobsTopic(msg.topic))) {
      const why = revoked.refusal(msg.sender.id);
      if (why !== undefined) {
        log.warn('a request of a withdrawn device dropped unanswered', { deviceId: msg.sender.id, topic: msg.topic, why });
        return;
      }
    }
    return next(msg);
  });
}

function isAwsJobsTopic(topic: string): boolean {
  if (!topic.startsWith(AWS_THINGS_PREFIX)) return false;
  const rest = topic.slice(AWS_THINGS_PREFIX.length);
  const slash = rest.indexOf('/');
  return slash > 0 && (rest.startsWith('jobs/', slash + 1) || rest.slice(slash + 1) === 'jobs');
}
