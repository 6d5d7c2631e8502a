/**
 * `updraft doctor`: one command that says whether a running Updraft is fit to update a fleet,
 * and what to do where it is not. Each line is a check, `ok`, `note`, `warn` or `FAIL`; the
 * command exits 1 when one fails (a script or a cron job can act on it), 0 otherwise.
 *
 * It asks only what the API and the health endpoints answer: reachability, readiness (store,
 * artifact storage, broker), the operator token, the clocks (manifests and URLs expire by
 * them), the signing key's certificate, the CA's and TLS certificates' expiry, staged URL keys, how busy the instance is, refused
 * tokens, failing webhook deliveries, artifact storage not shared by instances on one PostgreSQL
 * and builds whose bytes are missing from it, devices that accept unsigned software, devices whose
 * clocks are wrong, devices still on a CA rollover's previous CA, and rollouts waiting for an operator.
 */
import type { Command } from 'commander';
import type { KeyInfo } from '../artifacts/key-ring.ts';
import type { InstanceMetrics } from '../http/metrics.ts';
import type { KeyCertificate } from '../protocol/key-certificate.ts';
import type { JobRecord } from '../store/state-store.ts';
import { caSubject, issuerQuery } from '../protocol/certificate-issuer.ts';
import { listCommand } from './previous-ca-devices.ts';
import { ApiClient, serverUrl, whyUnreachable, type ApiOptions } from './api-client.ts';
import { dataDirOption } from './data-dir-option.ts';

type Verdict = 'ok' | 'note' | 'warn' | 'FAIL';

/** Devices whose agents reported a clock a minute or more off the server's. */
/** A named token unused this long is named by doctor. */
const UNUSED_TOKEN_DAYS = 90;
const WRONG_CLOCK_QUERY = 'reported.agent.clockOffsetSeconds > 59 or reported.agent.clockOffsetSeconds < -59';

/** One line of the report. */
export interface Finding {
  verdict: Verdict;
  check: string;
  text: string;
}

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
  let keys: { signing: { keyId: string; certificate: KeyCertificate | null }; root: { keyId: string; rotations?: unknown[] } | null; url: KeyInfo[]; ca?: string; previousCa?: string | null; droppedCaSubject?: string | null };
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

  const cert = keys.signing.certificate;
  if (!cert) {
    add('note', 'signing key', `${keys.signing.keyId}, no certificate from an offline root: replacing it means provisioning every device again (docs/security.md)`);
  } else {
    const days = Math.floor((cert.expiresAt * 1000 - now) / DAY_MS);
    if (days < 0) add('FAIL', 'signing key', `the certificate of ${cert.keyId} expired ${-days} day(s) ago: devices that trust the root refuse every update; certify the key again and install it (updraft keys certify, keys install-cert)`);
    else if (days < 30) add('warn', 'signing key', `the certificate of ${cert.keyId} expires in ${days} day(s): certify the key again and install it`);
    else add('ok', 'signing key', `${cert.keyId}, certified by root ${cert.rootKeyId} (serial ${cert.serial}) for ${days} more days`);
  }
  for (const k of keys.url.filter((x) => x.activeFrom)) add('note', 'URL keys', `key ${k.kid} is staged: it signs from ${k.activeFrom}; every instance must have it by then`);

  const m = await api.call<InstanceMetrics>('GET', '/api/v1/metrics').catch(() => undefined);
  if (m) {
    const busy = m.eventLoop.lastMinute.utilization;
    if (busy > 0.9) add('warn', 'load', `the server's thread was ${Math.round(busy * 100)}% busy over the last minute: at its limit, commands and answers queue (docs/deployment.md: add an instance)`);
    else add('ok', 'load', `the server's thread was ${Math.round(busy * 100)}% busy over the last minute`);
    if (m.tls) for (const f of tlsFindings(m.tls, now)) add(f.verdict, f.check, f.text);
    if (m.api.refusedTokens > 0) add('note', 'tokens', `${m.api.refusedTokens} API call(s) refused for their token since the start: a tool with an old token, or someone guessing (the log says from where)`);
    if (m.webhook && m.webhook.failed + m.webhook.dropped > 0) add('warn', 'webhook', `${m.webhook.failed} notification(s) failed and ${m.webhook.dropped} dropped since the start: check the receiver (the log names them)`);
    // several instances on one database must share the artifact storage: with a directory
    // each, a build added through one is missing on the others (the server says so at start too)
    if (m.storage?.store === 'postgres' && m.storage.artifacts === 'local') add('warn', 'artifacts', "this instance shares a PostgreSQL store but keeps artifact bytes in its own directory (no --blob): with several instances every one must share the artifact storage (--blob s3://...), or a build added through one cannot be downloaded through another; with a single instance, nothing is wrong");
    if (m.downloads.missing > 0) add('warn', 'artifacts', `${m.downloads.missing} download(s) answered 503 since the start because a stored build's bytes are missing from artifact storage: restore them, or delete the build and add it again (the log names it: "the artifact's bytes are missing")`);
    if (m.webhook && m.webhook.waiting >= 100) add('warn', 'webhook', `${m.webhook.waiting} notification(s) wait to be sent: the receiver is down or slow (past 1,000 the oldest are dropped)`);
  }

  // which instance leads rollouts (sends the commands, times executions out): one per database
  if (m?.rollouts) add('ok', 'leader', m.rollouts.leader ? 'this instance leads rollouts' : 'this instance follows: another instance on its database should lead rollouts (exactly one instance\'s GET /api/v1/metrics says rollouts.leader true; if none does, rollouts stand still: look at each instance\'s doctor)');

  // agents that install unsigned software (they say so when they connect): a fleet query,
  // which reads the whole fleet when none does
  const careless = await firstMatches<{ deviceId: string }>(api, 'reported.agent.trust = unsigned').catch(() => undefined);
  if (careless && careless.items.length > 0) {
    const some = `${careless.items.map((d) => d.deviceId).join(', ')}${careless.next ? ', …' : ''}`;
    add('warn', 'devices', `${some} accept unsigned software (an agent run with --insecure-allow-unsigned): whoever can send them a command can install anything; give them the signing key or the root (list them: updraft device list --query 'reported.agent.trust = unsigned')`);
  }

  // devices on the root whose agents cannot follow a root rotation (protocol/agent-features.ts):
  // after one, they refuse every update until given the new root by hand
  if (keys.root) {
    const query = 'reported.agent.trust = root and not reported.agent.features = root-rotation';
    const old = await firstMatches<{ deviceId: string }>(api, query).catch(() => undefined);
    if (old && old.items.length > 0) {
      const some = `${old.items.map((d) => d.deviceId).join(', ')}${old.next ? ', …' : ''}`;
      add('note', 'devices', `${some} trust the root with agents that cannot follow a root rotation: update their agents before replacing the root, or they refuse every update after it (list them: updraft device list --query '${query}')`);
    }
  }

  // after a root rotation, devices that have not followed it yet (no command since) still trust
  // the old root: whoever holds it can certify a key of their own for them
  if (keys.root && (keys.root.rotations?.length ?? 0) > 0) {
    const query = `reported.agent.trust = root and reported.agent.keyId != ${keys.root.keyId}`;
    const behind = await firstMatches<{ deviceId: string }>(api, query).catch(() => undefined);
    if (behind && behind.items.length > 0) {
      const some = `${behind.items.map((d) => d.deviceId).join(', ')}${behind.next ? ', …' : ''}`;
      add('warn', 'devices', `${some} still trust a replaced root (the root is ${keys.root.keyId} now): they follow the rotation with their next command; until then, the old root can vouch for any key for them (list them: updraft device list --query '${query}')`);
    }
  }

  // during a CA rollover, devices still on the previous CA (their agents report their
  // certificate's issuer): `ca drop-previous` locks them out, and refuses while there are any
  // (while it is valid: once expired it is ignored, and its devices are refused already)
  if (m?.tls?.previousCaExpiresAt != null && m.tls.previousCaExpiresAt * 1000 > now && typeof keys.ca === 'string') {
    const still = await previousCaFinding(api, keys.ca, typeof keys.previousCa === 'string' ? keys.previousCa : undefined).catch(() => undefined);
    if (still) add(still.verdict, still.check, still.text);
  }

  // devices still reporting a certificate of the CA a drop removed (`--force`, or before they
  // moved): the server refuses them at the handshake, and their renewal needs a connection, so
  // they stay cut off and show only as offline (QA of the CA rollover, 2026-12-06)
  if (typeof keys.droppedCaSubject === 'string') {
    // a scan that failed is said: read as nothing found, it said "ok" of a fleet it never read (review)
    // the undo only while no later rollover's previous CA stands where it would go back
    const cut = await droppedCaFinding(api, keys.droppedCaSubject, typeof keys.previousCa !== 'string').catch((err: Error): Finding => ({ verdict: 'note', check: 'CA', text: `the devices still on the CA updraft ca drop-previous removed could not be counted: ${err.message}` }));
    if (cut) add(cut.verdict, cut.check, cut.text);
  }

  // agents whose client certificate expires within two weeks (they report it): renewal is
  // off, or failing; past the expiry the broker refuses them
  const soon = Math.floor(now / 1000) + 14 * 86_400;
  const expiring = await firstMatches<{ deviceId: string; agent?: { certificateRenewalError?: string | null } | null }>(api, `reported.agent.certificateExpiresAt < ${soon}`).catch(() => undefined);
  if (expiring && expiring.items.length > 0) {
    // with what each device said of its last failed renewal
    const named = expiring.items.map((d) => (typeof d.agent?.certificateRenewalError === 'string' ? `${d.deviceId} (renewal failed: ${d.agent.certificateRenewalError})` : d.deviceId));
    const some = `${named.join(', ')}${expiring.next ? ', …' : ''}`;
    add('warn', 'devices', `${some} have a client certificate that expires within 14 days: past it the broker refuses them; their agents renew it over MQTT unless told --renew-certificate-days 0, and the log says why a renewal failed (list them: updraft device list --query 'reported.agent.certificateExpiresAt < ${soon}')`);
  }

  // agents whose clock is a minute or more off the server's (they report it: agent/clock-offset.ts);
  // a clock ahead by more than a command's lifetime fails every update as expired
  const skewed = await firstMatches<{ deviceId: string; reported?: unknown }>(api, WRONG_CLOCK_QUERY).catch(() => undefined);
  if (skewed && skewed.items.length > 0) {
    const some = `${skewed.items.map((d) => d.deviceId).join(', ')}${skewed.next ? ', …' : ''}`;
    add('warn', 'devices', `${some} run with a wrong clock (a minute or more off the server's): a clock ahead by more than --url-ttl fails every update as expired; set their clocks (NTP, an RTC in UTC) (list them with their offsets: updraft device list --query '${WRONG_CLOCK_QUERY}')`);
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
  for (const j of paused?.items ?? []) {
    const why = (j.progress as { pause?: { reason?: string; message?: string } } | undefined)?.pause;
    if (why && why.reason !== 'operator') add('note', 'rollouts', `job ${j.jobId} (${j.artifactName}@${j.artifactVersion}) waits for an operator: ${why.message ?? why.reason}`);
  }
  return out;
}

/**
 * The expiries of Updraft's CA and of the certificates the server's TLS listeners serve (as
 * the server says: what it serves now, after a renewal too). A server certificate past its
 * end is refused by every device; Updraft's CA is warned of a year ahead, since replacing it
 * means provisioning every device with the new one (docs/security.md).
 */
function tlsFindings(t: InstanceMetrics['tls'], now: number): Finding[] {
  const out: Finding[] = [];
  const caDays = Math.floor((t.caExpiresAt * 1000 - now) / DAY_MS);
  const caAt = new Date(t.caExpiresAt * 1000).toISOString().slice(0, 10);
  if (caDays < 0) out.push({ verdict: 'FAIL', check: 'CA', text: `Updraft's CA (pki/ca.crt) expired on ${caAt}: no certificate it issued is accepted, so devices on MQTTS cannot connect; replace it (docs/security.md, "When the CA nears its end")` });
  else if (caDays < 365) out.push({ verdict: 'warn', check: 'CA', text: `Updraft's CA (pki/ca.crt) expires on ${caAt}, in ${caDays} day(s): what it issues ends with it; plan its replacement, which provisions every device with the new CA (docs/security.md, "When the CA nears its end")` });
  else out.push({ verdict: 'ok', check: 'CA', text: `Updraft's CA is valid until ${caAt}` });
  // a rollover's previous CA (pki/previous-ca.crt): its devices' certificates are accepted until it ends
  if (t.previousCaExpiresAt != null) {
    const prevAt = new Date(t.previousCaExpiresAt * 1000).toISOString().slice(0, 10);
    if (t.previousCaExpiresAt * 1000 <= now) out.push({ verdict: 'warn', check: 'CA', text: `the previous CA (pki/previous-ca.crt) expired on ${prevAt} and is ignored: devices still on its certificates are refused; remove it (updraft ca drop-previous)` });
    else out.push({ verdict: 'ok', check: 'CA', text: `the previous CA (pki/previous-ca.crt) is trusted until ${prevAt}: devices with its certificates connect and renew onto the current CA (the server log's "movedFromPreviousCa" lines count them)` });
  }
  for (const [name, at] of [['MQTTS', t.mqttCertificateExpiresAt], ['HTTPS', t.httpCertificateExpiresAt]] as const) {
    if (at === null) continue;
    const days = Math.floor((at * 1000 - now) / DAY_MS);
    const day = new Date(at * 1000).toISOString().slice(0, 10);
    const fix = "one issued by Updraft's CA is renewed by the server (daily, or at a restart): its log says why it was not; your own (--mqtt-tls-cert, --http-tls-cert) you replace, then restart";
    if (days < 0) out.push({ verdict: 'FAIL', check: 'tls', text: `the ${name} server certificate expired on ${day}: every client refuses it; ${fix}` });
    else if (days < 30) out.push({ verdict: 'warn', check: 'tls', text: `the ${name} server certificate expires on ${day}, in ${days} day(s); ${fix}` });
    else out.push({ verdict: 'ok', check: 'tls', text: `the ${name} server certificate is valid until ${day}` });
  }
  return out;
}

/**
 * While a previous CA is present: the devices that reported a client certificate of it
 * (`previousCaPem`, GET /api/v1/keys `previousCa`), as `updraft ca drop-previous` counts them;
 * from a server that names the current CA only (`ca`), those of any CA other than the current
 * one, which the embedded broker and a generated Mosquitto listener accept only while it is
 * the previous CA. Revoked devices are said apart: the renewal refuses them, so they never
 * move, and drop-previous does not refuse for them (the fleet query has no field for it: the
 * answer's `revoked` tells them). Undefined when none did.
 */
async function previousCaFinding(api: ApiClient, currentCaPem: string, previousCaPem: string | undefined): Promise<Finding | undefined> {
  const query = previousCaPem !== undefined ? issuerQuery(caSubject(previousCaPem)) : issuerQuery(caSubject(currentCaPem), '!=');
  const found = await countMatches<{ deviceId: string; revoked?: boolean }>(api, query, (d) => d.revoked === true);
  if (found.count === 0 && found.set === 0) return undefined;
  const of = previousCaPem !== undefined ? 'of the previous CA (pki/previous-ca.crt)' : 'not of the current CA, so of the previous one (pki/previous-ca.crt)';
  const revoked = found.set > 0 ? `${found.set} revoked device(s) (${found.firstSet.map((d) => d.deviceId).join(', ')}${found.set > found.firstSet.length ? ', …' : ''})` : '';
  if (found.count === 0) {
    return { verdict: 'note', check: 'CA', text: `${revoked} report a client certificate ${of}: refused anyway (revoked), they do not hold updraft ca drop-previous back (list them: ${listCommand(query)})` };
  }
  const some = `${found.first.map((d) => d.deviceId).join(', ')}${found.count > found.first.length ? ', …' : ''}`;
  const besides = found.set > 0 ? ` (besides ${revoked}, refused anyway)` : '';
  return {
    verdict: 'warn',
    check: 'CA',
    text: `${found.count} device(s) (${some}) still report a client certificate ${of}${besides}: updraft ca drop-previous would lock them out, and refuses while any do; agents with the new CA in --ca move at their next connect (list them: ${listCommand(query)}${found.set > 0 ? '; revoked ones are listed too' : ''})`,
  };
}

/** A warning naming the devices (not revoked) that report a certificate of the CA `ca drop-previous` removed; undefined when none does. */
async function droppedCaFinding(api: ApiClient, droppedSubject: string, undoable: boolean): Promise<Finding | undefined> {
  const query = issuerQuery(droppedSubject);
  const found = await countMatches<{ deviceId: string; revoked?: boolean }>(api, query, (d) => d.revoked === true);
  if (found.count === 0) return undefined;
  const some = `${found.first.map((d) => d.deviceId).join(', ')}${found.count > found.first.length ? ', …' : ''}`;
  return {
    verdict: 'warn',
    check: 'CA',
    text: `${found.count} device(s) (${some}) last reported a client certificate of the CA updraft ca drop-previous removed (pki/previous-ca.crt.dropped, ${droppedSubject}): the server refuses it at the handshake, so they stay cut off (offline) until each is given a certificate of the current CA (updraft device cert <id>, --csr for a key kept on the device)${undoable ? ', or the drop is undone with the server stopped (mv -n pki/previous-ca.crt.dropped pki/previous-ca.crt, and mv -n pki/previous-ca.key.dropped pki/previous-ca.key where there is one, for the CRL of an external Mosquitto) for them to move' : ' (a later rollover\'s previous CA is in pki/previous-ca.crt now: the drop cannot be undone over it)'} (list them: ${listCommand(query)})`,
  };
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
