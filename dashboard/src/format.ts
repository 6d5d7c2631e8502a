/** Formatting helpers: sizes, times, counts. */
import type { Execution } from './types.ts';

/** 1536 -> "1.5 KiB". */
export function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

/** `value` of `max` as a percentage to one decimal (0 when `max` is 0): the progress bars' and their words' one rounding. */
export function percent(value: number, max: number): number {
  return max === 0 ? 0 : Math.round((value / max) * 1000) / 10;
}

/** The dashboard's page of a job (the server names jobs with UUIDs; encoded all the same, as every id put in a path). */
export function jobHref(jobId: string): string {
  return `/jobs/${encodeURIComponent(jobId)}`;
}

/** The dashboard's page of a device (its id encoded: ids may hold '.', ':' and more). */
export function deviceHref(deviceId: string): string {
  return `/devices/${encodeURIComponent(deviceId)}`;
}

/** Local date and time, to the second. */
export function dateTime(ms: number): string {
  return new Date(ms).toLocaleString(undefined, { year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

/** Local time of day. */
export function time(ms: number): string {
  return new Date(ms).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

/** 12345 -> "12,345". */
export function count(n: number): string {
  return n.toLocaleString('en-US');
}

/** The first 8 characters of a job id, enough to tell jobs apart on screen. */
export function shortId(id: string): string {
  return id.length > 8 ? id.slice(0, 8) : id;
}

const DAY_MS = 86_400_000;

/**
 * How the signing key certificate's expiry (seconds since the epoch) reads at `now`, and
 * whether it needs the operator: `bad` once expired (devices that trust the root refuse
 * every update), `warn` in its last 30 days (the server warns from then too).
 */
export function certificateExpiry(expiresAtSeconds: number, now = Date.now()): { text: string; tone: 'good' | 'warn' | 'bad' } {
  const left = expiresAtSeconds * 1000 - now;
  const when = dateTime(expiresAtSeconds * 1000);
  if (left <= 0) return { text: `expired ${when}: devices that trust the root refuse every update until a new certificate is installed`, tone: 'bad' };
  const days = Math.floor(left / DAY_MS);
  if (days < 30) return { text: `expires ${when}, in ${days} day${days === 1 ? '' : 's'}: certify the key again and install the certificate`, tone: 'warn' };
  return { text: `expires ${when}, in ${days} days`, tone: 'good' };
}

/**
 * How a CA's or a server certificate's expiry (seconds since the epoch) reads at `now`, with the
 * whole days left: `bad` once expired, `warn` in its last 30 days.
 */
export function tlsExpiry(expiresAtSeconds: number, now = Date.now()): { text: string; tone: 'good' | 'warn' | 'bad' } {
  const ms = expiresAtSeconds * 1000;
  if (ms <= now) return { text: `expired ${dateTime(ms)}`, tone: 'bad' };
  const days = Math.floor((ms - now) / DAY_MS);
  return { text: `expires ${dateTime(ms)}, in ${days} day${days === 1 ? '' : 's'}`, tone: days < 30 ? 'warn' : 'good' };
}

/**
 * How a device's client certificate expiry (`reported.agent.certificateExpiresAt`, seconds since
 * the epoch, as its agent reports it) reads at `now`, with the whole days left: `bad` once expired (the broker refuses it),
 * `warn` in its last 14 days, and `warn` too for a number that is no date (past what a Date holds,
 * ±8.64e15 ms): a device's report, said as it came rather than "valid until Invalid Date" in green.
 */
export function clientCertificateExpiry(expiresAtSeconds: number, now = Date.now()): { text: string; tone: 'good' | 'warn' | 'bad' } {
  const ms = expiresAtSeconds * 1000;
  if (Number.isNaN(new Date(ms).getTime())) return { text: `client certificate expiry reported as ${expiresAtSeconds}: not a valid date`, tone: 'warn' };
  if (ms <= now) return { text: `client certificate expired ${dateTime(ms)}: the broker refuses it`, tone: 'bad' };
  // whole days left, rounded down: "0 days left" in its last day
  const days = Math.floor((ms - now) / DAY_MS);
  return { text: `client certificate valid until ${dateTime(ms)}, ${days} day${days === 1 ? '' : 's'} left`, tone: days < 14 ? 'warn' : 'good' };
}

/** A span of time in its largest whole unit that reads well: "500 ms", "10 s", "5 min", "2 h", "1 d". */
export function span(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${+(ms / 1000).toFixed(1)} s`;
  if (ms < 3_600_000) return `${+(ms / 60_000).toFixed(1)} min`;
  if (ms < 86_400_000) return `${+(ms / 3_600_000).toFixed(1)} h`;
  return `${+(ms / 86_400_000).toFixed(1)} d`;
}

/**
 * What the job page says of a job the engine holds back while the artifact storage does not
 * answer, or (heldBy 'mqtt') the MQTT broker cannot be reached (progress.storageHeldSince,
 * jobs/rollout-engine.ts), or undefined: it looks IN_PROGRESS with nothing moving otherwise.
 */
export function storageHeldNotice(status: string, storageHeldSince: number | undefined, heldBy?: string): string | undefined {
  if (status !== 'IN_PROGRESS' || storageHeldSince === undefined) return undefined;
  if (heldBy === 'mqtt') return `Held: the MQTT broker has not been reachable since ${dateTime(storageHeldSince)}; nothing new is sent until it is (devices already updating go on).`;
  return `Held: the artifact storage has not answered since ${dateTime(storageHeldSince)}; nothing new is sent until it does (devices already updating go on).`;
}

/**
 * What the device page says of a SUCCEEDED execution that ended in place of its retry
 * (jobs/retry-policy.ts), or undefined: its attempt timed out before its success came in
 * (`details.timedOut`), or its retry was not sent, the device having reported an earlier
 * attempt's success (`details.retryNotSent`). Without it such an execution read as a plain success.
 */
export function succeededNote(e: Pick<Execution, 'status' | 'details'>): string | undefined {
  if (e.status !== 'SUCCEEDED') return undefined;
  const t = e.details.timedOut;
  if (t) return `Timed out${typeof t.at === 'number' ? ` at ${dateTime(t.at)}` : ''}${t.error ? ` (${t.error})` : ''}, then its success came in: no retry`;
  const u = e.details.retryNotSent;
  if (u) return `Retry not sent (${dateTime(u.at)}): the device had reported attempt ${u.attempt}'s success`;
  return undefined;
}
