/**
 * How busy the server's one JavaScript thread is, for `GET /api/v1/metrics`. Everything the
 * server does for devices (the embedded broker, the replica, the store's statements, the
 * downloads) runs on that thread, so it is the first thing to saturate: when `utilization`
 * approaches 1 the server is at its limit, whatever the machine's CPU figure says, and
 * `delayMs` shows how long a device's message waited for the thread. `activeMs` and `idleMs`
 * only grow, so a scraper (or the benchmark) gets the utilization of any interval from two
 * readings: Δactive / (Δactive + Δidle).
 */
import { monitorEventLoopDelay, performance, type IntervalHistogram } from 'node:perf_hooks';

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
  delayMs: { p50: number; p99: number; max: number };
}

/** Resolution of the delay histogram, ms: finer costs wake-ups, coarser hides short stalls. */
const RESOLUTION_MS = 10;

/** Samples the event loop while the server runs. */
export class EventLoopMonitor {
  private histogram: IntervalHistogram | undefined;

  async start(): Promise<void> {
    this.histogram ??= monitorEventLoopDelay({ resolution: RESOLUTION_MS });
    this.histogram.enable();
  }

  async stop(): Promise<void> {
    this.histogram?.disable();
  }

  /** The figures now. */
  figures(): EventLoopFigures {
    const elu = performance.eventLoopUtilization();
    const h = this.histogram;
    // the histogram records, in nanoseconds, the whole interval between two firings of its
    // timer (10 ms on an idle loop): the lateness is what exceeds the resolution
    const ms = (ns: number | undefined) => (h && h.count > 0 && ns !== undefined && Number.isFinite(ns) ? Math.max(0, round(ns / 1e6 - RESOLUTION_MS)) : 0);
    return {
      activeMs: round(elu.active),
      idleMs: round(elu.idle),
      utilization: Math.round(elu.utilization * 1000) / 1000,
      delayMs: { p50: ms(h?.percentile(50)), p99: ms(h?.percentile(99)), max: ms(h?.max) },
    };
  }
}

function round(x: number): number {
  return Math.round(x * 10) / 10;
}
