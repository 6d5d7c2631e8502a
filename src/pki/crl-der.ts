/**
 * The DER of a CRL (RFC 5280 §5, X.509 v2) written straight into Buffers: the revoked
 * entries into one preallocated buffer, no ASN.1 object per entry. The forge tree buildCrl
 * used to make (an object per TLV, its DER as binary strings) held the server's thread 1.6 to
 * 2.9 s at 100,000 entries and 20 s at 1,000,000 with a 2.8 GB RSS peak, and ran out of
 * heap under --max-old-space-size=1024 (QA, 2026-12). The output is byte-identical to what
 * that tree gave (test/pki/crl-der.test.ts keeps the forge builder as the reference); forge
 * still parses the CA certificate, once per CA, for its subject and key identifier.
 *
 * Plain functions with no imports from the rest of the server but errors.ts: crl-worker.ts
 * loads this file in a worker thread.
 */
import { createHash, sign, type KeyObject } from 'node:crypto';
import forge from 'node-forge';
import { UpdraftError } from '../errors.ts';

/** What a CRL is encoded from: the entries as two parallel arrays (compact to pass to a worker). */
export interface CrlDerInput {
  /** The issuing CA's certificate (PEM). */
  caCertificate: string;
  /** Its private key (RSA: the list is signed sha256WithRSAEncryption). */
  caKey: KeyObject;
  /** The revoked serials (hex), in any order. */
  serials: readonly string[];
  /** When each was revoked (ms), by index of `serials`. */
  revokedAt: ArrayLike<number>;
  /** When the list is issued (ms): its CRL number is this second. */
  issuedAt: number;
  /** thisUpdate (ms). */
  thisUpdate: number;
  /** nextUpdate (ms); default the CA's notAfter. */
  nextUpdate?: number;
}

/** What is read from a CA certificate, once per certificate. */
interface CaParts {
  issuer: Buffer;
  keyId: Buffer;
  notAfter: number;
}

/** The key identifier of the CA certificate (its subjectKeyIdentifier, else SHA-1 of its public key, RFC 5280 §4.2.1.2 method 1). */
function keyIdentifier(cert: forge.pki.Certificate): Buffer {
  const ski = cert.getExtension('subjectKeyIdentifier') as { subjectKeyIdentifier?: string } | null;
  if (ski?.subjectKeyIdentifier) return Buffer.from(ski.subjectKeyIdentifier, 'hex');
  const spki = forge.asn1.toDer(forge.pki.publicKeyToAsn1(cert.publicKey)).getBytes();
  const bits = (forge.asn1.fromDer(spki).value as forge.asn1.Asn1[])[1]!.value as string;
  return createHash('sha1').update(Buffer.from(bits.slice(1), 'binary')).digest();
}

// a server signs for one or two CAs (a rollover): a handful of entries at most
const caCache = new Map<string, CaParts>();
function caParts(pem: string): CaParts {
  let parts = caCache.get(pem);
  if (parts) return parts;
  const ca = forge.pki.certificateFromPem(pem);
  // the subject as forge encodes it (what the lists carried so far), not the certificate's own bytes
  const issuer = Buffer.from(forge.asn1.toDer(forge.pki.distinguishedNameToAsn1(ca.subject)).getBytes(), 'binary');
  parts = { issuer, keyId: keyIdentifier(ca), notAfter: ca.validity.notAfter.getTime() };
  if (caCache.size >= 8) caCache.clear();
  caCache.set(pem, parts);
  return parts;
}

/** The DER length octets of `n`. */
function lengthOctets(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const b: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) b.unshift(v & 0xff);
  return Buffer.from([0x80 | b.length, ...b]);
}

/** The size of a TLV whose contents are `n` bytes. */
const tlvSize = (n: number): number => 1 + lengthOctets(n).length + n;

/** A TLV of small parts (the header, the extensions): not for entries. */
function tlv(tag: number, ...contents: Buffer[]): Buffer {
  const body = Buffer.concat(contents);
  return Buffer.concat([Buffer.from([tag]), lengthOctets(body.length), body]);
}

/** Writes the header of a TLV of `n` content bytes at `o`; returns the offset after it. */
function writeHeader(buf: Buffer, o: number, tag: number, n: number): number {
  buf[o++] = tag;
  return o + lengthOctets(n).copy(buf, o);
}

const SHA256_RSA = tlv(0x30, tlv(0x06, Buffer.from('2a864886f70d01010b', 'hex')), Buffer.from([0x05, 0x00]));
const V2 = Buffer.from([0x02, 0x01, 0x01]);
const OID_CRL_NUMBER = tlv(0x06, Buffer.from([0x55, 0x1d, 0x14]));
const OID_AUTHORITY_KEY_ID = tlv(0x06, Buffer.from([0x55, 0x1d, 0x23]));
/** crlEntryExtensions of every entry: reasonCode cessationOfOperation (RFC 5280 §5.3.1, the device was deleted). */
const REASON = tlv(0x30, tlv(0x30, tlv(0x06, Buffer.from([0x55, 0x1d, 0x15])), tlv(0x04, Buffer.from([0x0a, 0x01, 0x05]))));

const badSerial = (hex: string) => new UpdraftError('BAD_REQUEST', `"${hex}" is not a certificate serial number`);
/** The value of a hex digit's char code, -1 for any other character (dropped, as `replace(/[^0-9a-f]/gi, '')` did). */
function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  return -1;
}

/** Room per serial: 21 bytes (42 hex digits at most) and a 00 before a high bit. */
const SERIAL_SLOT = 22;

/**
 * Writes the contents of the positive INTEGER of a hex serial into `buf` within the slot at
 * `slot` (leading zeros dropped, a 00 put back before a high bit); returns [start, length].
 */
function serialInto(hex: string, buf: Buffer, slot: number): [number, number] {
  let digits = 0;
  for (let i = 0; i < hex.length; i++) if (hexValue(hex.charCodeAt(i)) >= 0) digits++;
  if (digits === 0 || digits > 42) throw badSerial(hex);
  const bytes = (digits + 1) >> 1;
  const first = slot + 1;
  // an odd count of digits starts with a byte of one digit (a 0 before it)
  let o = first;
  let lone = digits % 2 === 1;
  let high = -1;
  for (let i = 0; i < hex.length; i++) {
    const v = hexValue(hex.charCodeAt(i));
    if (v < 0) continue;
    if (lone) {
      buf[o++] = v;
      lone = false;
    } else if (high < 0) high = v;
    else {
      buf[o++] = (high << 4) | v;
      high = -1;
    }
  }
  let s = first;
  const end = first + bytes;
  while (s < end - 1 && buf[s] === 0) s++;
  if (buf[s]! & 0x80) buf[--s] = 0;
  return [s, end - s];
}

/** A positive INTEGER TLV from a hex serial (the CRL number). */
function serialInteger(hex: string): Buffer {
  const slot = Buffer.alloc(SERIAL_SLOT + 1);
  const [s, n] = serialInto(hex, slot, 0);
  return tlv(0x02, slot.subarray(s, s + n));
}

const date = new Date(0);
/** The year digits as forge wrote them (dateToUtcTime, dateToGeneralizedTime): padded to two. */
const pad2 = (s: string): string => (s.length < 2 ? `0${s}` : s);
let yearOf = NaN;
let yearUtc = true;
let yearDigits = '';
/** Sets `date` to the second of `ms` and the year's digits and time type to its year's. */
function setTime(ms: number): void {
  if (!Number.isFinite(ms)) throw new UpdraftError('BAD_REQUEST', `${ms} is not a time for a CRL`);
  date.setTime(Math.floor(ms / 1000) * 1000);
  const year = date.getUTCFullYear();
  if (year === yearOf) return;
  yearOf = year;
  // RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050
  yearUtc = year < 2050;
  yearDigits = pad2(yearUtc ? String(year).substring(2) : String(year));
}

/** The size of the time TLV of `ms`. */
function timeSize(ms: number): number {
  setTime(ms);
  return 2 + yearDigits.length + 11;
}

/** Writes the time TLV of `ms` at `o`; returns the offset after it. */
function writeTime(buf: Buffer, o: number, ms: number): number {
  setTime(ms);
  buf[o++] = yearUtc ? 0x17 : 0x18;
  buf[o++] = yearDigits.length + 11;
  for (let i = 0; i < yearDigits.length; i++) buf[o++] = yearDigits.charCodeAt(i);
  o = twoDigits(buf, o, date.getUTCMonth() + 1);
  o = twoDigits(buf, o, date.getUTCDate());
  o = twoDigits(buf, o, date.getUTCHours());
  o = twoDigits(buf, o, date.getUTCMinutes());
  o = twoDigits(buf, o, date.getUTCSeconds());
  buf[o++] = 0x5a; // Z
  return o;
}
function twoDigits(buf: Buffer, o: number, v: number): number {
  buf[o] = 0x30 + ((v / 10) | 0);
  buf[o + 1] = 0x30 + (v % 10);
  return o + 2;
}
function timeTlv(ms: number): Buffer {
  const b = Buffer.alloc(timeSize(ms));
  writeTime(b, 0, ms);
  return b;
}

/** The DER of the CRL of `input`, signed with the CA's key. */
export function encodeCrlDer(input: CrlDerInput): Buffer {
  const n = input.serials.length;
  if (input.revokedAt.length !== n) throw new UpdraftError('BAD_REQUEST', `${n} serials but ${input.revokedAt.length} revocation times`);
  const ca = caParts(input.caCertificate);
  // sorted by serial (as strings, the same as before; ties by index: a stable sort): the same
  // revocations make the same list, whatever order the store gave
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  const serials = input.serials;
  order.sort((a, b) => {
    const x = serials[a]!;
    const y = serials[b]!;
    return x < y ? -1 : x > y ? 1 : a - b;
  });
  // pass 1: each serial's INTEGER into a scratch slot, and the size of everything
  const scratch = Buffer.allocUnsafe(n * (SERIAL_SLOT + 1));
  const start = new Uint32Array(n);
  const len = new Uint8Array(n);
  const timeLen = new Uint8Array(n);
  let entriesSize = 0;
  for (let k = 0; k < n; k++) {
    const i = order[k]!;
    const [s, l] = serialInto(serials[i]!, scratch, k * (SERIAL_SLOT + 1));
    start[k] = s;
    len[k] = l;
    // SEQUENCE { INTEGER, Time, SEQUENCE { reasonCode } }: under 128 bytes, a short length
    timeLen[k] = timeSize(input.revokedAt[i]!);
    entriesSize += 2 + 2 + l + timeLen[k]! + REASON.length;
  }
  const crlNumber = serialInteger(Math.floor(input.issuedAt / 1000).toString(16));
  const aki = tlv(0x30, OID_AUTHORITY_KEY_ID, tlv(0x04, tlv(0x30, tlv(0x80, ca.keyId))));
  const extensions = tlv(0xa0, tlv(0x30, aki, tlv(0x30, OID_CRL_NUMBER, tlv(0x04, crlNumber))));
  const head = Buffer.concat([V2, SHA256_RSA, ca.issuer, timeTlv(input.thisUpdate), timeTlv(input.nextUpdate ?? ca.notAfter)]);
  // an empty list is left out, not written as an empty SEQUENCE (§5.1.2.6)
  const listSize = n > 0 ? tlvSize(entriesSize) : 0;
  const tbsContent = head.length + listSize + extensions.length;
  const tbsSize = tlvSize(tbsContent);
  // one buffer: room for the outer SEQUENCE's header before the TBS, and for the algorithm
  // and the signature after it (8192-bit RSA at most)
  const ROOM = 6;
  const buf = Buffer.allocUnsafe(ROOM + tbsSize + SHA256_RSA.length + 6 + 1024);
  let o = writeHeader(buf, ROOM, 0x30, tbsContent);
  o += head.copy(buf, o);
  if (n > 0) {
    o = writeHeader(buf, o, 0x30, entriesSize);
    for (let k = 0; k < n; k++) {
      const l = len[k]!;
      buf[o++] = 0x30;
      buf[o++] = 2 + l + timeLen[k]! + REASON.length;
      buf[o++] = 0x02;
      buf[o++] = l;
      o += scratch.copy(buf, o, start[k]!, start[k]! + l);
      o = writeTime(buf, o, input.revokedAt[order[k]!]!);
      o += REASON.copy(buf, o);
    }
  }
  o += extensions.copy(buf, o);
  const tbs = buf.subarray(ROOM, o);
  const signature = sign('sha256', tbs, input.caKey);
  if (signature.length > 1024) throw new UpdraftError('CONFIG', `the CA key's signatures (${signature.length} bytes) are too long for a CRL`);
  o += SHA256_RSA.copy(buf, o);
  o = writeHeader(buf, o, 0x03, signature.length + 1);
  buf[o++] = 0;
  o += signature.copy(buf, o);
  const outer = lengthOctets(o - ROOM);
  const begin = ROOM - 1 - outer.length;
  buf[begin] = 0x30;
  outer.copy(buf, begin + 1);
  return buf.subarray(begin, o);
}

const PEM_BEGIN = Buffer.from('-----BEGIN X509 CRL-----\n');
const PEM_END = Buffer.from('-----END X509 CRL-----\n');
/** Bytes base64-encoded at a time: 1,024 lines of 64 characters. */
const CHUNK = 48 * 1024;

/**
 * The PEM of a DER CRL, in a Buffer (ASCII) with its own ArrayBuffer (so a worker can
 * transfer it): base64 in lines of 64, as `toString('base64').replace(/.{1,64}/g, '$&\n')`.
 */
export function crlPemBytes(der: Buffer): Buffer {
  const chars = Math.ceil(der.length / 3) * 4;
  const size = PEM_BEGIN.length + chars + Math.ceil(chars / 64) + PEM_END.length;
  const pem = Buffer.from(new ArrayBuffer(size));
  let o = PEM_BEGIN.copy(pem, 0);
  const line = Buffer.allocUnsafe(CHUNK / 3 * 4);
  for (let a = 0; a < der.length; a += CHUNK) {
    const n = line.write(der.toString('base64', a, Math.min(a + CHUNK, der.length)), 0, 'latin1');
    for (let i = 0; i < n; i += 64) {
      o += line.copy(pem, o, i, Math.min(i + 64, n));
      pem[o++] = 0x0a;
    }
  }
  o += PEM_END.copy(pem, o);
  if (o !== size) throw new UpdraftError('INTERNAL', `CRL PEM of ${o} bytes, ${size} expected`);
  return pem;
}

/** The CRL (PEM, ASCII bytes) of `input`, signed with the CA's key. */
export function encodeCrl(input: CrlDerInput): Buffer {
  return crlPemBytes(encodeCrlDer(input));
}
