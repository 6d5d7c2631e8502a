/**
 * The downloads this instance is serving, by device, so that a device whose access is
 * withdrawn loses them at once: the download route checks the device when a request starts,
 * and a download of hundreds of megabytes on a slow link goes on for minutes after that.
 *
 * It follows `device.credentials`, which the registry emits when a device is revoked
 * (deletion revokes first) and which the event relay brings from the other instances
 * (`cluster/event-relay.ts`); each event asks the store whether the device may still
 * download, and only for a device with a download in progress here, so a fleet being
 * registered costs no reads. A download is tracked before its device is checked: a
 * revocation committed after the check reaches it through the event, one committed before
 * is seen by the check.
 *
 * Not on a new secret: a URL or token is bound to the device, not to the secret of the
 * session it was sent to, so the old secret's holder could resume a cut download with the
 * same URL, and the device itself would only lose its progress. Revoke a leaked device to
 * end its downloads.
 */
import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { EventBus } from '../events/event-bus.ts';
import type { Logger } from '../util/logger.ts';

/** What the tracker needs. */
export interface ActiveDownloadsDeps {
  /** Where `device.credentials` arrives, from this instance's registry and from the relay. */
  events: EventBus;
  /** Why the device may not download any more (`device revoked`, not registered), or undefined. */
  refusal: (deviceId: string) => Promise<string | undefined>;
  logger: Logger;
}

/** Downloads in progress by device; ends those of a device that may no longer download. */
export class ActiveDownloads {
  private readonly deps: ActiveDownloadsDeps;
  private readonly byDevice = new Map<string, Set<ServerResponse>>();
  private off: (() => void) | undefined;

  constructor(deps: ActiveDownloadsDeps) {
    this.deps = deps;
  }

  async start(): Promise<void> {
    this.off = this.deps.events.on('device.credentials', ({ deviceId }) => {
      if (this.byDevice.has(deviceId)) void this.recheck(deviceId);
    });
  }

  async stop(): Promise<void> {
    this.off?.();
    this.off = undefined;
  }

  /** Tracks `res` as a download of `deviceId` until it closes. */
  add(deviceId: string, res: ServerResponse): void {
    let set = this.byDevice.get(deviceId);
    if (!set) this.byDevice.set(deviceId, (set = new Set()));
    set.add(res);
    res.once('close', () => {
      set.delete(res);
      if (set.size === 0 && this.byDevice.get(deviceId) === set) this.byDevice.delete(deviceId);
    });
  }

  private async recheck(deviceId: string): Promise<void> {
    let reason: string | undefined;
    try {
      reason = await this.deps.refusal(deviceId);
    } catch (err) {
      this.deps.logger.error('cannot tell whether a device may still download; its downloads in progress go on', { device: deviceId, error: (err as Error).message });
      return;
    }
    if (reason === undefined) return;
    const set = this.byDevice.get(deviceId);
    if (!set || set.size === 0) return;
    const cut = [...set];
    for (const res of cut) endAbruptly(res);
    this.deps.logger.info('downloads in progress cut', { device: deviceId, reason, downloads: cut.length });
  }
}

/** Downloads ended here: a response sent from memory may still say 'finish' (its write was done, its bytes dropped). */
const cutOff = new WeakSet<ServerResponse>();

/** True when `res` was ended because its device may no longer download. */
export function wasCutOff(res: ServerResponse): boolean {
  return cutOff.has(res);
}

/**
 * Ends a download so that nothing more of it leaves the server. A plain close would let the
 * kernel deliver the megabytes its send buffer holds, and end with a FIN: a whole artifact
 * smaller than the buffers would still arrive complete. A reset (TCP RST, SO_LINGER 0)
 * discards them; what the device's own kernel had already received stays with it. Over TLS
 * the socket is no plain TCP one and is closed instead (the device misses the TLS
 * close_notify and sees the transfer truncated).
 */
function endAbruptly(res: ServerResponse): void {
  cutOff.add(res);
  const socket = res.socket as Socket | null;
  try {
    if (socket && typeof socket.resetAndDestroy === 'function' && !('encrypted' in socket)) {
      socket.resetAndDestroy();
      return;
    }
  } catch {
    // not a TCP handle after all: closed below
  }
  res.destroy();
}
