/**
 * Which of two CRLs of one CA `crl.pem` keeps: the one fetched, or the one already on disk.
 * Mosquitto (2.0.11, checked: test/broker/mosquitto-crl-reload.test.ts) enforces exactly what
 * `crl.pem` holds at a reload, nothing it loaded before: a list older than the one on disk,
 * written and reloaded, re-admits every device deleted between the two at once (QA of
 * 2026-12-07: an instance whose lists are behind, or a second watch writing the same
 * directory, put a CRL number ...707 over ...708). So the watch writes a fetched CRL over the
 * on-disk one of the same CA only when it is not older (thisUpdate, then CRL Number). A list
 * on disk holds the file against an older one fetched only when all of these hold:
 * - OpenSSL accepts it now: its thisUpdate is not after `now`. One issued by a clock ahead by
 *   more than the day thisUpdate is backdated (BACKDATE_MS) is "not yet valid", refused with
 *   every certificate of its CA, and no list the server makes would pass it until the clock
 *   got there (it issues after no claim more than MAX_AHEAD_MS ahead): it is replaced by any.
 *   The bound is OpenSSL's own, not MAX_AHEAD_MS (23 h): a list between 23 and 24 hours ahead
 *   is in force, and one lacking its serials written over it re-admitted them at the reload
 *   (review of 2efa5c0). Such a list holds the file a day at most, and only against lists that
 *   lack one of its serials (the server's, made from every revocation it keeps, do not).
 * - Its signature verifies with a CA certificate given (`caPem`: client-ca.crt, what Mosquitto
 *   checks certificates with): a block with the CA's name and key id but not signed by it is
 *   no list of that CA (OpenSSL fails on it), and never holds the file (review of 2efa5c0).
 * - The fetched list does not list every serial it does: one that does re-admits nobody (after
 *   a clock put right the server issues by the clock again, older than the list from the clock
 *   ahead, but with every revocation since), and is taken.
 * Of several lists of one CA on disk (a file put together by hand), the newest that OpenSSL
 * accepts and that verifies is the one compared (OpenSSL goes by the newest it accepts); one
 * list per CA is written.
 *
 * Cost (review of 2efa5c0: both files fully decoded at each pass, 0.8 s on the thread at
 * 1,000,000 entries, and two serial Sets, 3.4 s and 200 MB, when the fetched list was older):
 * a large block is ordered from the base64 of its first and last few kilobytes only (the
 * header up to the entries, then the extensions after them); the whole of it is decoded only
 * when the on-disk list would hold the file (signature and serials), which is rare.
 */
import { X509Certificate, verify } from 'node:crypto';
import { signedParts, tlv } from './mosquitto-crl.ts';

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
}

/**
 * Whether a CRL file holds a list OpenSSL does not accept yet at `now` ("CRL is not yet valid":
 * its thisUpdate after the clock, and every certificate of its CA refused with it): one issued
 * by a clock more than a day ahead (thisUpdate is backdated a day), or read by a clock a day
 * behind. The watch asks for such a list again without If-None-Match (the server issues a new
 * list by its clock set right, but answered 304 to the same revocations, which gave back the
 * list from ahead until the next revocation or a watch restart), and writes what comes over it.
 * Not the lists 23-24 h ahead that the server reissues too (pki/revocation-list.ts
 * MAX_AHEAD_MS): they are in force, and asking for them without the tag downloaded the whole
 * list at every fetch, and rewrote it at every fetch when instances alternated (review of
 * 0675827).
 */
export function notYetValid(pem: string, now: number): boolean {
  return crlHeads(pem).some((h) => h.thisUpdate > now);
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
const BEGIN = '-----BEGIN X509 CRL-----';
const END = '-----END X509 CRL-----';
/** Base64 characters decoded from each end of a large block (multiples of 4): the header (the issuer's name) and the extensions with the signature (8192-bit RSA at most). */
const HEAD_CHARS = 8192;
const TAIL_CHARS = 2048;
/** A block shorter than this is decoded whole. */
const SMALL_BLOCK = 4 * (HEAD_CHARS + TAIL_CHARS);

/** The CRL blocks of a PEM file (as /-----BEGIN X509 CRL-----[^-]+-----END X509 CRL-----\n?/g finds them, without running a regular expression over 66 MB). */
function pemBlocks(pem: string): string[] {
  const out: string[] = [];
  for (let at = pem.indexOf(BEGIN); at >= 0; at = pem.indexOf(BEGIN, at)) {
    const body = at + BEGIN.length;
    const dash = pem.indexOf('-', body);
    if (dash < 0) break;
    if (dash === body || !pem.startsWith(END, dash)) {
      at = dash;
      continue;
    }
    const end = dash + END.length + (pem[dash + END.length] === '\n' ? 1 : 0);
    out.push(pem.slice(at, end));
    at = end;
  }
  return out;
}

/** The CRLs of a PEM file; blocks that cannot be read are left out. */
function crlHeads(pem: string): CrlHead[] {
  return pemBlocks(pem).map(crlHead).filter((h) => h !== undefined);
}

type Element = { tag: number; start: number; body: number; end: number };

/** Parts of a CRL's DER at their offsets in the whole: the whole, or its head and its tail. */
interface DerView {
  /** The element at `at` (`headerOnly`: its contents may lie beyond what is held, as the entries' do). */
  el(at: number, headerOnly?: boolean): Element | undefined;
  bytes(from: number, to: number): Buffer | undefined;
}

function viewOf(parts: { base: number; buf: Buffer }[], total: number): DerView {
  const seg = (from: number, to: number) => parts.find((p) => from >= p.base && to <= p.base + p.buf.length);
  return {
    el(at, headerOnly = false) {
      const p = seg(at, at + 2);
      const e = p && tlv(p.buf, at - p.base, headerOnly);
      if (!p || !e || p.base + e.end > total) return undefined;
      return { tag: e.tag, start: at, body: p.base + e.body, end: p.base + e.end };
    },
    bytes(from, to) {
      const p = seg(from, to);
      return p?.buf.subarray(from - p.base, to - p.base);
    },
  };
}

/** The whole DER of a PEM block (Node's base64 decoder skips the line breaks). */
function wholeDer(text: string): Buffer {
  return Buffer.from(text.slice(BEGIN.length, text.lastIndexOf(END)), 'base64');
}

/**
 * A view of a large block from its first HEAD_CHARS and last TAIL_CHARS base64 characters: a
 * run of whole 4-character groups from either end of the base64 decodes on its own.
 */
function endsView(text: string): DerView | undefined {
  const body = text.slice(BEGIN.length, text.lastIndexOf(END));
  const head = Buffer.from(body.slice(0, 2 * HEAD_CHARS).replace(/\s/g, '').slice(0, HEAD_CHARS), 'base64');
  const tailChars = body.slice(-2 * TAIL_CHARS).replace(/\s/g, '');
  const tail = Buffer.from(tailChars.slice(tailChars.length - Math.min(TAIL_CHARS, tailChars.length - (tailChars.length % 4))), 'base64');
  const outer = viewOf([{ base: 0, buf: head }], Infinity).el(0, true);
  if (!outer || outer.end < head.length + tail.length) return undefined;
  return viewOf([{ base: 0, buf: head }, { base: outer.end - tail.length, buf: tail }], outer.end);
}

/** RFC 5280 §5.1: CertificateList ::= SEQUENCE { tbsCertList, signatureAlgorithm, signatureValue }. */
function crlHead(text: string): CrlHead | undefined {
  if (text.length > SMALL_BLOCK) {
    const v = endsView(text);
    const h = v && headOf(v, text);
    if (h) return h;
  }
  const der = wholeDer(text);
  return headOf(viewOf([{ base: 0, buf: der }], der.length), text);
}

function headOf(v: DerView, text: string): CrlHead | undefined {
  const outer = v.el(0, true);
  const tbs = outer?.tag === 0x30 ? v.el(outer.body, true) : undefined;
  if (!tbs || tbs.tag !== 0x30) return undefined;
  // what follows the list must end it: signatureAlgorithm and signatureValue, up to the last byte
  // (a tail decoded from a file whose base64 is not what its header says is not read on)
  const alg = v.el(tbs.end);
  const sig = alg?.tag === 0x30 ? v.el(alg.end) : undefined;
  if (sig?.tag !== 0x03 || sig.end !== outer!.end) return undefined;
  let at = tbs.body;
  let e = v.el(at);
  if (e?.tag === 0x02) e = v.el((at = e.end)); // version
  if (e?.tag !== 0x30) return undefined; // signature AlgorithmIdentifier
  const issuer = v.el((at = e.end));
  if (issuer?.tag !== 0x30) return undefined;
  const thisUpdate = v.el((at = issuer.end));
  const thisMs = thisUpdate ? derTime(v.bytes(thisUpdate.body, thisUpdate.end), thisUpdate.tag) : undefined;
  if (!thisUpdate || thisMs === undefined) return undefined;
  // a list held only at its two ends (endsView): what is expected and not there is read again from the whole
  at = thisUpdate.end;
  e = at < tbs.end ? v.el(at, true) : undefined;
  if (e && (e.tag === 0x17 || e.tag === 0x18)) e = (at = e.end) < tbs.end ? v.el(at, true) : undefined; // nextUpdate
  if (e?.tag === 0x30) e = (at = e.end) < tbs.end ? v.el(at, true) : undefined; // revokedCertificates: skipped
  if (at < tbs.end && !e) return undefined;
  let number = -1n;
  let aki = '';
  if (e?.tag === 0xa0) {
    const x509 = v.bytes(e.start, e.end);
    if (!x509) return undefined;
    const o = e.start;
    const exts = tlv(x509, e.body - o);
    for (let x = exts?.tag === 0x30 ? tlv(x509, exts.body) : undefined; x && x.end <= exts!.end; x = x.end < exts!.end ? tlv(x509, x.end) : undefined) {
      const oid = tlv(x509, x.body);
      if (oid?.tag !== 0x06) continue;
      let val = tlv(x509, oid.end);
      if (val?.tag === 0x01) val = tlv(x509, val.end); // critical
      if (val?.tag !== 0x04) continue;
      const id = x509.subarray(oid.body, oid.end).toString('hex');
      if (id === OID_AUTHORITY_KEY_ID) aki = x509.subarray(val.body, val.end).toString('hex');
      if (id === OID_CRL_NUMBER) {
        const n = tlv(x509, val.body);
        if (n?.tag === 0x02 && n.end > n.body) number = BigInt(`0x${x509.subarray(n.body, n.end).toString('hex')}`);
      }
    }
  }
  const name = v.bytes(issuer.start, issuer.end);
  if (!name) return undefined;
  return { text, ca: `${name.toString('hex')}/${aki}`, thisUpdate: thisMs, number };
}

/** UTCTime (YYMMDDHHMMSSZ, RFC 5280 §4.1.2.5.1: YY < 50 is 20YY) or GeneralizedTime (YYYYMMDDHHMMSSZ), in ms. */
function derTime(b: Buffer | undefined, tag: number): number | undefined {
  const s = b?.toString('latin1') ?? '';
  const m = tag === 0x17 ? /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s) : tag === 0x18 ? /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s) : null;
  if (!m) return undefined;
  const y = tag === 0x17 ? (Number(m[1]) < 50 ? 2000 : 1900) + Number(m[1]) : Number(m[1]);
  return Date.UTC(y, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
}

/** Where a CRL's entries are in its DER (the contents of revokedCertificates: empty when it has none), or undefined when it cannot be read. */
function entriesOf(der: Buffer): { start: number; end: number } | undefined {
  const outer = tlv(der, 0);
  const tbs = outer?.tag === 0x30 ? tlv(der, outer.body) : undefined;
  if (!tbs || tbs.tag !== 0x30) return undefined;
  let e = tlv(der, tbs.body);
  if (e?.tag === 0x02) e = tlv(der, e.end); // version
  for (let k = 0; k < 3 && e; k++) e = e.end < tbs.end ? tlv(der, e.end) : undefined; // signature, issuer, thisUpdate
  if (e && (e.tag === 0x17 || e.tag === 0x18)) e = e.end < tbs.end ? tlv(der, e.end) : undefined; // nextUpdate
  return e?.tag === 0x30 ? { start: e.body, end: e.end } : { start: 0, end: 0 };
}

/** The serial (its INTEGER's contents) of the entry at `at`, and where the next entry starts. */
function serialAt(der: Buffer, at: number): { from: number; to: number; next: number } | undefined {
  const entry = tlv(der, at);
  const serial = entry?.tag === 0x30 ? tlv(der, entry.body) : undefined;
  return entry && serial?.tag === 0x02 ? { from: serial.body, to: serial.end, next: entry.end } : undefined;
}

/**
 * Whether `fetched` lists every serial `onDisk` does (DER of both). Lists of one encoder hold
 * their serials in one order (crl-der.ts sorts them), so one walk of both answers without a
 * Set; a serial the walk does not find is looked for in the whole fetched list, and only if it
 * is there (lists in different orders) is a Set made, of the fetched serials only.
 */
function listsEvery(fetched: Buffer, onDisk: Buffer): boolean {
  const fe = entriesOf(fetched);
  const de = entriesOf(onDisk);
  if (!fe || !de) return false;
  let fa = fe.start;
  let da = de.start;
  walk: while (da < de.end) {
    const s = serialAt(onDisk, da);
    if (!s) return false;
    while (fa < fe.end) {
      const g = serialAt(fetched, fa);
      if (!g) return false;
      fa = g.next;
      if (onDisk.compare(fetched, g.from, g.to, s.from, s.to) === 0) {
        da = s.next;
        continue walk;
      }
    }
    // not found after the last one found: missing (the older list fetched lacks it: the usual
    // answer here, given without a Set), or the two lists are in different orders
    for (let at = fe.start; at < fe.end; ) {
      const g = serialAt(fetched, at);
      if (!g) return false;
      if (onDisk.compare(fetched, g.from, g.to, s.from, s.to) === 0) break walk;
      at = g.next;
    }
    return false;
  }
  if (da >= de.end) return true;
  const have = new Set<string>();
  for (let at = fe.start; at < fe.end; ) {
    const g = serialAt(fetched, at);
    if (!g) return false;
    have.add(fetched.toString('latin1', g.from, g.to));
    at = g.next;
  }
  for (let at = de.start; at < de.end; ) {
    const s = serialAt(onDisk, at);
    if (!s || !have.has(onDisk.toString('latin1', s.from, s.to))) return false;
    at = s.next;
  }
  return true;
}

/** -1, 0 or 1: `a` issued before, with, or after `b` (thisUpdate, then CRL Number). */
function order(a: CrlHead, b: CrlHead): number {
  if (a.thisUpdate !== b.thisUpdate) return a.thisUpdate < b.thisUpdate ? -1 : 1;
  return a.number === b.number ? 0 : a.number < b.number ? -1 : 1;
}

/** Whether the CRL block `text` is signed by one of the CA certificates `caPem`. */
function signedByOneOf(text: string, caPem: string): boolean {
  const parts = signedParts(text);
  if (!parts) return false;
  return (caPem.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? []).some((pem) => {
    try {
      return verify('sha256', parts.tbs, new X509Certificate(pem).publicKey, parts.signature);
    } catch {
      return false;
    }
  });
}

/**
 * The text to write to crl.pem for the `fetched` CRLs when `onDisk` is what it holds: per CA,
 * the fetched CRL unless an on-disk one of that CA holds the file (module comment). CAs only
 * on disk are dropped (the fetched file is the CAs trusted now), CAs only fetched are taken.
 * `now`: the clock OpenSSL checks thisUpdate with (the watch's, beside Mosquitto); `caPem`:
 * the CA certificates an on-disk list must be signed by to be kept.
 */
export function newerCrls(fetched: string, onDisk: string | undefined, t: { now: number; caPem: string }): CrlChoice {
  const disk = new Map<string, CrlHead[]>();
  for (const h of crlHeads(onDisk ?? '')) disk.set(h.ca, [...(disk.get(h.ca) ?? []), h]);
  const kept: CrlChoice['kept'] = [];
  const blocks = pemBlocks(fetched).map((text) => {
    const f = crlHead(text);
    // newer than the fetched one and in force for OpenSSL now, the newest first
    const holding = f === undefined ? [] : (disk.get(f.ca) ?? []).filter((d) => order(f, d) < 0 && d.thisUpdate <= t.now).sort((a, b) => order(b, a));
    const d = holding.find((h) => signedByOneOf(h.text, t.caPem));
    if (!f || !d) return text;
    if (listsEvery(wholeDer(text), wholeDer(d.text))) return text; // older, but re-admits nobody
    kept.push({ thisUpdate: new Date(d.thisUpdate).toISOString(), crlNumber: String(d.number), fetchedThisUpdate: new Date(f.thisUpdate).toISOString(), fetchedCrlNumber: String(f.number) });
    return d.text.endsWith('\n') ? d.text : `${d.text}\n`;
  });
  return { pem: kept.length === 0 ? fetched : blocks.join(''), kept };
}
