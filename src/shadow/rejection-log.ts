/**
 * Lines for the shadow requests a device gets refused with a 4xx. They were only counted
 * (`shadow.rejections` of the metrics, by code), so a rise of 400s said a device build
 * sends malformed reports but not which devices, and a device attempting an operator-only
 * write (a 403) left no trace, even at `--log-level debug`.
 *
 * A device in a loop must not flood the log: per device and code, the first rejection is
 * written at once; the others are counted, and their count is written once per window (a
 * minute) for as long as they go on. The state is one map of the devices and codes written
 * in the current window, emptied at its end but for those still counting, and bounded
 * (`maxKeys`): past it, a window's rejections of further devices are counted per code and
 * written as one line when the window ends. Never the payload: it may hold anything; the
 * message is the one the device is answered with, cut to MESSAGE_CHARS.
 */
import type { Logger } from '../util/logger.ts';

/** One rejected request, as the replica answered it. */
export interface Rejected {
  deviceId: string;
  /** The shadow's name ('' for the classic shadow). */
  shadow: string;
  op: string;
  /** The HTTP-style code of the answer (4xx). */
  code: number;
  /** The message of the answer. */
  message: string;
}

type Level = 'debug' | 'info' | 'warn';

/** Longest message written (a message can name keys the device sent). */
const MESSAGE_CHARS = 200;
/** Longest shadow name written (an invalid one, refused with 400, can be long). */
const SHADOW_CHARS = 64;

/**
 * The level of a code: 403 is a device trying what only operators may (a security event);
 * 400 and 413 a device sending what it must not (a faulty build); 404 (a get before the
 * first report), 409 (a version conflict: normal concurrency) and 429 (the server's load,
 * not the device's doing) are routine.
 */
export function rejectionLevel(code: number): Level {
  if (code === 403) return 'warn';
  if (code === 400 || code === 413) return 'info';
  return 'debug';
}

/** Writes 4xx rejections once per device, code and window, with the count of the others. */
export class RejectionLog {
  private readonly logger: Logger;
  private readonly windowMs: number;
  private readonly maxKeys: number;
  /** Device and code written in this window: the last rejection's fields, and how many since were not written. */
  private entries = new Map<string, { fields: Record<string, unknown>; suppressed: number }>();
  /** Rejections of devices beyond `maxKeys` in this window, per code. */
  private overflow = new Map<number, number>();
  /** Ends the window; set while there is something to write or remember. */
  private timer: NodeJS.Timeout | undefined;

  constructor(logger: Logger, options: { windowMs?: number; maxKeys?: number } = {}) {
    this.logger = logger;
    this.windowMs = options.windowMs ?? 60_000;
    this.maxKeys = options.maxKeys ?? 1_000;
  }

  /** A request rejected with a 4xx: written, or counted. */
  rejected(r: Rejected): void {
    const key = `${r.code} ${r.deviceId}`;
    const fields = { deviceId: r.deviceId, shadow: cut(r.shadow, SHADOW_CHARS), op: r.op, code: r.code, error: cut(r.message, MESSAGE_CHARS) };
    const entry = this.entries.get(key);
    if (entry) {
      entry.fields = fields;
      entry.suppressed++;
    } else if (this.entries.size >= this.maxKeys) {
      this.overflow.set(r.code, (this.overflow.get(r.code) ?? 0) + 1);
    } else {
      this.logger[rejectionLevel(r.code)]('shadow request rejected', fields);
      this.entries.set(key, { fields, suppressed: 0 });
    }
    this.timer ??= setTimeout(() => this.endWindow(), this.windowMs).unref(); // never holds a process open
  }

  /** Writes what the window left out (the part stops). */
  close(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.writeCounts();
    this.entries.clear();
  }

  /**
   * The window is over: the counts are written, and the devices and codes that had some stay
   * (their next rejection is counted, so a device in a loop is one line a minute); the others
   * are forgotten (their next rejection is written at once).
   */
  private endWindow(): void {
    this.timer = undefined;
    const counted = this.writeCounts();
    this.entries = counted;
    if (counted.size > 0) this.timer = setTimeout(() => this.endWindow(), this.windowMs).unref();
  }

  /** Writes the counts of the window; returns the entries that had some, reset. */
  private writeCounts(): Map<string, { fields: Record<string, unknown>; suppressed: number }> {
    const counted = new Map<string, { fields: Record<string, unknown>; suppressed: number }>();
    for (const [key, e] of this.entries) {
      if (e.suppressed === 0) continue;
      this.logger[rejectionLevel(e.fields.code as number)]('shadow request rejected', { ...e.fields, suppressed: e.suppressed });
      counted.set(key, { fields: e.fields, suppressed: 0 });
    }
    for (const [code, rejections] of this.overflow) {
      this.logger[rejectionLevel(code)]('shadow requests rejected of devices not named (the log names at most this many devices a minute)', { code, rejections, devices: this.maxKeys });
    }
    this.overflow.clear();
    return counted;
  }
}

function cut(text: string, chars: number): string {
  return text.length > chars ? `${text.slice(0, chars)}…` : text;
}
