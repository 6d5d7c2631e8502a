/**
 * The clock by which the agent measures durations (report pacing, progress pacing, waits):
 * monotonic, so that a step of the device's wall clock (an RTC kept in local time and then
 * corrected by NTP, a clock set by hand) neither holds nor hurries them. What is judged by
 * the time of day (expiries, maintenance windows, the clock offset) stays on the wall clock.
 */

/** A monotonic clock in milliseconds from an arbitrary origin. */
export interface MonotonicClock {
  now(): number;
}

/** `performance.now()`: steps of the wall clock leave it alone. */
export const MONOTONIC_CLOCK: MonotonicClock = { now: () => performance.now() };
