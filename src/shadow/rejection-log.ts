/**
 * Lines for the shadow requests a device gets refused with a 4xx. They were only counted
 * (`shadow.rejections` of the metrics, by code), so a rise of 400s said a device build
 * sends malformed reports but not which devices, and a device attempting an operator-only
 * write (a 403) left no trace, even at `--log-level debug`.
 *
 * A device in a loop must not flood the log: per device and code, the first rejection is
 * written at once; the others are counted, and their count is written once per window (a
 * minute) for as long as they go on. The state is a map of the devices and codes written
 * in the current window, emptied at its end but for those still counting, and bounded per
 * level (`maxKeys` each): past it, a window's rejections of further devices are counted per
 * code and written as one line when the window ends. Per level, so that routine codes (a
 * 429 reaches every device at once when the instance is overloaded) cannot take the room of
 * a 403; and a code whose level the logger drops is not kept at all (neither its line nor
 * its count would be written). Never the payload: it may hold anything; the message is the
 * one the device is answered with, cut to MESSAGE_CHARS.
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

/** A device and code written in this window: its last rejection, and how many since were not written. */
interface Entry {
  last: Rejected;
  suppressed: number;
}

/** Writes 4xx rejections once per device, code and window, with the count of the others. */
export class RejectionLog {
  private readonly logger: Logger;
  private readonly windowMs: number;
  private readonly maxKeys: number;
  /** Devices and codes written in this window, by code, then device. */
  private entries = new Map<number, Map<string, Entry>>();
  /** How many entries each level holds (each has room for `maxKeys`). */
  private held = new Map<Level, number>();
  /** Rejections of devices beyond their level's `maxKeys` in this window, per code. */
  private overflow = new Map<number, number>();
  /** Ends the window; set while there is something to write or remember. */
  private timer: NodeJS.Timeout | undefined;

  constructor(logger: Logger, options: { windowMs?: number; maxKeys?: number } = {}) {
    this.logger = logger;
    this.windowMs = options.windowMs ?? 60_000;
    this.maxKeys = options.maxKeys ?? 1_000;
  }

  /** A request rejected with a 4xx: written, or counted (or nothing, when its level is not logged). */
  rejected(r: Rejected): void {
    const level = rejectionLevel(r.code);
    if (!this.logger.enabled(level)) return;
    let devices = this.entries.get(r.code);
    const entry = devices?.get(r.deviceId);
    if (entry) {
      entry.last = r;
      entry.suppressed++;
    } else if ((this.held.get(level) ?? 0) >= this.maxKeys) {
      this.overflow.set(r.code, (this.overflow.get(r.code) ?? 0) + 1);
    } else {
      this.logger[level]('shadow request rejected', fieldsOf(r));
      if (!devices) this.entries.set(r.code, (devices = new Map()));
      devices.set(r.deviceId, { last: r, suppressed: 0 });
      this.held.set(level, (this.held.get(level) ?? 0) + 1);
    }
    this.timer ??= setTimeout(() => this.endWindow(), this.windowMs).unref(); // never holds a process open
  }

  /** Writes what the window left out (the part stops). */
  close(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.writeCounts();
    this.entries.clear();
    this.held.clear();
  }

  /**
   * The window is over: the counts are written, and the devices and codes that had some stay
   * (their next rejection is counted, so a device in a loop is one line a minute); the others
   * are forgotten (their next rejection is written at once).
   */
  private endWindow(): void {
    this.timer = undefined;
    this.writeCounts();
    if (this.entries.size > 0) this.timer = setTimeout(() => this.endWindow(), this.windowMs).unref();
  }

  /** Writes the counts of the window, and keeps only the entries that had some, reset. */
  private writeCounts(): void {
    const counted = new Map<number, Map<string, Entry>>();
    this.held.clear();
    for (const [code, devices] of this.entries) {
      const level = rejectionLevel(code);
      const kept = new Map<string, Entry>();
      for (const [deviceId, e] of devices) {
        if (e.suppressed === 0) continue;
        this.logger[level]('shadow request rejected', { ...fieldsOf(e.last), suppressed: e.suppressed });
        kept.set(deviceId, { last: e.last, suppressed: 0 });
      }
      if (kept.size === 0) continue;
      counted.set(code, kept);
      this.held.set(level, (this.held.get(level) ?? 0) + kept.size);
    }
    for (const [code, rejections] of this.overflow) {
      this.logger[rejectionLevel(code)]('shadow requests rejected of devices not named (the log names at most this many devices a minute per level)', { code, rejections, devices: this.maxKeys });
    }
    this.overflow.clear();
    this.entries = counted;
  }
}

/** The fields of a rejection's line (made only for a line written). */
function fieldsOf(r: Rejected): Record<string, unknown> {
  return { deviceId: r.deviceId, shadow: cut(r.shadow, SHADOW_CHARS), op: r.op, code: r.code, error: cut(r.message, MESSAGE_CHARS) };
}

function cut(text: string, chars: number): string {
  return text.length > chars ? `${text.slice(0, chars)}…` : text;
}
