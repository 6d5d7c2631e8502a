/**
 * The fleet-level checks of `updraft doctor`, shared by the CLI (which reads the facts through
 * the API) and the server's `GET /api/v1/health/findings` (which reads them in process, for the
 * dashboard): the signing key's certificate, staged URL keys, what the instance's metrics say
 * (load, the CA's and TLS certificates' expiry, refused tokens, webhooks, artifact storage, the
 * leader), the devices a fleet query selects (unsigned software, old agents under a root, a
 * replaced root, a CA rollover's previous CA, a dropped CA, expiring client certificates, wrong
 * clocks) and rollouts waiting for an operator. What depends on where the client stands
 * (reachable, its token, its clock) stays in doctor-command.ts.
 *
 * The device checks are data (`DeviceCheck`: a query and how to word what it selected), so that
 * the CLI asks the API one query at a time and the server answers them all in one read of the fleet.
 */
import type { KeyInfo } from '../artifacts/key-ring.ts';
import type { InstanceMetrics } from '../http/metrics.ts';
import type { KeyCertificate } from '../protocol/key-certificate.ts';
import { caSubject, issuerQuery } from '../protocol/certificate-issuer.ts';
import type { JobRecord } from '../store/state-store.ts';

/** How a check judges: `FAIL` makes doctor exit 1. */
export type Verdict = 'ok' | 'note' | 'warn' | 'FAIL';

/** One line of the report. */
export interface Finding {
  verdict: Verdict;
  check: string;
  text: string;
  /** The fleet query that lists the devices concerned (`updraft device list --query`), for a finding about devices. */
  query?: string;
  /** How many devices the query selects (revoked ones apart where the check says so); absent where only the first were read (doctor's quick checks). */
  count?: number;
}

/** What `GET /api/v1/keys` answers that the checks read. */
export interface KeyFacts {
  signing: { keyId: string; certificate: KeyCertificate | null };
  root: { keyId: string; rotations?: unknown[] } | null;
  url: KeyInfo[];
  ca?: string;
  previousCa?: string | null;
  droppedCaSubject?: string | null;
}

/** A device as a check names it. */
export interface NamedDevice {
  deviceId: string;
  revoked?: boolean;
  /** What its agent said of its last failed certificate renewal (`reported.agent.certificateRenewalError`). */
  renewalError?: string;
}

/** What a fleet query selected. */
export interface Selected {
  /** The first (up to 5) devices selected, those counted apart excluded. */
  first: NamedDevice[];
  /** True when more devices than `first` were selected. */
  more: boolean;
  /** How many were selected, those counted apart excluded; undefined when only the first were read. */
  count?: number;
  /** Selected devices counted apart (revoked ones, for the checks that say `apartRevoked`). */
  set: number;
  firstSet: NamedDevice[];
}

/** A check over the devices a fleet query selects. */
export interface DeviceCheck {
  query: string;
  /** True when the finding needs the whole count (the CLI reads the whole fleet for it); otherwise the first devices do. */
  counted: boolean;
  /** Revoked devices counted apart (`set`), not in `count`. */
  apartRevoked?: boolean;
  /** The finding for what the query selected; undefined when there is nothing to say. */
  finding(found: Selected): Finding | undefined;
  /** The finding when the query could not be answered; undefined (the default): nothing said. */
  failed?(err: Error): Finding | undefined;
}

const DAY_MS = 86_400_000;
/** Devices whose agents reported a clock a minute or more off the server's. */
export const WRONG_CLOCK_QUERY = 'reported.agent.clockOffsetSeconds > 59 or reported.agent.clockOffsetSeconds < -59';

/** The shell command that lists the devices `query` selects (single-quoted for a POSIX shell). */
export function listCommand(query: string): string {
  return `updraft device list --query '${query.replace(/'/g, `'\\''`)}'`;
}

/** The signing key's certificate and the staged URL keys. */
export function keyFindings(keys: KeyFacts, now: number): Finding[] {
  const out: Finding[] = [];
  const cert = keys.signing.certificate;
  if (!cert) {
    out.push({ verdict: 'note', check: 'signing key', text: `${keys.signing.keyId}, no certificate from an offline root: replacing it means provisioning every device again (docs/security.md)` });
  } else {
    const days = Math.floor((cert.expiresAt * 1000 - now) / DAY_MS);
    if (days < 0) out.push({ verdict: 'FAIL', check: 'signing key', text: `the certificate of ${cert.keyId} expired ${-days} day(s) ago: devices that trust the root refuse every update; certify the key again and install it (updraft keys certify, keys install-cert)` });
    else if (days < 30) out.push({ verdict: 'warn', check: 'signing key', text: `the certificate of ${cert.keyId} expires in ${days} day(s): certify the key again and install it` });
    else out.push({ verdict: 'ok', check: 'signing key', text: `${cert.keyId}, certified by root ${cert.rootKeyId} (serial ${cert.serial}) for ${days} more days` });
  }
  for (const k of keys.url.filter((x) => x.activeFrom)) out.push({ verdict: 'note', check: 'URL keys', text: `key ${k.kid} is staged: it signs from ${k.activeFrom}; every instance must have it by then` });
  return out;
}

/** What the instance's metrics say: load, CA and TLS expiry, refused tokens, webhooks, artifact storage, the rollouts' leader. */
export function metricFindings(m: InstanceMetrics, now: number): Finding[] {
  const out: Finding[] = [];
  const add = (verdict: Verdict, check: string, text: string) => void out.push({ verdict, check, text });
  const busy = m.eventLoop.lastMinute.utilization;
  if (busy > 0.9) add('warn', 'load', `the server's thread was ${Math.round(busy * 100)}% busy over the last minute: at its limit, commands and answers queue (docs/deployment.md: add an instance)`);
  else add('ok', 'load', `the server's thread was ${Math.round(busy * 100)}% busy over the last minute`);
  if (m.tls) out.push(...tlsFindings(m.tls, now));
  if (m.api.refusedTokens > 0) add('note', 'tokens', `${m.api.refusedTokens} API call(s) refused for their token since the start: a tool with an old token, or someone guessing (the log says from where)`);
  if (m.webhook && m.webhook.failed + m.webhook.dropped > 0) add('warn', 'webhook', `${m.webhook.failed} notification(s) failed and ${m.webhook.dropped} dropped since the start: check the receiver (the log names them)`);
  // several instances on one database must share the artifact storage: with a directory
  // each, a build added through one is missing on the others (the server says so at start too)
  if (m.storage?.store === 'postgres' && m.storage.artifacts === 'local') add('warn', 'artifacts', "this instance shares a PostgreSQL store but keeps artifact bytes in its own directory (no --blob): with several instances every one must share the artifact storage (--blob s3://...), or a build added through one cannot be downloaded through another; with a single instance, nothing is wrong");
  if (m.downloads.missing > 0) add('warn', 'artifacts', `${m.downloads.missing} download(s) answered 503 since the start because a stored build's bytes are missing from artifact storage: restore them, or delete the build and add it again (the log names it: "the artifact's bytes are missing")`);
  if (m.webhook && m.webhook.waiting >= 100) add('warn', 'webhook', `${m.webhook.waiting} notification(s) wait to be sent: the receiver is down or slow (past 1,000 the oldest are dropped)`);
  // which instance leads rollouts (sends the commands, times executions out): one per database
  if (m.rollouts) add('ok', 'leader', m.rollouts.leader ? 'this instance leads rollouts' : 'this instance follows: another instance on its database should lead rollouts (exactly one instance\'s GET /api/v1/metrics says rollouts.leader true; if none does, rollouts stand still: look at each instance\'s doctor)');
  return out;
}

/**
 * The expiries of Updraft's CA and of the certificates the server's TLS listeners serve (as
 * the server says: what it serves now, after a renewal too). A server certificate past its
 * end is refused by every device; Updraft's CA is warned of a year ahead, since replacing it
 * means provisioning every device with the new one (docs/security.md).
 */
export function tlsFindings(t: InstanceMetrics['tls'], now: number): Finding[] {
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

/** Device ids as a finding names them: the first ones, then `, …` when there are more. */
function named(found: Pick<Selected, 'first' | 'more'>, name: (d: NamedDevice) => string = (d) => d.deviceId): string {
  return `${found.first.map(name).join(', ')}${found.more ? ', …' : ''}`;
}

/** A finding about the devices `query` selects, with the query and the count when known. */
function about(verdict: Verdict, text: string, query: string, found: Selected): Finding {
  return { verdict, check: 'devices', text, query, ...(found.count !== undefined ? { count: found.count } : {}) };
}

/**
 * The device checks, in doctor's order: `keys` (GET /api/v1/keys), `tls` (the metrics' `tls`,
 * undefined when they were not read) and the time the expiries are judged by.
 */
export function deviceChecks(keys: KeyFacts, tls: InstanceMetrics['tls'] | undefined, now: number): DeviceCheck[] {
  const checks: DeviceCheck[] = [];
  // agents that install unsigned software (they say so when they connect)
  const unsigned = 'reported.agent.trust = unsigned';
  checks.push({
    query: unsigned,
    counted: false,
    finding: (found) => (found.first.length === 0 ? undefined : about('warn', `${named(found)} accept unsigned software (an agent run with --insecure-allow-unsigned): whoever can send them a command can install anything; give them the signing key or the root (list them: updraft device list --query 'reported.agent.trust = unsigned')`, unsigned, found)),
  });

  // devices on the root whose agents cannot follow a root rotation (protocol/agent-features.ts):
  // after one, they refuse every update until given the new root by hand
  if (keys.root) {
    const query = 'reported.agent.trust = root and not reported.agent.features = root-rotation';
    checks.push({
      query,
      counted: false,
      finding: (found) => (found.first.length === 0 ? undefined : about('note', `${named(found)} trust the root with agents that cannot follow a root rotation: update their agents before replacing the root, or they refuse every update after it (list them: updraft device list --query '${query}')`, query, found)),
    });
  }

  // after a root rotation, devices that have not followed it yet (no command since) still trust
  // the old root: whoever holds it can certify a key of their own for them
  if (keys.root && (keys.root.rotations?.length ?? 0) > 0) {
    const rootKeyId = keys.root.keyId;
    const query = `reported.agent.trust = root and reported.agent.keyId != ${rootKeyId}`;
    checks.push({
      query,
      counted: false,
      finding: (found) => (found.first.length === 0 ? undefined : about('warn', `${named(found)} still trust a replaced root (the root is ${rootKeyId} now): they follow the rotation with their next command; until then, the old root can vouch for any key for them (list them: updraft device list --query '${query}')`, query, found)),
    });
  }

  // during a CA rollover, devices still on the previous CA (their agents report their
  // certificate's issuer): `ca drop-previous` locks them out, and refuses while there are any
  // (while it is valid: once expired it is ignored, and its devices are refused already)
  if (tls?.previousCaExpiresAt != null && tls.previousCaExpiresAt * 1000 > now && typeof keys.ca === 'string') {
    const previousCaPem = typeof keys.previousCa === 'string' ? keys.previousCa : undefined;
    const query = previousCaPem !== undefined ? issuerQuery(caSubject(previousCaPem)) : issuerQuery(caSubject(keys.ca), '!=');
    checks.push({ query, counted: true, apartRevoked: true, finding: (found) => previousCaFinding(query, previousCaPem !== undefined, found) });
  }

  // devices still reporting a certificate of the CA a drop removed (`--force`, or before they
  // moved): the server refuses them at the handshake, and their renewal needs a connection, so
  // they stay cut off and show only as offline (QA of the CA rollover, 2026-12-06)
  if (typeof keys.droppedCaSubject === 'string') {
    const droppedSubject = keys.droppedCaSubject;
    const query = issuerQuery(droppedSubject);
    // the undo only while no later rollover's previous CA stands where it would go back
    const undoable = typeof keys.previousCa !== 'string';
    checks.push({
      query,
      counted: true,
      apartRevoked: true,
      finding: (found) => droppedCaFinding(query, droppedSubject, undoable, found),
      // a scan that failed is said: read as nothing found, it said "ok" of a fleet it never read (review)
      failed: (err) => ({ verdict: 'note', check: 'CA', text: `the devices still on the CA updraft ca drop-previous removed could not be counted: ${err.message}` }),
    });
  }

  // agents whose client certificate expires within two weeks (they report it): renewal is
  // off, or failing; past the expiry the broker refuses them
  const soon = Math.floor(now / 1000) + 14 * 86_400;
  const expiring = `reported.agent.certificateExpiresAt < ${soon}`;
  checks.push({
    query: expiring,
    counted: false,
    // with what each device said of its last failed renewal
    finding: (found) => (found.first.length === 0 ? undefined : about('warn', `${named(found, (d) => (typeof d.renewalError === 'string' ? `${d.deviceId} (renewal failed: ${d.renewalError})` : d.deviceId))} have a client certificate that expires within 14 days: past it the broker refuses them; their agents renew it over MQTT unless told --renew-certificate-days 0, and the log says why a renewal failed (list them: updraft device list --query '${expiring}')`, expiring, found)),
  });

  // agents whose clock is a minute or more off the server's (they report it: agent/clock-offset.ts);
  // a clock ahead by more than a command's lifetime fails every update as expired
  checks.push({
    query: WRONG_CLOCK_QUERY,
    counted: false,
    finding: (found) => (found.first.length === 0 ? undefined : about('warn', `${named(found)} run with a wrong clock (a minute or more off the server's): a clock ahead by more than --url-ttl fails every update as expired; set their clocks (NTP, an RTC in UTC) (list them with their offsets: updraft device list --query '${WRONG_CLOCK_QUERY}')`, WRONG_CLOCK_QUERY, found)),
  });
  return checks;
}

/**
 * While a previous CA is present: the devices that reported a client certificate of it
 * (`of`: GET /api/v1/keys `previousCa`), as `updraft ca drop-previous` counts them; from a
 * server that names the current CA only, those of any CA other than the current one, which
 * the embedded broker and a generated Mosquitto listener accept only while it is the previous
 * CA. Revoked devices are said apart: the renewal refuses them, so they never move, and
 * drop-previous does not refuse for them (the fleet query has no field for it: the answer's
 * `revoked` tells them). Undefined when none did.
 */
function previousCaFinding(query: string, named: boolean, found: Selected): Finding | undefined {
  const count = found.count ?? found.first.length;
  if (count === 0 && found.set === 0) return undefined;
  const of = named ? 'of the previous CA (pki/previous-ca.crt)' : 'not of the current CA, so of the previous one (pki/previous-ca.crt)';
  const revoked = found.set > 0 ? `${found.set} revoked device(s) (${found.firstSet.map((d) => d.deviceId).join(', ')}${found.set > found.firstSet.length ? ', …' : ''})` : '';
  if (count === 0) {
    return { verdict: 'note', check: 'CA', text: `${revoked} report a client certificate ${of}: refused anyway (revoked), they do not hold updraft ca drop-previous back (list them: ${listCommand(query)})`, query, count: 0 };
  }
  const some = `${found.first.map((d) => d.deviceId).join(', ')}${count > found.first.length ? ', …' : ''}`;
  const besides = found.set > 0 ? ` (besides ${revoked}, refused anyway)` : '';
  return {
    verdict: 'warn',
    check: 'CA',
    text: `${count} device(s) (${some}) still report a client certificate ${of}${besides}: updraft ca drop-previous would lock them out, and refuses while any do; agents with the new CA in --ca move at their next connect (list them: ${listCommand(query)}${found.set > 0 ? '; revoked ones are listed too' : ''})`,
    query,
    count,
  };
}

/** A warning naming the devices (not revoked) that report a certificate of the CA `ca drop-previous` removed; undefined when none does. */
function droppedCaFinding(query: string, droppedSubject: string, undoable: boolean, found: Selected): Finding | undefined {
  const count = found.count ?? found.first.length;
  if (count === 0) return undefined;
  const some = `${found.first.map((d) => d.deviceId).join(', ')}${count > found.first.length ? ', …' : ''}`;
  return {
    verdict: 'warn',
    check: 'CA',
    text: `${count} device(s) (${some}) last reported a client certificate of the CA updraft ca drop-previous removed (pki/previous-ca.crt.dropped, ${droppedSubject}): the server refuses it at the handshake, so they stay cut off (offline) until each is given a certificate of the current CA (updraft device cert <id>, --csr for a key kept on the device)${undoable ? ', or the drop is undone with the server stopped (mv -n pki/previous-ca.crt.dropped pki/previous-ca.crt, and mv -n pki/previous-ca.key.dropped pki/previous-ca.key where there is one, for the CRL of an external Mosquitto) for them to move' : ' (a later rollover\'s previous CA is in pki/previous-ca.crt now: the drop cannot be undone over it)'} (list them: ${listCommand(query)})`,
    query,
    count,
  };
}

/** Rollouts paused for a reason other than an operator's pause: they wait for one. */
export function rolloutFindings(paused: JobRecord[]): Finding[] {
  const out: Finding[] = [];
  for (const j of paused) {
    const why = (j.progress as { pause?: { reason?: string; message?: string } } | undefined)?.pause;
    if (why && why.reason !== 'operator') out.push({ verdict: 'note', check: 'rollouts', text: `job ${j.jobId} (${j.artifactName}@${j.artifactVersion}) waits for an operator: ${why.message ?? why.reason}` });
  }
  return out;
}
