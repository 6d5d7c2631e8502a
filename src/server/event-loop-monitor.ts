/**
 * How busy the server's one JavaScript thread is, for `GET /api/v1/metrics`. Everything the
 * server does for devices (the embedded broker, the replica, the store's statements, the
 * downloads) runs on that thread, so it is the first thing to saturate: when `utilization`
 * approaches 1 the server is at its limit, whatever the machine's CPU figure says, and
 * `delayMs` shows how long a device's message waited for the thread. `activeMs` and `idleMs`
 * only grow, so a scraper (or the benchmark) gets the utilization of any interval from two
 * readings: Δactive / (Δactive + Δidle). Delays cannot be taken apart that way (a maximum
 * since start hides today's stall behind last week's), so `lastMinute` gives the figures of
 * the last complete minute as well.
 */
import { monitorEventLoopDelay, performance, type EventLoopUtilization, type IntervalHistogram } from 'node:perf_hooks';

/** How late a timer fired: percentiles and maximum, ms. */
export interface LoopDelay {
  p50: number;
  p99: number;
  max: number;
}

/** The figures of `GET /api/v1/metrics` under `eventLoop`. */
export interface EventLoopFigures {
  /** Time the thread spent running code since the process started, ms (only grows). */
  activeMs: number;
  /** Time the thread waited for work since the process started, ms (only grows). */
  idleMs: number;
  /** activeMs / (activeMs + idleMs): 1 is a saturated server. */
  utilization: number;
  /**
   * How late a 10 ms timer fired since the server started, ms: how long work that became
   * ready waited for the thread (0 on an idle server).
   */
  delayMs: LoopDelay;
  /**
   * The same over the last complete window (a minute; until the first one ends, the time
   * since start): what a scraper polling every minute or so wants.
   */
  lastMinute: { seconds: number; utilization: number; delayMs: LoopDelay };
}

/** Resolution of the delay histogram, ms: finer costs wake-ups, coarser hides short stalls. */
const RESOLUTION_MS = 10;
/** Length of the `lastMinute` window. */
const WINDOW_MS = 60_000;

/** Samples the event loop while the server runs. */
export class EventLoopMonitor {
  /**
   * Delays since start, and of the window under way (reset at each window's end): two
   * samplers, since a delay histogram cannot be added to another.
   */
  private total: IntervalHistogram | undefined;
  private current: IntervalHistogram | undefined;
  private windowStart = { at: performance.now(), elu: performance.eventLoopUtilization() };
  private last: EventLoopFigures['lastMinute'] | undefined;
  private timer: NodeJS.Timeout | undefined;

  async start(): Promise<void> {
    this.total ??= monitorEventLoopDelay({ resolution: RESOLUTION_MS });
    this.current ??= monitorEventLoopDelay({ resolution: RESOLUTION_MS });
    this.total.enable();
    this.current.enable();
    this.windowStart = { at: performance.now(), elu: performance.eventLoopUtilization() };
    this.timer ??= setInterval(() => this.endWindow(), WINDOW_MS).unref();
  }

  async stop(): Promise<void> {
    this.total?.disable();
    this.current?.disable();
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Closes the window under way: its figures become `lastMinute` (the timer calls this). */
  endWindow(): void {
    const now = { at: performance.now(), elu: performance.eventLoopUtilization() };
    this.last = this.windowSoFar(now);
    this.current?.reset();
    this.windowStart = now;
  }

  /** The figures of the window under way, up to `now`. */
  private windowSoFar(now: { at: number; elu: EventLoopUtilization }): EventLoopFigures['lastMinute'] {
    return {
      seconds: round((now.at - this.windowStart.at) / 1000),
      utilization: utilization(performance.eventLoopUtilization(now.elu, this.windowStart.elu)),
      delayMs: delays(this.current),
    };
  }

  /** The figures now. */
  figures(): EventLoopFigures {
    const elu = performance.eventLoopUtilization();
    return {
      activeMs: round(elu.active),
      idleMs: round(elu.idle),
      utilization: utilization(elu),
      delayMs: delays(this.total),
      lastMinute: this.last ?? this.windowSoFar({ at: performance.now(), elu }),
    };
  }
}

/**
 * Lateness from a delay histogram: it records, in nanoseconds, the whole interval between two
 * firings of its timer (10 ms on an idle loop), so the lateness is what exceeds the resolution.
 */
function delays(h: IntervalHistogram | undefined): LoopDelay {
  if (!h || h.count === 0) return { p50: 0, p99: 0, max: 0 };
  const ms = (ns: number) => (Number.isFinite(ns) ? Math.max(0, round(ns / 1e6 - RESOLUTION_MS)) : 0);
  return { p50: ms(h.percentile(50)), p99: ms(h.percentile(99)), max: ms(h.max) };
}

function utilization(elu: EventLoopUtilization): number {
  return Math.round(elu.utilization * 1000) / 1000;
}

function round(x: number): number {
  return Math.round(x * 10) / 10;
}
