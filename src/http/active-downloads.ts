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
import { Socket } from 'node:net';
import type { EventBus } from '../events/event-bus.ts';
import type { Logger } from '../util/logger.ts';

/** What the tracker needs. */
export interface ActiveDownloadsDeps {
  /** Where `device.credentials` arrives, from this instance's registry and from the relay. */
  events: EventBus;
  /** Why the device may not download any more (`device revoked`, not registered), or undefined. */
  refusal: (deviceId: string) => Promise<string | undefined>;
  logger: Logger;
  /** A download cut after its response was written whole (the metrics' `downloads.cut`: the route counts those cut before). */
  cutAfterWritten?: () => void;
}

/**
 * How long a connection that carried a download is kept open, at most, once its last byte
 * was handed to the kernel, waiting for the device to close its side (`keepOpenUntilRead`).
 */
export const DRAIN_TIMEOUT_MS = 120_000;

/**
 * A download's response says `connection: close` (download-route.ts), and Node ends such a
 * connection with `destroySoon` once the body is handed to the kernel: a FIN after the last
 * byte, and the descriptor closed at once, while the kernels' send and receive buffers
 * (several megabytes) are still on their way to a slow device. A closed descriptor cannot be
 * reset: a whole build of a few megabytes reached a device revoked mid-download (QA, at
 * 100 KB/s). Here the connection's write side alone is ended (the same FIN after the last
 * byte), and the connection stays open until the device, having read everything, closes its
 * side (at once, for a client that reads `connection: close`), or `DRAIN_TIMEOUT_MS` pass:
 * a revocation meanwhile still resets it, and what the buffers held is dropped.
 */
function keepOpenUntilRead(socket: Socket): void {
  socket.destroySoon = function (this: Socket) {
    if (this.destroyed) return;
    if (this.writable) {
      this.end();
      this.end = endedAlready;
    }
    this.setTimeout(DRAIN_TIMEOUT_MS); // then Node's server destroys it (no 'timeout' listener answers)
  };
}

/**
 * `end()` of a connection whose write side this module ended: when the device closes its
 * side, Node's HTTP server ends the socket again (`socketOnEnd`), and a second `end()` builds
 * an `ERR_STREAM_ALREADY_FINISHED` with its stack only to drop it: 6 µs of the server's
 * thread per download (profiled, docs/benchmarks-history.md, thirty-third session). Without
 * a callback nothing is lost by not building it; with one, Node's own answers it.
 */
function endedAlready(this: Socket, ...args: unknown[]): Socket {
  if (args.some((a) => typeof a === 'function')) return Socket.prototype.end.apply(this, args as Parameters<Socket['end']>);
  return this;
}

/** A download's response and the connection it went out on (kept after the response ends). */
interface Download {
  res: ServerResponse;
  socket: Socket | null;
}

/** Downloads in progress by device; ends those of a device that may no longer download. */
export class ActiveDownloads {
  private readonly deps: ActiveDownloadsDeps;
  private readonly byDevice = new Map<string, Set<Download>>();
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

  /**
   * Tracks `res` as a download of `deviceId` until its connection closes, not only until the
   * response ends ('finish' is the last byte handed to the kernel, which may hold all of a
   * small build): a revocation meanwhile resets the connection, and what the kernels held
   * is dropped. Once the response is written, the connection is kept open until the device
   * has read it (`keepOpenUntilRead`).
   */
  add(deviceId: string, res: ServerResponse): void {
    const socket = (res.socket as Socket | null) ?? null;
    // gone already (the device left while the route looked the artifact up): nothing to cut,
    // and its 'close' came before this listener, so it would be kept for good
    if (socket?.destroyed) return;
    let mine = this.byDevice.get(deviceId);
    if (!mine) this.byDevice.set(deviceId, (mine = new Set()));
    // one download per connection: its response says connection: close
    const d = { res, socket };
    mine.add(d);
    const done = () => {
      mine.delete(d);
      if (mine.size === 0 && this.byDevice.get(deviceId) === mine) this.byDevice.delete(deviceId);
    };
    if (!socket) return void res.once('close', done);
    socket.once('close', done);
    keepOpenUntilRead(socket);
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
    const mine = this.byDevice.get(deviceId);
    if (!mine || mine.size === 0) return;
    const cut = [...mine];
    for (const d of cut) {
      if (d.res.writableFinished) this.deps.cutAfterWritten?.();
      endAbruptly(d);
    }
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
function endAbruptly(d: Download): void {
  const { res, socket } = d;
  cutOff.add(res);
  try {
    if (socket && typeof socket.resetAndDestroy === 'function' && !('encrypted' in socket)) {
      socket.resetAndDestroy();
      return;
    }
  } catch {
    // not a TCP handle after all: closed below
  }
  // a response already ended is detached from its connection: close the connection itself
  if (socket) socket.destroy();
  else res.destroy();
}
