/**
 * `updraft doctor`: one command that says whether a running Updraft is fit to update a fleet,
 * and what to do where it is not. Each line is a check, `ok`, `note`, `warn` or `FAIL`; the
 * command exits 1 when one fails (a script or a cron job can act on it), 0 otherwise.
 *
 * It asks only what the API and the health endpoints answer (the fleet-level checks are
 * health/findings.ts, which the dashboard's GET /api/v1/health/findings runs on the server too): reachability, readiness (store,
 * artifact storage, broker), the operator token, the clocks (manifests and URLs expire by
 * them), the signing key's certificate, the CA's and TLS certificates' expiry, staged URL keys, how busy the instance is, refused
 * tokens, failing webhook deliveries, artifact storage not shared by instances on one PostgreSQL
 * and builds whose bytes are missing from it, devices that accept unsigned software, devices whose
 * clocks are wrong, devices still on a CA rollover's previous CA, and rollouts waiting for an operator.
 */
import type { Command } from 'commander';
import type { InstanceMetrics } from '../http/metrics.ts';
import type { JobRecord } from '../store/state-store.ts';
import { deviceChecks, keyFindings, metricFindings, rolloutFindings, type DeviceCheck, type Finding, type KeyFacts, type NamedDevice, type Selected, type Verdict } from '../health/findings.ts';
import { ApiClient, serverUrl, whyUnreachable, type ApiOptions } from './api-client.ts';
import { dataDirOption } from './data-dir-option.ts';

export type { Finding } from '../health/findings.ts';

/** A named token unused this long is named by doctor. */
const UNUSED_TOKEN_DAYS = 90;

const DAY_MS = 86_400_000;

/** Runs every check against the server of `opts`; never throws for what the server answers. */
export async function diagnose(opts: ApiOptions, now = Date.now()): Promise<Finding[]> {
  const out: Finding[] = [];
  const add = (verdict: Verdict, check: string, text: string) => void out.push({ verdict, check, text });
  // a --server that is no http(s) URL is refused as by every command (exit 2), not a FAIL
  // 'no answer from notaurl: Invalid URL' with exit 1 (config QA)
  const base = serverUrl(opts.server);

  let alive: Response;
  try {
    alive = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(5000) });
  } catch (err) {
    add('FAIL', 'reachable', `no answer from ${base}: ${whyUnreachable(err)}`);
    return out;
  }
  await alive.body?.cancel();
  add(alive.ok ? 'ok' : 'FAIL', 'reachable', `${base} answers (HTTP ${alive.status})`);
  // the server's clock, from the Date header: manifests, URLs and tokens expire by it
  const serverDate = Date.parse(alive.headers.get('date') ?? '');
  if (Number.isFinite(serverDate)) {
    const skew = Math.round((serverDate - now) / 1000);
    if (Math.abs(skew) > 30) add('warn', 'clock', `the server's clock is ${Math.abs(skew)} s ${skew > 0 ? 'ahead of' : 'behind'} this machine's: update commands and URLs expire by the server's clock, so a device whose clock differs as much refuses or outlives them; run NTP everywhere`);
    else add('ok', 'clock', `the server's clock agrees with this machine's (${skew} s)`);
  }

  const ready = await fetch(`${base}/readyz`).catch(() => undefined);
  if (ready) {
    const body = (await ready.json().catch(() => ({}))) as { checks?: Record<string, string> };
    const failing = Object.entries(body.checks ?? {}).filter(([, v]) => v !== 'ok');
    if (ready.ok) add('ok', 'ready', `store, artifact storage and broker answer`);
    else add('FAIL', 'ready', `not ready: ${failing.map(([k, v]) => `${k} ${v}`).join(', ') || `HTTP ${ready.status}`}; the server's log says why`);
  }

  let api: ApiClient;
  try {
    // a diagnosis says what is now: waiting up to 30 s at each of its dozen reads for a server
    // that cannot answer (a database down) took minutes to say so
    api = new ApiClient({ ...opts, server: base, retryForMs: 0 });
  } catch (err) {
    add('FAIL', 'token', (err as Error).message);
    return out;
  }
  let keys: KeyFacts;
  try {
    keys = await api.call('GET', '/api/v1/keys');
  } catch (err) {
    // only a 401 or 403 is about the token: a 503 (its database down) is not a token refused
    const status = (err as { status?: number }).status;
    if (status === 401 || status === 403) add('FAIL', 'token', `the API refused the operator token: ${(err as Error).message}`);
    else add('FAIL', 'api', `the API cannot answer: ${(err as Error).message}`);
    return out;
  }
  // a viewer token reads everything above, but not the token lists: say what it is, and what is skipped
  const viewer = await api.call<{ role: string }>('GET', '/api/v1/whoami').then(
    (who) => who.role === 'viewer',
    () => false,
  );
  if (viewer) add('note', 'token', 'a read-only viewer token is accepted: the checks of named tokens need the operator token, and are skipped');
  else add('ok', 'token', 'the operator token is accepted');

  for (const f of keyFindings(keys, now)) out.push(f);

  const m = await api.call<InstanceMetrics>('GET', '/api/v1/metrics').catch(() => undefined);
  if (m) out.push(...metricFindings(m, now));

  // the devices fleet queries select (health/findings.ts), one query at a time; a query that
  // failed says nothing, unless its check says otherwise
  for (const check of deviceChecks(keys, m?.tls, now)) {
    const found = await selected(api, check).then(
      (s) => check.finding(s),
      (err: Error) => check.failed?.(err),
    );
    if (found) out.push(found);
  }

  // named tokens nobody has used for 90 days (or ever, 90 days after they were added): a
  // forgotten token is a door left open; the operator's token lists say when each was used
  for (const role of viewer ? [] : (['operator', 'viewer'] as const)) {
    const tokens = await api.call<{ items: { name: string; createdAt: number; lastUsedAt?: number; expiresAt?: number }[] }>('GET', `/api/v1/${role}-tokens`).catch(() => undefined);
    const idle = (tokens?.items ?? []).filter((t) => (t.expiresAt === undefined || t.expiresAt > now) && now - (t.lastUsedAt ?? t.createdAt) > UNUSED_TOKEN_DAYS * DAY_MS);
    if (idle.length > 0) {
      const names = idle.slice(0, 5).map((t) => `${t.name} (${t.lastUsedAt === undefined ? 'never used' : `last used ${Math.floor((now - t.lastUsedAt) / DAY_MS)} days ago`})`);
      add('note', 'tokens', `${role} token(s) unused for ${UNUSED_TOKEN_DAYS} days: ${names.join(', ')}${idle.length > 5 ? ', …' : ''}; remove what no one uses (updraft token ${role} remove <name>)`);
    }
  }

  const paused = await api.call<{ items: JobRecord[] }>('GET', '/api/v1/jobs?status=PAUSED&limit=100').catch(() => undefined);
  out.push(...rolloutFindings(paused?.items ?? []));
  return out;
}

/** A fleet device as GET /api/v1/fleet/devices answers it, with what a check names. */
interface FleetDevice {
  deviceId: string;
  revoked?: boolean;
  agent?: { certificateRenewalError?: string | null } | null;
}

function namedDevice(d: FleetDevice): NamedDevice {
  const error = d.agent?.certificateRenewalError;
  return { deviceId: d.deviceId, ...(d.revoked === true ? { revoked: true } : {}), ...(typeof error === 'string' ? { renewalError: error } : {}) };
}

/** What `check`'s query selects: the whole fleet counted when the check needs the count, else its first devices. */
async function selected(api: ApiClient, check: DeviceCheck): Promise<Selected> {
  if (check.counted) {
    const found = await countMatches<FleetDevice>(api, check.query, (d) => check.apartRevoked === true && d.revoked === true);
    return { first: found.first.map(namedDevice), more: found.count > found.first.length, count: found.count, set: found.set, firstSet: found.firstSet.map(namedDevice) };
  }
  const page = await firstMatches<FleetDevice>(api, check.query);
  return { first: page.items.map(namedDevice), more: page.next !== undefined, set: 0, firstSet: [] };
}

/**
 * How many devices a fleet query selects, and the first 5: the whole fleet read, a page
 * (at most 10,000 devices read) at a time. Those `apart` holds for are counted apart (`set`,
 * `firstSet`), not in `count` and `first`.
 */
async function countMatches<T>(api: ApiClient, query: string, apart: (item: T) => boolean = () => false): Promise<{ count: number; first: T[]; set: number; firstSet: T[] }> {
  let after: string | undefined;
  const r = { count: 0, first: [] as T[], set: 0, firstSet: [] as T[] };
  for (;;) {
    const q = new URLSearchParams({ limit: '1000', query, ...(after !== undefined ? { after } : {}) });
    const page = await api.call<{ items: T[]; next?: string }>('GET', `/api/v1/fleet/devices?${q}`);
    for (const item of page.items) {
      const aside = apart(item);
      if (aside) r.set++;
      else r.count++;
      const first = aside ? r.firstSet : r.first;
      if (first.length < 5) first.push(item);
    }
    if (page.next === undefined) return r;
    after = page.next;
  }
}

/**
 * The first devices (up to 5) a fleet query selects. One answer reads at most 10,000 devices
 * and may come empty with `next` on a larger fleet: ask on from there until one is found or
 * the fleet is read (each request stays short; the whole fleet may be read, a part at a time).
 */
async function firstMatches<T>(api: ApiClient, query: string): Promise<{ items: T[]; next?: string }> {
  let after: string | undefined;
  for (;;) {
    const q = new URLSearchParams({ limit: '5', query, ...(after !== undefined ? { after } : {}) });
    const page = await api.call<{ items: T[]; next?: string }>('GET', `/api/v1/fleet/devices?${q}`);
    if (page.items.length > 0 || page.next === undefined) return page;
    after = page.next;
  }
}

/** Adds `doctor`. */
export function addDoctorCommand(program: Command): void {
  program
    .command('doctor')
    .description('check a running Updraft: reachable, ready, token, clocks, signing key, CA and TLS certificates, load, webhooks, artifact storage, devices that accept unsigned software, run with a wrong clock or are still on a previous CA, rollouts waiting; exits 1 if a check fails')
    .option('--server <url>', 'Updraft server URL [env UPDRAFT_SERVER, default http://127.0.0.1:8080]')
    .option('--token <token>', 'operator token [env UPDRAFT_TOKEN, default: read from <data-dir>/operator-token]')
    .addOption(dataDirOption('the server data directory holding the operator token'))
    .option('--json', 'print JSON')
    .action(async (opts: ApiOptions & { json?: boolean }) => {
      const findings = await diagnose(opts);
      if (opts.json) process.stdout.write(JSON.stringify(findings, null, 2) + '\n');
      else process.stdout.write(findings.map((f) => `${f.verdict.padEnd(4)}  ${f.check.padEnd(11)}  ${f.text}`).join('\n') + '\n');
      if (findings.some((f) => f.verdict === 'FAIL')) process.exitCode = 1;
    });
}
