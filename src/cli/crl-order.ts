/**
 * Which of two CRLs of one CA `crl.pem` keeps: the one fetched, or the one already on disk.
 * Mosquitto (2.0.11, checked: test/broker/mosquitto-crl-reload.test.ts) enforces exactly what
 * `crl.pem` holds at a reload, nothing it loaded before: a list older than the one on disk,
 * written and reloaded, re-admits every device deleted between the two at once (QA of
 * 2026-12-07: an instance whose lists are behind, or a second watch writing the same
 * directory, put a CRL number ...707 over ...708). So the watch writes a fetched CRL over the
 * on-disk one of the same CA only when it is not older (thisUpdate, then CRL Number), with
 * two exceptions, both so that a list on disk issued by a clock far ahead cannot hold the
 * file for good:
 * - a fetched list that lists every serial the on-disk one does is taken whatever its time:
 *   it re-admits nobody (after a clock put right the server issues by the clock again, older
 *   than the list from the clock ahead, but with every revocation since);
 * - an on-disk list issued more than `maxAheadMs` after `now` (its thisUpdate is `backdateMs`
 *   before its issue, revocation-list.ts) is one the server no longer issues after (it drops
 *   such claims: MAX_AHEAD_MS), so no list it makes would pass it until the clock got there,
 *   days maybe: it is replaced, older or not (this is the only way a deleted device can come
 *   back, and only when a certificate listed has expired meanwhile, so is refused anyway,
 *   or the lists really went backwards by more than a day).
 */
import { tlv } from './mosquitto-crl.ts';

/** One CRL of a PEM file, as far as ordering it needs. */
interface CrlHead {
  /** Its PEM block, as in the file. */
  text: string;
  /** The CA it is of: issuer name and authority key identifier (DER, hex). */
  ca: string;
  /** thisUpdate (ms). */
  thisUpdate: number;
  /** CRL Number (RFC 5280 §5.2.3), or -1 when it has none. */
  number: bigint;
  der: Buffer;
  /** Where revokedCertificates' entries are in `der` (empty when none). */
  entries: { start: number; end: number };
}

/** What `newerCrls` decided. */
export interface CrlChoice {
  /** The text for crl.pem: per CA the fetched CRL, or the on-disk one where the fetched one is older. */
  pem: string;
  /** One per CA whose on-disk CRL was kept, the fetched one being older: both lists' thisUpdate and CRL Number (for the WARN). */
  kept: { thisUpdate: string; crlNumber: string; fetchedThisUpdate: string; fetchedCrlNumber: string }[];
}

const OID_CRL_NUMBER = '551d14';
const OID_AUTHORITY_KEY_ID = '551d23';

/** The CRLs of a PEM file; blocks that cannot be read are left out. */
function crlHeads(pem: string): CrlHead[] {
  const blocks = pem.match(/-----BEGIN X509 CRL-----[^-]+-----END X509 CRL-----\n?/g) ?? [];
  return blocks.map(crlHead).filter((h) => h !== undefined);
}

/** RFC 5280 §5.1: CertificateList ::= SEQUENCE { tbsCertList, signatureAlgorithm, signatureValue }. */
function crlHead(text: string): CrlHead | undefined {
  const der = Buffer.from(text.replace(/-----[A-Z0-9 ]+-----|\s/g, ''), 'base64');
  const outer = tlv(der, 0);
  const tbs = outer?.tag === 0x30 ? tlv(der, outer.body) : undefined;
  if (!tbs || tbs.tag !== 0x30) return undefined;
  let at = tbs.body;
  let e = tlv(der, at);
  if (e?.tag === 0x02) e = tlv(der, (at = e.end)); // version
  if (e?.tag !== 0x30) return undefined; // signature AlgorithmIdentifier
  const issuer = tlv(der, (at = e.end));
  if (issuer?.tag !== 0x30) return undefined;
  const thisUpdate = tlv(der, (at = issuer.end));
  const thisMs = thisUpdate ? derTime(der, thisUpdate) : undefined;
  if (!thisUpdate || thisMs === undefined) return undefined;
  at = thisUpdate.end;
  e = tlv(der, at);
  if (e && (e.tag === 0x17 || e.tag === 0x18)) e = tlv(der, (at = e.end)); // nextUpdate
  let entries = { start: 0, end: 0 };
  if (e?.tag === 0x30 && at < tbs.end) {
    entries = { start: e.body, end: e.end };
    e = tlv(der, (at = e.end));
  }
  let number = -1n;
  let aki = '';
  if (e?.tag === 0xa0 && at < tbs.end) {
    const exts = tlv(der, e.body);
    for (let x = exts?.tag === 0x30 ? tlv(der, exts.body) : undefined; x && x.end <= exts!.end; x = x.end < exts!.end ? tlv(der, x.end) : undefined) {
      const oid = tlv(der, x.body);
      if (oid?.tag !== 0x06) continue;
      let v = tlv(der, oid.end);
      if (v?.tag === 0x01) v = tlv(der, v.end); // critical
      if (v?.tag !== 0x04) continue;
      const id = der.subarray(oid.body, oid.end).toString('hex');
      if (id === OID_AUTHORITY_KEY_ID) aki = der.subarray(v.body, v.end).toString('hex');
      if (id === OID_CRL_NUMBER) {
        const n = tlv(der, v.body);
        if (n?.tag === 0x02 && n.end > n.body) number = BigInt(`0x${der.subarray(n.body, n.end).toString('hex')}`);
      }
    }
  }
  return { text, ca: `${der.subarray(issuer.start, issuer.end).toString('hex')}/${aki}`, thisUpdate: thisMs, number, der, entries };
}

/** UTCTime (YYMMDDHHMMSSZ, RFC 5280 §4.1.2.5.1: YY < 50 is 20YY) or GeneralizedTime (YYYYMMDDHHMMSSZ), in ms. */
function derTime(der: Buffer, t: { tag: number; body: number; end: number }): number | undefined {
  const s = der.subarray(t.body, t.end).toString('latin1');
  const m = t.tag === 0x17 ? /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s) : t.tag === 0x18 ? /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s) : null;
  if (!m) return undefined;
  const y = t.tag === 0x17 ? (Number(m[1]) < 50 ? 2000 : 1900) + Number(m[1]) : Number(m[1]);
  return Date.UTC(y, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
}

/** The serials (DER contents, hex) of a CRL's entries. */
function serials(h: CrlHead): Set<string> {
  const out = new Set<string>();
  for (let at = h.entries.start; at < h.entries.end; ) {
    const entry = tlv(h.der, at);
    if (!entry) break;
    const serial = tlv(h.der, entry.body);
    if (serial?.tag === 0x02) out.add(h.der.subarray(serial.body, serial.end).toString('hex'));
    at = entry.end;
  }
  return out;
}

/** -1, 0 or 1: `a` issued before, with, or after `b` (thisUpdate, then CRL Number). */
function order(a: CrlHead, b: CrlHead): number {
  if (a.thisUpdate !== b.thisUpdate) return a.thisUpdate < b.thisUpdate ? -1 : 1;
  return a.number === b.number ? 0 : a.number < b.number ? -1 : 1;
}

function lists(fetched: CrlHead, onDisk: CrlHead): boolean {
  const have = serials(fetched);
  for (const s of serials(onDisk)) if (!have.has(s)) return false;
  return true;
}

/**
 * The text to write to crl.pem for the `fetched` CRLs when `onDisk` is what it holds: per CA,
 * the fetched CRL unless the on-disk one of that CA is newer (module comment for the
 * exceptions). CAs only on disk are dropped (the fetched file is the CAs trusted now), CAs
 * only fetched are taken.
 */
export function newerCrls(fetched: string, onDisk: string | undefined, t: { now: number; backdateMs: number; maxAheadMs: number }): CrlChoice {
  const disk = new Map(crlHeads(onDisk ?? '').map((h) => [h.ca, h]));
  const kept: CrlChoice['kept'] = [];
  const blocks = (fetched.match(/-----BEGIN X509 CRL-----[^-]+-----END X509 CRL-----\n?/g) ?? []).map((text) => {
    const f = crlHead(text);
    const d = f && disk.get(f.ca);
    if (!f || !d || order(f, d) >= 0) return text;
    if (d.thisUpdate + t.backdateMs > t.now + t.maxAheadMs) return text; // issued by a clock far ahead
    if (lists(f, d)) return text; // older, but re-admits nobody
    kept.push({ thisUpdate: new Date(d.thisUpdate).toISOString(), crlNumber: String(d.number), fetchedThisUpdate: new Date(f.thisUpdate).toISOString(), fetchedCrlNumber: String(f.number) });
    return d.text.endsWith('\n') ? d.text : `${d.text}\n`;
  });
  return { pem: kept.length === 0 ? fetched : blocks.join(''), kept };
}
