/**
 * Certificate revocation lists (RFC 5280 §5, X.509 v2 CRL) of Updraft's CA: the device
 * certificates of deleted devices, for an external Mosquitto with certificate logins
 * (`updraft broker mosquitto-config --updraft-ca`, its `crlfile`). The embedded broker needs
 * none: it accepts a certificate only for the registration it was issued to.
 *
 * node-forge builds no CRL, so the DER is written by crl-der.ts straight into Buffers (a
 * forge.asn1 tree per entry held the thread for seconds and gigabytes at 100,000s of
 * entries) and signed (sha256WithRSAEncryption) by node:crypto with the CA's key, as
 * certificate-authority.ts signs certificates; the server does it in a worker thread
 * (crl-builder.ts, crl-worker.ts).
 *
 * OpenSSL's CRL check (what Mosquitto turns on with `crlfile`) wants a CRL from the issuer of
 * every leaf certificate it verifies and refuses the connection without one, or with one past
 * its nextUpdate, or one whose thisUpdate is ahead of its own clock. So each CRL lives as long
 * as its CA (nextUpdate is the CA's notAfter) and starts a day early (thisUpdate backdated by
 * BACKDATE_MS, as the CA's certificates are); and the file holds one CRL per CA whose certificates are accepted: the
 * current CA's and, during a rollover, the previous CA's, signed with its key, which a
 * rollover keeps as `pki/previous-ca.key` until `drop-previous` for that reason only. A
 * previous CA whose key is gone (a rollover before 2026-12-06) gets no CRL, and then no CRL
 * is written at all (`crlFile` says why): a crlfile would lock out its devices.
 */
import { X509Certificate, createHash, createPrivateKey, type KeyObject } from 'node:crypto';
import { UpdraftError } from '../errors.ts';
import type { DeviceCertificateRecord, StateStore } from '../store/state-store.ts';
import type { Logger } from '../util/logger.ts';
import { BACKDATE_MS, SKEW_MS, caPaths, readOptional, validAt } from './certificate-authority.ts';
import { buildCrlOffThread } from './crl-builder.ts';
import { encodeCrl, type CrlDerInput } from './crl-der.ts';

/** One revoked certificate: its serial (hex) and when it was revoked (ms). */
export interface RevokedEntry {
  serial: string;
  revokedAt: number;
}

/** What a CRL is built from. */
export interface CrlInput {
  /** The issuing CA's certificate (PEM): its subject is the CRL's issuer, its key identifier the authority key identifier. */
  caCertificate: string;
  /** The CA's private key. */
  caKey: KeyObject;
  entries: RevokedEntry[];
  /**
   * When the list is issued (ms), default now: its CRL number is this second, and its
   * thisUpdate BACKDATE_MS earlier (a broker whose clock is behind the server's refused every
   * certificate of the CA after each reload while thisUpdate was ahead of it: "CRL is not yet
   * valid"). Successive lists keep the order of their issue times, which OpenSSL goes by.
   */
  issuedAt?: number;
  /**
   * nextUpdate (ms); default the CA's notAfter. OpenSSL refuses every certificate of a CA
   * whose CRL is past its nextUpdate (X509_V_ERR_CRL_HAS_EXPIRED): a file not rewritten in
   * time (a one-off run, a watch without reload, a server that cannot sign) locked out the
   * whole fleet, while a shorter validity buys nothing here (the file is Mosquitto's own,
   * nobody can replay an old one into it). So a CRL lives as long as its CA.
   */
  nextUpdate?: number;
}

/**
 * A CRL (PEM) of `entries`, issued and signed by the CA, built on the calling thread
 * (crl-der.ts). The server builds its lists with `buildCrlOffThread` (crl-builder.ts).
 */
export function buildCrl(input: CrlInput): string {
  return encodeCrl(crlDerInput(input)).toString('latin1');
}

/** The encoder's input of `input`: the entries as two arrays, the times decided here (not in a worker). */
export function crlDerInput(input: CrlInput): CrlDerInput {
  const issuedAt = input.issuedAt ?? Date.now();
  const revokedAt = new Float64Array(input.entries.length);
  const serials = input.entries.map((e, i) => ((revokedAt[i] = e.revokedAt), e.serial));
  return { caCertificate: input.caCertificate, caKey: input.caKey, serials, revokedAt, issuedAt, thisUpdate: issuedAt - BACKDATE_MS, nextUpdate: input.nextUpdate };
}

/** The SHA-256 fingerprint of a CA certificate (PEM), lower-case hex: how a recorded certificate names its issuer. */
export function caFingerprint(caPem: string): string {
  return createHash('sha256').update(new X509Certificate(caPem).raw).digest('hex');
}

/** The record of `certificatePem`, issued to `deviceId` by the CA of `caPem`. */
export function issuedRecord(deviceId: string, certificatePem: string, caPem: string): DeviceCertificateRecord {
  const x = new X509Certificate(certificatePem);
  return {
    serial: x.serialNumber.toLowerCase(),
    deviceId,
    issuer: caFingerprint(caPem),
    issuerSubject: new X509Certificate(caPem).subject.replace(/\n/g, ', '),
    // notBefore is set SKEW_MS early (certificate-authority.ts validity)
    issuedAt: Date.parse(x.validFrom) + SKEW_MS,
    notAfter: Date.parse(x.validTo),
  };
}

/** What `crlFile` made. */
export type CrlFile =
  | {
      ok: true;
      /** One CRL per CA whose certificates are accepted, concatenated (PEM). */
      pem: string;
      /** The earliest nextUpdate (ms): the notAfter of the CA that expires first. */
      nextUpdate: number;
      /** When the lists were issued (ms, a whole second; their thisUpdate is BACKDATE_MS earlier). */
      issuedAt: number;
      /** How many serials are listed, and for how many CAs. */
      revoked: number;
      cas: number;
      /** SHA-256 of the CAs and the revocations' stamp (not the times): the same revocations, the same digest (`crlDigest`). */
      digest: string;
      /** caFingerprint of each CA a CRL is given for. */
      issuers: string[];
    }
  | { ok: false; reason: string };

function keyOf(certPem: string, keyPem: string, file: string): KeyObject {
  const key = createPrivateKey(keyPem);
  if (!new X509Certificate(certPem).checkPrivateKey(key)) throw new UpdraftError('CONFIG', `${file} is not the private key of its CA certificate`);
  return key;
}

/**
 * The crlfile of the data directory's CAs (read from `pki/`): for the current CA and, while
 * it is valid, the previous CA of a rollover, each listing the `revoked` certificates it
 * issued that expired a day ago at most (`listedAfter`). `{ ok: false }` with the reason when the previous CA's key is
 * not kept: no file must be written then (OpenSSL would refuse that CA's devices).
 * `last`, the file made before: returned as it is when the CAs and the revocations' stamp are
 * the same (no revoked row and no key is read then, no new signatures: a previous CA's key moved aside since still
 * leaves the lists it signed, which stay true); otherwise the new lists are issued at least a second after it, so that OpenSSL,
 * which keeps the CRL of the latest thisUpdate, takes them. With `ledger` (the store's
 * settings, shared by the instances of a cluster) they are also issued after every list any
 * instance issued before (`claimIssue`), whatever this instance's clock says.
 */
export async function crlFile(dataDir: string, revoked: Revocations, nowMs = Date.now(), last?: CrlFile, ledger?: IssueLedger, onDropped?: (claims: string[]) => void): Promise<CrlFile> {
  const p = caPaths(dataDir);
  // the certificates and the stamp first; the rows and the keys only when a list must be made:
  // a call that gives back the kept file (most calls: the watch asks at every deletion event of
  // any instance) reads no revoked row (QA 2026-12-07: at 100,000 they held the thread 0.5-1.2 s
  // on SQLite, and their sort for the digest 0.15-0.85 s more) and checks no private key
  const cas = await crlCas(dataDir, nowMs);
  const hex = digestOf(cas, revoked.stamp);
  // the kept list, unless it was issued by this instance's clock while more than MAX_AHEAD_MS
  // ahead (corrected since, without a restart): with the same revocations it was given back
  // until the next change, and a broker that took it refused every device ("CRL is not yet
  // valid") once more than a day ahead; a new one is issued now, below
  if (last?.ok && last.digest === hex && last.issuedAt <= nowMs + MAX_AHEAD_MS) return last;
  const rows = await revoked.load();
  const lists = cas.map((ca) => ({
    ...ca,
    entries: rows.filter((r) => r.issuer === ca.fingerprint && r.notAfter > listedAfter(nowMs) && r.revokedAt !== undefined).map((r) => ({ serial: r.serial, revokedAt: r.revokedAt! })),
  }));
  const keys: KeyObject[] = [];
  for (const l of lists) {
    const keyPem = await readOptional(l.keyFile);
    if (keyPem === undefined && l.keyFile === p.previousKey) {
      return { ok: false, reason: `the previous CA of the rollover (${p.previous}) has no key kept beside it (${p.previousKey}: rollovers before 2026-12-06 deleted it), so no CRL of it can be signed, and OpenSSL refuses a certificate whose CA has no CRL: no crlfile until updraft ca drop-previous` };
    }
    if (keyPem === undefined) throw new UpdraftError('CONFIG', `there is no CA key in ${p.dir} to sign the changed CRL with (${l.keyFile}): put it back, or make a CA: updraft ca init`);
    keys.push(keyOf(l.cert, keyPem, l.keyFile));
  }
  // after the list kept, unless that one was issued by a clock ahead (corrected since): a list
  // in the future is refused by OpenSSL ("CRL is not yet valid"), and every device with it
  const now = Math.floor(nowMs / 1000) * 1000;
  const afterLast = last?.ok ? last.issuedAt + 1000 : 0;
  const earliest = afterLast > nowMs + MAX_AHEAD_MS ? now : Math.max(now, afterLast);
  const issuedAt = ledger ? await claimIssue(ledger, earliest, nowMs, onDropped) : earliest;
  const pem = (await Promise.all(lists.map((l, i) => buildCrlOffThread(crlDerInput({ caCertificate: l.cert, caKey: keys[i]!, entries: l.entries, issuedAt }))))).join('');
  const nextUpdate = Math.min(...lists.map((l) => Date.parse(new X509Certificate(l.cert).validTo)));
  return { ok: true, pem, nextUpdate, issuedAt, revoked: lists.reduce((n, l) => n + l.entries.length, 0), cas: lists.length, digest: hex, issuers: lists.map((l) => l.fingerprint) };
}

/**
 * How long a revoked certificate stays listed after it expires (ms): a day, as long as
 * thisUpdate is backdated (BACKDATE_MS). A list keeps what has not expired by the clock of the
 * instance that makes it, and one ahead left out certificates still in force by the broker's
 * clock (QA 2026-12-07: an instance 2 h ahead omitted two expiring within 2 h, and OpenSSL
 * admitted them with its list). Listing an expired certificate costs an entry, and OpenSSL,
 * which refuses it as expired anyway, ignores it.
 */
export const LISTED_AFTER_EXPIRY_MS = BACKDATE_MS;

/**
 * The notAfter (ms) a revoked certificate must be later than to be listed in a CRL made at
 * `nowMs`: what the stamp and the rows are read with (StateStore.revocationStamp and
 * listRevokedEntries take it as their `nowMs`), one bound for both, so that the stamp still
 * changes whenever the listed set does.
 */
export function listedAfter(nowMs: number): number {
  return nowMs - LISTED_AFTER_EXPIRY_MS;
}

/**
 * How long after it expires a certificate's record is pruned (ms): a day after the lists stop
 * listing it (LISTED_AFTER_EXPIRY_MS), so that an instance whose clock is up to a day ahead
 * prunes no row still listed by the others (a prune and a revocation at once could leave the
 * revocation stamp as it was: review of 0477f40, a deleted device admitted until the next change).
 */
export const PRUNED_AFTER_EXPIRY_MS = LISTED_AFTER_EXPIRY_MS + BACKDATE_MS;

/** A revoked certificate as `crlFile` reads it (StateStore.listRevokedEntries, or a whole record). */
export type RevokedRow = Pick<DeviceCertificateRecord, 'serial' | 'issuer' | 'notAfter' | 'revokedAt'>;

/**
 * The revocations `crlFile` lists: `stamp`, which changes whenever they do
 * (StateStore.revocationStamp, or `rowsStamp` of rows at hand), and `load`, called only when
 * a new list must be made.
 */
export interface Revocations {
  stamp: string;
  load: () => Promise<RevokedRow[]>;
}

/** `rows` (read already, as the offline command has them) as `Revocations`, stamped as the store stamps them. */
export function revocationsOf(rows: RevokedRow[], nowMs = Date.now()): Revocations {
  const listed = rows.filter((r) => r.revokedAt !== undefined && r.notAfter > listedAfter(nowMs));
  // one pass, not Math.min(...rows): spreading more than ~120,000 values into a call overflows
  // V8's stack, and mosquitto-config --offline failed at the scale the CRL is for (review of 3e13f54)
  let first = Infinity;
  let latest = -Infinity;
  for (const r of listed) {
    if (r.notAfter < first) first = r.notAfter;
    if (r.revokedAt! > latest) latest = r.revokedAt!;
  }
  return { stamp: listed.length > 0 ? `${listed.length}:${first}:${latest}` : '0::', load: async () => rows };
}

/** The CAs a crlfile has a CRL of (read from the data directory's `pki/`): the current one and, while it is valid, the previous one of a rollover. */
async function crlCas(dataDir: string, nowMs: number): Promise<{ cert: string; keyFile: string; fingerprint: string }[]> {
  const p = caPaths(dataDir);
  const cert = await readOptional(p.cert);
  // CONFIG (500), not NOT_FOUND: the watch reads a 404 of the route as a server without it
  // ("upgrade it") and stops asking; a 500 it retries, saying the message (review of 2026-12-07)
  if (cert === undefined) throw new UpdraftError('CONFIG', `there is no CA in ${p.dir}: start the server once, or make it: updraft ca init`);
  const cas = [{ cert, keyFile: p.key }];
  const previous = await readOptional(p.previous);
  if (previous !== undefined && previous.trim() !== cert.trim() && validAt(previous, nowMs)) cas.push({ cert: previous, keyFile: p.previousKey });
  return cas.map((ca) => ({ ...ca, fingerprint: caFingerprint(ca.cert) }));
}

/** `CrlFile.digest`: SHA-256 of the CAs' fingerprints and the revocations' stamp (not the times): the same CAs and revocations, the same digest, on every instance. */
function digestOf(cas: { fingerprint: string }[], stamp: string): string {
  const digest = createHash('sha256');
  for (const ca of cas) digest.update(`${ca.fingerprint};`);
  return digest.update(`revocations ${stamp}`).digest('hex');
}

/**
 * The digest `crlFile` would give its file for `stamp` now, without reading a revoked row or a
 * key, or making a list: what the route compares with a client's `If-None-Match`.
 */
export async function crlDigest(dataDir: string, stamp: string, nowMs = Date.now()): Promise<string> {
  return digestOf(await crlCas(dataDir, nowMs), stamp);
}

/** The store's settings, where the issue times of the lists are kept (`claimIssue`); its clock (`databaseTime`, PostgreSQL) where it has one. */
export type IssueLedger = Pick<StateStore, 'addSetting' | 'listSettings' | 'deleteSetting' | 'databaseTime'>;

/**
 * How far ahead of the clock a list may be issued (ms): an hour short of the day thisUpdate is
 * backdated by, so a list issued up to this far ahead is still in effect now. A claim further
 * ahead was made by a clock far ahead, and is dropped: the review of 2026-12-07 found one
 * issue made while a clock was three days ahead kept every later list, of every instance, in
 * the future (OpenSSL: "CRL is not yet valid", every device refused), even after the clock was
 * put right and the server restarted. Not less: a claim dropped lets the next list be issued
 * before one still in effect, which an OpenSSL holding both keeps (the newer revocations
 * ignored; Mosquitto 2.0.11 holds only the crl.pem it read at its last start or reload, QA
 * 2026-12-07, so there it is replaced at the next reload); with 5 minutes, a clock stepped back by 10 (an NTP step, a failover to
 * a database whose clock is behind) admitted a device deleted after it (second review).
 */
export const MAX_AHEAD_MS = BACKDATE_MS - 3_600_000;

/** Settings key prefix of the issue claims: `crl.issued.<ms, 15 digits>`, one per list issued. */
const ISSUED_PREFIX = 'crl.issued.';
/** Claims taken before giving up (each lost one means another instance issued meanwhile). */
const MAX_CLAIMS = 20;

const issuedKey = (ms: number): string => ISSUED_PREFIX + String(ms).padStart(15, '0');

async function claims(ledger: IssueLedger): Promise<{ key: string; at: number }[]> {
  return (await ledger.listSettings(ISSUED_PREFIX)).map((s) => ({ key: s.key, at: Number(s.key.slice(ISSUED_PREFIX.length)) })).filter((c) => Number.isSafeInteger(c.at));
}

/**
 * The issue time (ms, a whole second, at least `earliest`) of a new set of lists, later than
 * any list issued before on this store, by any instance. OpenSSL keeps the CRL of the latest
 * thisUpdate it was given: an instance whose clock is behind another's, issuing by its own
 * clock, made a changed list that a Mosquitto already holding the other's ignored.
 *
 * One sequence for all CAs (the lists of a file share their issue time, and an order of all
 * lists is an order of each CA's). The store has no compare-and-set, so each issue is a claim
 * of its second with `addSetting` (insert-if-absent: two instances cannot claim one second),
 * then a look at all claims: if a later one exists (an instance that issued meanwhile), the
 * claim moves above it. So the claim kept is the latest at the moment it was checked, and any
 * issue that starts after that check sees it and goes above. Claims below the kept one are
 * deleted (never the latest, so the latest always stays). Two issues at the same moment are
 * ordered either way; both carry what their own read of the revocations saw, and the next
 * change is issued above both.
 */
export async function claimIssue(ledger: IssueLedger, earliest: number, nowMs: number, onDropped?: (claims: string[]) => void): Promise<number> {
  // one clock for every instance where the store has one (PostgreSQL's): an instance whose own
  // clock is ahead neither issues in the future nor keeps its claims there
  const clock = ledger.databaseTime ? await ledger.databaseTime() : nowMs;
  const ceiling = clock + MAX_AHEAD_MS;
  /** The claims, those beyond the ceiling (a clock ahead) deleted and said. */
  const current = async () => {
    const all = await claims(ledger);
    const ahead = all.filter((c) => c.at > ceiling);
    if (ahead.length > 0) {
      await Promise.all(ahead.map((c) => ledger.deleteSetting(c.key).catch(() => false)));
      onDropped?.(ahead.map((c) => new Date(c.at).toISOString()));
    }
    return all.filter((c) => c.at <= ceiling);
  };
  const latest = (all: { at: number }[]) => all.reduce((m, c) => Math.max(m, c.at), 0);
  // with the store's clock: this instance's (in `earliest`) only while it is not ahead of it
  const base = Math.ceil((ledger.databaseTime ? (earliest > ceiling ? clock : Math.max(clock, earliest)) : earliest) / 1000) * 1000;
  let at = Math.max(base, latest(await current()) + 1000);
  for (let i = 0; i < MAX_CLAIMS; i++) {
    if (!(await ledger.addSetting(issuedKey(at), new Date(at).toISOString()))) {
      at += 1000;
      continue;
    }
    const all = await current();
    const top = latest(all);
    if (top <= at) {
      // housekeeping: a failed delete leaves a stale claim, which only costs a row
      await Promise.all(all.filter((c) => c.at < at).map((c) => ledger.deleteSetting(c.key).catch(() => false)));
      return at;
    }
    at = top + 1000;
  }
  // not CONFLICT: the route's 409 means "no crlfile can be made" to mosquitto-config --watch
  throw new UpdraftError('UNAVAILABLE', `no CRL issue time could be claimed in ${MAX_CLAIMS} tries (other instances issued meanwhile): ask again`);
}

/** Expired rows pruned after each recorded certificate: the table stays about the size of the valid certificates. */
const PRUNE_PER_ISSUE = 100;

/**
 * Records `certificatePem`, issued to `deviceId` by the CA of `caPem`, before it is handed out
 * (a certificate the store does not know could never be revoked), then prunes a few expired
 * rows. Rejects when the record fails: the certificate is then not given. The prune is
 * housekeeping: its failure is a warning to `logger`, and the certificate recorded is still
 * given.
 */
export async function recordIssued(store: Pick<StateStore, 'recordDeviceCertificate' | 'pruneExpiredCertificates'>, deviceId: string, certificatePem: string, caPem: string, logger: Pick<Logger, 'warn'>, nowMs = Date.now()): Promise<void> {
  await store.recordDeviceCertificate(issuedRecord(deviceId, certificatePem, caPem));
  try {
    // two days after they expire, a day after the lists stop listing them (PRUNED_AFTER_EXPIRY_MS)
    await store.pruneExpiredCertificates(nowMs - PRUNED_AFTER_EXPIRY_MS, PRUNE_PER_ISSUE);
  } catch (err) {
    const msg = 'could not prune expired device certificates from the store (retried at the next issue)';
    logger.warn(msg, { error: (err as Error).message });
  }
}
