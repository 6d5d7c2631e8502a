/**
 * The TLS material of the server's listeners (MQTTS, and HTTPS when turned on): the
 * operator's own certificate and key when configured, otherwise a server certificate issued
 * by Updraft's CA for the configured host names, kept in `<dataDir>/pki/` and reissued when
 * the host names change, when it is not the current CA's or not its key's, and when it has
 * expired or nears its end (`needsRenewal`). A running server asks again daily
 * (server/server-tls-renewal.ts): it runs for months, and a certificate checked at start only
 * expired under it, refused by every device (QA).
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { UpdraftError } from '../errors.ts';
import { writeFileAtomic } from '../util/atomic-file.ts';
import type { Logger } from '../util/logger.ts';
import type { CertificateAuthority } from './certificate-authority.ts';

/** Key and certificate chain of a TLS server, PEM. */
export interface ServerTls {
  key: string;
  cert: string;
}

const DAY_MS = 86_400_000;
/** Reissued with less than this left of a certificate's life: */
export const RENEW_FRACTION = 1 / 3;
/** ... or less than this (ms), whichever is more. */
export const RENEW_MIN_MS = 30 * DAY_MS;

/** When the first certificate of a PEM chain expires (ms since the epoch), undefined when it does not parse. */
export function certificateNotAfter(pem: string): number | undefined {
  try {
    return Date.parse(new X509Certificate(pem).validTo);
  } catch {
    return undefined;
  }
}

/**
 * Why the saved server certificate must be reissued at `nowMs`, or undefined when it is kept.
 * Renewed with a third of its life left (243 days of a 730-day certificate), and at least 30
 * days before its end: the daily check then has months to succeed, a failing one is logged
 * hundreds of times before devices notice, and the CA's private key is only used every 16
 * months or so. Not while the renewal would not move the end (the CA's own expiry caps it):
 * the CA is what must be replaced then, and that is warned about apart.
 */
export function needsRenewal(pem: string, keyPem: string, ca: CertificateAuthority, nowMs = Date.now()): string | undefined {
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(pem);
  } catch {
    return 'it is not a PEM certificate';
  }
  if (!ca.issued(pem)) return 'it was not issued by the current CA (pki/ca.crt)';
  try {
    if (!x509.checkPrivateKey(createPrivateKey(keyPem))) return 'pki/server.key is not its key';
  } catch {
    return 'pki/server.key is not a PEM private key';
  }
  const notBefore = Date.parse(x509.validFrom);
  const notAfter = Date.parse(x509.validTo);
  if (notAfter <= nowMs) return `it expired at ${new Date(notAfter).toISOString()}`;
  const left = notAfter - nowMs;
  if (left >= Math.max((notAfter - notBefore) * RENEW_FRACTION, RENEW_MIN_MS)) return undefined;
  // a new one would end where this one does (a day's slack): nothing gained
  if (ca.notAfter <= notAfter + DAY_MS) return undefined;
  return `it expires at ${new Date(notAfter).toISOString()} (in ${Math.floor(left / DAY_MS)} days)`;
}

/**
 * Reads the configured files, or the server certificate issued (and kept) from the CA for
 * `hosts`, reissued when `needsRenewal` says so (an info line names why).
 */
export async function resolveServerTls(opts: { dataDir: string; ca: CertificateAuthority; certFile: string; keyFile: string; hosts: string[]; what: string; logger?: Logger; now?: number }): Promise<ServerTls> {
  if (opts.certFile || opts.keyFile) {
    if (!opts.certFile || !opts.keyFile) throw new UpdraftError('CONFIG', `${opts.what}: give both a TLS certificate and its key, or neither (then one is issued by Updraft's CA)`);
    // each file named by its setting and flag, as a bad one is (tls-files-check.ts): a missing
    // one said 'http.tls: cannot read the TLS certificate or key' with exit code 1
    const prefix = opts.what.replace(/\.tls$/, '');
    const read = (file: string, setting: string, flag: string) =>
      readFile(file, 'utf8').catch((err: unknown) => {
        throw new UpdraftError('CONFIG', `${prefix}.${setting} (--${prefix}-${flag} ${file}) cannot be read: ${(err as Error).message}`, { cause: err, status: 400 });
      });
    const cert = await read(opts.certFile, 'tlsCert', 'tls-cert');
    return { cert, key: await read(opts.keyFile, 'tlsKey', 'tls-key') };
  }
  const dir = path.join(path.resolve(opts.dataDir), 'pki');
  const files = { cert: path.join(dir, 'server.crt'), key: path.join(dir, 'server.key'), hosts: path.join(dir, 'server-hosts.json') };
  const hosts = [...new Set(opts.hosts)];
  let saved: ServerTls | undefined;
  let why: string | undefined;
  try {
    const [cert, key, savedHosts] = await Promise.all([readFile(files.cert, 'utf8'), readFile(files.key, 'utf8'), readFile(files.hosts, 'utf8')]);
    saved = { cert, key };
    why = JSON.stringify(JSON.parse(savedHosts)) !== JSON.stringify(hosts) ? 'the host names changed' : needsRenewal(cert, key, opts.ca, opts.now);
    if (why === undefined) return saved;
  } catch {
    /* absent or unreadable: issue a new one */
  }
  let issued;
  try {
    issued = await opts.ca.issueServerCertificate(hosts);
  } catch (err) {
    // an expired CA issues nothing: what was served goes on being served, said loudly
    if (!saved || (err as UpdraftError).code !== 'CONFLICT') throw err;
    opts.logger?.error(`the server certificate is not reissued: ${(err as Error).message}`, { reason: why });
    return saved;
  }
  await writeFileAtomic(files.key, issued.privateKey, 0o600);
  await writeFileAtomic(files.cert, issued.certificate, 0o644);
  await writeFileAtomic(files.hosts, JSON.stringify(hosts), 0o644);
  if (saved) opts.logger?.info('server certificate reissued by the CA', { reason: why, hosts, notAfter: new Date(certificateNotAfter(issued.certificate) ?? 0).toISOString() });
  return { cert: issued.certificate, key: issued.privateKey };
}
