/**
 * The crlfile of `updraft broker mosquitto-config --updraft-ca` (`crl.pem` beside the other
 * files): the CRL of deleted devices' certificates (pki/revocation-list.ts), from the server
 * (`GET /api/v1/broker/crl`, signed where the CA keys are) or, with `--offline`, made from the
 * data directory's pki/ and the store. When none can be made without locking devices out (a
 * previous CA whose key is gone) there is no crlfile, and the reason is said.
 */
import { X509Certificate, createHash, verify } from 'node:crypto';
import type { UpdraftError } from '../errors.ts';
import type { ApiClient } from './api-client.ts';

/** The crlfile's name in --out. */
export const CRL_FILE = 'crl.pem';
/** The device listener's cafile in --out (`--updraft-ca`: Updraft's CAs, cli/broker-command.ts writes it). */
export const CLIENT_CA_FILE = 'client-ca.crt';

/** A CRL file made, or why none is. */
export type CrlOutcome = { ok: true; pem: string; nextUpdate: number; revoked: number; cas: number; digest: string; issuers: string[] } | { ok: false; reason: string };

/**
 * The CRL as the server signs it; `ok: false` when it says it cannot make one (409), or is
 * older than the route (404). `retry: false` (the watch, which retries itself): a server
 * that cannot answer fails at once rather than being waited for. `held`, the CRL an earlier
 * call gave: its digest is sent (If-None-Match), and it is given back when the server says
 * the CAs and revocations are the same (304, no body: the list is 6.4 MB of JSON at
 * 100,000 revocations).
 */
export async function crlFromServer(api: ApiClient, retry = true, held?: CrlOutcome): Promise<CrlOutcome> {
  try {
    const headers = held?.ok ? { headers: { 'if-none-match': `"${held.digest}"` } } : {};
    const r = await api.call<{ crl: string; nextUpdate: string; revoked: number; cas: number; digest: string; issuers: string[] }>('GET', '/api/v1/broker/crl', undefined, { retry, ...headers });
    return { ok: true, pem: r.crl, nextUpdate: Date.parse(r.nextUpdate), revoked: r.revoked, cas: r.cas, digest: r.digest, issuers: r.issuers };
  } catch (err) {
    const status = (err as UpdraftError).status;
    if (status === 304 && held?.ok) return held;
    if (status === 409) return { ok: false, reason: (err as Error).message };
    if (status === 404) return { ok: false, reason: 'the server has no CRL (GET /api/v1/broker/crl: an Updraft older than 2026-12-06): upgrade it' };
    throw err;
  }
}

/**
 * `crl` when it has a CRL for every CA of `clientCaPem` (the cafile written beside it, read
 * from the local --data-dir, which may not be the server's copy of pki/); otherwise
 * `ok: false`: OpenSSL would refuse every certificate of a CA without a CRL.
 */
export function coveringBundle(crl: CrlOutcome, clientCaPem: string): CrlOutcome {
  if (!crl.ok) return crl;
  const cas = clientCaPem.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? [];
  const missing = cas.map((pem) => new X509Certificate(pem)).filter((x) => !crl.issuers.includes(createHash('sha256').update(x.raw).digest('hex')));
  if (missing.length === 0) return crl;
  return { ok: false, reason: `the CRL has none for ${missing.map((x) => x.subject.replace(/\n/g, ', ')).join(' and ')} of ${CLIENT_CA_FILE}: the server's CAs differ from --data-dir's pki/ (copy the server's pki/ certificates there, after a rollover or drop-previous)` };
}

/** One line on the crlfile written, or on its absence. */
export function crlSummary(c: CrlOutcome): string {
  if (!c.ok) return `no ${CRL_FILE} (a deleted device's certificate still gets into Mosquitto): ${c.reason}`;
  return `${CRL_FILE}: ${c.revoked} certificate(s) of deleted devices revoked, one CRL for each of ${c.cas} CA(s), valid as long as its CA (until ${new Date(c.nextUpdate).toISOString()}): regenerate and reload Mosquitto (kill -HUP: it rereads the crlfile) after each deletion (or keep it current with --watch --reload-command)`;
}

/**
 * Whether the CRL file `crlPem` (as it is on disk: this watch's, or a one-off run's since)
 * holds a CRL signed by every CA of `caPem`: OpenSSL, given a crlfile, refuses every
 * certificate of a CA it has no CRL of. Checked by signature, not by what was last written.
 */
export function crlFileCovers(crlPem: string | undefined, caPem: string): boolean {
  if (crlPem === undefined) return false;
  const cas = caPem.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? [];
  const crls = (crlPem.match(/-----BEGIN X509 CRL-----[^-]+-----END X509 CRL-----/g) ?? []).map(signedParts).filter((c) => c !== undefined);
  if (cas.length === 0) return false;
  return cas.every((pem) => {
    const key = new X509Certificate(pem).publicKey;
    return crls.some((c) => {
      try {
        return verify('sha256', c.tbs, key, c.signature);
      } catch {
        return false;
      }
    });
  });
}

/** sha256WithRSAEncryption and ecdsa-with-SHA256 (DER of their OIDs): what pki/revocation-list.ts signs with. */
const SHA256_SIGNATURES = ['06092a864886f70d01010b', '06082a8648ce3d040302'];

/** The signed part and the signature of a PEM CRL (RFC 5280 §5.1: SEQUENCE { tbsCertList, signatureAlgorithm, signatureValue }); undefined when unreadable or not SHA-256. */
export function signedParts(pem: string): { tbs: Buffer; signature: Buffer } | undefined {
  const der = Buffer.from(pem.replace(/-----[A-Z0-9 ]+-----|\s/g, ''), 'base64');
  const outer = tlv(der, 0);
  if (!outer || outer.tag !== 0x30) return undefined;
  const tbs = tlv(der, outer.body);
  const alg = tbs && tlv(der, tbs.end);
  const sig = alg && tlv(der, alg.end);
  if (!tbs || !alg || !sig || sig.tag !== 0x03 || der[sig.body] !== 0) return undefined;
  const algOid = tlv(der, alg.body);
  if (!algOid || !SHA256_SIGNATURES.includes(der.subarray(alg.body, algOid.end).toString('hex'))) return undefined;
  return { tbs: der.subarray(tbs.start, tbs.end), signature: der.subarray(sig.body + 1, sig.end) };
}

/**
 * One DER element at `at`: its tag, where it starts, its contents start and where it ends.
 * `headerOnly`: its contents may end past `der` (a part of a larger DER: crl-order.ts reads a
 * large list's head and tail only).
 */
export function tlv(der: Buffer, at: number, headerOnly = false): { tag: number; start: number; body: number; end: number } | undefined {
  if (at + 2 > der.length) return undefined;
  const tag = der[at]!;
  let len = der[at + 1]!;
  let body = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || body + n > der.length) return undefined;
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + der[body + i]!;
    body += n;
  }
  const end = body + len;
  return end > der.length && !headerOnly ? undefined : { tag, start: at, body, end };
}
