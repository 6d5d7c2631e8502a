/**
 * Maintenance windows of a rollout (`plan.windows`): the daily times, in one time zone (or in
 * each device's own: `DEVICE_TIME_ZONE`), when
 * its update commands may be sent, so that devices in the field install (and restart) at
 * night, or on weekends, and not in their busiest hours. Outside every window a job sends
 * nothing new; what was sent goes on to its outcome (a download or an install is not cut in
 * the middle), as AWS IoT Jobs' maintenance windows do.
 *
 * A window is `{ start: "HH:MM", minutes, days? }`: it opens at `start` on each of `days`
 * (all days when absent) and stays open `minutes` (1 to 1440), possibly past midnight; a
 * window opened on Saturday at 23:00 for 180 minutes is open on Sunday at 01:00. Times are
 * wall-clock times in the job's `timeZone` (an IANA name, default UTC), daylight saving
 * included.
 */

/**
 * `plan.timeZone` of a job whose windows are each device's local time: the engine sends at
 * any time, and the agent holds the install until a window is open where it is
 * (`SoftwareCommand.installWindows`).
 */
export const DEVICE_TIME_ZONE = 'device';

/** Days as written in a window, Sunday first (as `Date.getUTCDay`). */
export const WEEKDAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const;
export type Weekday = (typeof WEEKDAYS)[number];

/** One daily window. */
export interface MaintenanceWindow {
  /** Opening time of day, "HH:MM" (24 h). */
  start: string;
  /** How long it stays open, 1 to 1440 minutes. */
  minutes: number;
  /** The days it opens on; absent: every day. */
  days?: Weekday[];
}

const HH_MM = /^([01]\d|2[0-3]):([0-5]\d)$/;
const MINUTE_MS = 60_000;

/** Problems of `value` as a list of windows (empty when it is one), each naming its field. */
export function windowProblems(value: unknown, where = 'plan.windows'): string[] {
  if (!Array.isArray(value) || value.length === 0 || value.length > 20) return [`${where} must be an array of 1 to 20 windows {start: "HH:MM", minutes, days?}`];
  const problems: string[] = [];
  value.forEach((w: unknown, i) => {
    const at = `${where}[${i}]`;
    if (typeof w !== 'object' || w === null || Array.isArray(w)) return void problems.push(`${at} must be an object {start: "HH:MM", minutes, days?}`);
    const o = w as Record<string, unknown>;
    for (const k of Object.keys(o)) if (!['start', 'minutes', 'days'].includes(k)) problems.push(`unknown field "${at}.${k}" (start, minutes, days)`);
    if (typeof o.start !== 'string' || !HH_MM.test(o.start)) problems.push(`${at}.start must be a time of day "HH:MM" (00:00 to 23:59)`);
    if (typeof o.minutes !== 'number' || !Number.isSafeInteger(o.minutes) || o.minutes < 1 || o.minutes > 1440) problems.push(`${at}.minutes must be a whole number from 1 to 1440`);
    if (o.days !== undefined && (!Array.isArray(o.days) || o.days.length === 0 || o.days.some((d) => !(WEEKDAYS as readonly unknown[]).includes(d)))) {
      problems.push(`${at}.days must be a non-empty list of ${WEEKDAYS.join(', ')}`);
    }
  });
  return problems;
}

/** Time zones found good: a formatter costs tens of µs, and a simulated fleet asks at every agent start. */
const knownZones = new Set<string>();

/** True when `timeZone` is an IANA time zone this runtime knows. */
export function isTimeZone(timeZone: string): boolean {
  if (knownZones.has(timeZone)) return true;
  try {
    new Intl.DateTimeFormat('en-US', { timeZone });
  } catch {
    return false;
  }
  if (knownZones.size < 1000) knownZones.add(timeZone);
  return true;
}

let systemZone: string | undefined;

/** This machine's IANA time zone (UTC when the runtime does not say), read once. */
export function systemTimeZone(): string {
  systemZone ??= Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
  return systemZone;
}

const formats = new Map<string, Intl.DateTimeFormat>();

/** The wall-clock weekday (0 = Sunday) and minute of the day of `ms` in `timeZone`. */
function wallClock(ms: number, timeZone: string): { day: number; minute: number } {
  let f = formats.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', { timeZone, hourCycle: 'h23', weekday: 'short', hour: '2-digit', minute: '2-digit' });
    formats.set(timeZone, f);
  }
  let day = 0;
  let hour = 0;
  let minute = 0;
  for (const p of f.formatToParts(ms)) {
    if (p.type === 'weekday') day = WEEKDAYS.indexOf(p.value.toLowerCase().slice(0, 3) as Weekday);
    else if (p.type === 'hour') hour = Number(p.value);
    else if (p.type === 'minute') minute = Number(p.value);
  }
  return { day, minute: hour * 60 + minute };
}

function startMinute(w: MaintenanceWindow): number {
  const [h, m] = w.start.split(':').map(Number) as [number, number];
  return h * 60 + m;
}

/** `ms` as a wall-clock weekday and time in `timeZone`, as windows are written: "sat 02:00". */
export function wallTime(ms: number, timeZone: string): string {
  const { day, minute } = wallClock(ms, timeZone);
  return `${WEEKDAYS[day]} ${String(Math.floor(minute / 60)).padStart(2, '0')}:${String(minute % 60).padStart(2, '0')}`;
}

/** True when `ms` falls in one of `windows` (wall-clock time in `timeZone`). */
export function inWindow(windows: readonly MaintenanceWindow[], ms: number, timeZone = 'UTC'): boolean {
  const { day, minute } = wallClock(ms, timeZone);
  return windows.some((w) => {
    const start = startMinute(w);
    // minutes since the window's latest opening time: today's, or yesterday's when that is later
    const since = (minute - start + 1440) % 1440;
    const openedOn = minute >= start ? day : (day + 6) % 7;
    return since < w.minutes && (w.days === undefined || w.days.includes(WEEKDAYS[openedOn]!));
  });
}

/**
 * When the next window opens after `ms` (milliseconds since the epoch, to the minute), or
 * undefined when none does within 8 days (windows are weekly at most). It steps towards the
 * next opening time by the wall clock, at most 30 minutes at a time, so that a change of the
 * zone's offset on the way (daylight saving) cannot make it step past an opening.
 */
export function nextOpening(windows: readonly MaintenanceWindow[], ms: number, timeZone = 'UTC'): number | undefined {
  const base = Math.floor(ms / MINUTE_MS) * MINUTE_MS;
  const limit = base + 8 * 1440 * MINUTE_MS;
  let previous = base;
  for (let t = base + MINUTE_MS; t <= limit; ) {
    if (inWindow(windows, t, timeZone)) {
      // the first open minute after the last closed one looked at (a jump of the offset can
      // have carried the step past the opening)
      for (let u = previous + MINUTE_MS; u < t; u += MINUTE_MS) if (inWindow(windows, u, timeZone)) return u;
      return t;
    }
    const { minute } = wallClock(t, timeZone);
    let step = 30;
    for (const w of windows) step = Math.min(step, (startMinute(w) - minute + 1440) % 1440 || 1440);
    previous = t;
    t += step * MINUTE_MS;
  }
  return undefined;
}
