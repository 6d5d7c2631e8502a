/**
 * The reference for src/pki/crl-der.ts: the CRL as src/pki/revocation-list.ts built it up to
 * ad43bfb, a node-forge asn1 tree per entry (slow and memory-hungry at scale, which is why it
 * was replaced), kept here unchanged so that tests can check the Buffer encoder against it
 * byte for byte (RSA PKCS#1 v1.5 signatures are deterministic).
 */
import { createHash, sign } from 'node:crypto';
import forge from 'node-forge';
import { UpdraftError } from '../../src/errors.ts';
import { BACKDATE_MS } from '../../src/pki/certificate-authority.ts';
import type { CrlInput } from '../../src/pki/revocation-list.ts';

const { asn1 } = forge;
const U = asn1.Class.UNIVERSAL;
const T = asn1.Type;

/** RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050. */
function time(ms: number): forge.asn1.Asn1 {
  const d = new Date(Math.floor(ms / 1000) * 1000);
  return d.getUTCFullYear() < 2050 ? asn1.create(U, T.UTCTIME, false, asn1.dateToUtcTime(d)) : asn1.create(U, T.GENERALIZEDTIME, false, asn1.dateToGeneralizedTime(d));
}

/** A positive INTEGER from a hex serial (leading zeros dropped, a 00 put back before a high bit). */
function serialInteger(hex: string): forge.asn1.Asn1 {
  const clean = hex.replace(/[^0-9a-f]/gi, '').toLowerCase();
  if (clean === '' || clean.length > 42) throw new UpdraftError('BAD_REQUEST', `"${hex}" is not a certificate serial number`);
  let bytes = Buffer.from(clean.length % 2 ? `0${clean}` : clean, 'hex');
  let i = 0;
  while (i < bytes.length - 1 && bytes[i] === 0) i++;
  bytes = bytes.subarray(i);
  if (bytes[0]! & 0x80) bytes = Buffer.concat([Buffer.from([0]), bytes]);
  return asn1.create(U, T.INTEGER, false, bytes.toString('binary'));
}

function oid(id: string): forge.asn1.Asn1 {
  return asn1.create(U, T.OID, false, asn1.oidToDer(id).getBytes());
}

function extension(id: string, value: forge.asn1.Asn1): forge.asn1.Asn1 {
  return asn1.create(U, T.SEQUENCE, true, [oid(id), asn1.create(U, T.OCTETSTRING, false, asn1.toDer(value).getBytes())]);
}

/** The key identifier of the CA certificate (its subjectKeyIdentifier, else SHA-1 of its public key, RFC 5280 §4.2.1.2 method 1). */
function keyIdentifier(cert: forge.pki.Certificate): string {
  const ski = cert.getExtension('subjectKeyIdentifier') as { subjectKeyIdentifier?: string } | null;
  if (ski?.subjectKeyIdentifier) return Buffer.from(ski.subjectKeyIdentifier, 'hex').toString('binary');
  const spki = asn1.toDer(forge.pki.publicKeyToAsn1(cert.publicKey)).getBytes();
  const bits = (asn1.fromDer(spki).value as forge.asn1.Asn1[])[1]!.value as string;
  return createHash('sha1').update(Buffer.from(bits.slice(1), 'binary')).digest().toString('binary');
}

const SHA256_RSA = '1.2.840.113549.1.1.11';
const CRL_NUMBER = '2.5.29.20';
const AUTHORITY_KEY_ID = '2.5.29.35';
const REASON_CODE = '2.5.29.21';
/** CRLReason cessationOfOperation (RFC 5280 §5.3.1): the device was deleted. */
const CESSATION_OF_OPERATION = 5;

/** The CRL (PEM) of `input` as buildCrl built it with forge.asn1 trees up to ad43bfb. */
export function buildCrlWithForge(input: CrlInput): string {
  const issuedAt = input.issuedAt ?? Date.now();
  const ca = forge.pki.certificateFromPem(input.caCertificate);
  const nextUpdate = input.nextUpdate ?? ca.validity.notAfter.getTime();
  const algorithm = asn1.create(U, T.SEQUENCE, true, [oid(SHA256_RSA), asn1.create(U, T.NULL, false, '')]);
  // sorted by serial: the same revocations make the same list, whatever order the store gave
  const entries = [...input.entries].sort((a, b) => (a.serial < b.serial ? -1 : a.serial > b.serial ? 1 : 0));
  const revoked = entries.map((e) =>
    asn1.create(U, T.SEQUENCE, true, [
      serialInteger(e.serial),
      time(e.revokedAt),
      asn1.create(U, T.SEQUENCE, true, [extension(REASON_CODE, asn1.create(U, T.ENUMERATED, false, String.fromCharCode(CESSATION_OF_OPERATION)))]),
    ]),
  );
  // RFC 5280 §5.2: a conforming CRL issuer includes the authority key identifier and a CRL
  // number, increasing: the second of issue is (two lists of one second hold the same)
  const crlNumber = serialInteger(Math.floor(issuedAt / 1000).toString(16));
  const aki = asn1.create(U, T.SEQUENCE, true, [asn1.create(asn1.Class.CONTEXT_SPECIFIC, 0, false, keyIdentifier(ca))]);
  const tbs = asn1.create(U, T.SEQUENCE, true, [
    asn1.create(U, T.INTEGER, false, String.fromCharCode(1)), // v2
    algorithm,
    forge.pki.distinguishedNameToAsn1(ca.subject),
    time(issuedAt - BACKDATE_MS),
    time(nextUpdate),
    // an empty list is left out, not written as an empty SEQUENCE (§5.1.2.6)
    ...(revoked.length > 0 ? [asn1.create(U, T.SEQUENCE, true, revoked)] : []),
    asn1.create(asn1.Class.CONTEXT_SPECIFIC, 0, true, [asn1.create(U, T.SEQUENCE, true, [extension(AUTHORITY_KEY_ID, aki), extension(CRL_NUMBER, crlNumber)])]),
  ]);
  const tbsDer = Buffer.from(asn1.toDer(tbs).getBytes(), 'binary');
  const signature = sign('sha256', tbsDer, input.caKey);
  const crl = asn1.create(U, T.SEQUENCE, true, [tbs, algorithm, asn1.create(U, T.BITSTRING, false, `\0${signature.toString('binary')}`)]);
  const der = Buffer.from(asn1.toDer(crl).getBytes(), 'binary');
  const b64 = der.toString('base64').replace(/.{1,64}/g, '$&\n');
  return `-----BEGIN X509 CRL-----\n${b64}-----END X509 CRL-----\n`;
}
