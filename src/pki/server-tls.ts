/**
 * The TLS material of the server's listeners (MQTTS, and HTTPS when turned on): the
 * operator's own certificate and key when configured, otherwise a server certificate issued
 * by Updraft's CA for the configured host names, kept in `<dataDir>/pki/` and reissued only
 * when the host names change.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { UpdraftError } from '../errors.ts';
import { writeFileAtomic } from '../util/atomic-file.ts';
import type { CertificateAuthority } from './certificate-authority.ts';

/** Key and certificate chain of a TLS server, PEM. */
export interface ServerTls {
  key: string;
  cert: string;
}

/** Reads the configured files, or issues (and keeps) a server certificate from the CA for `hosts`. */
export async function resolveServerTls(opts: { dataDir: string; ca: CertificateAuthority; certFile: string; keyFile: string; hosts: string[]; what: string }): Promise<ServerTls> {
  if (opts.certFile || opts.keyFile) {
    if (!opts.certFile || !opts.keyFile) throw new UpdraftError('CONFIG', `${opts.what}: give both a TLS certificate and its key, or neither (then one is issued by Updraft's CA)`);
    try {
      const [cert, key] = await Promise.all([readFile(opts.certFile, 'utf8'), readFile(opts.keyFile, 'utf8')]);
      return { cert, key };
    } catch (err) {
      throw new UpdraftError('CONFIG', `${opts.what}: cannot read the TLS certificate or key: ${(err as Error).message}`, { cause: err });
    }
  }
  const dir = path.join(path.resolve(opts.dataDir), 'pki');
  const files = { cert: path.join(dir, 'server.crt'), key: path.join(dir, 'server.key'), hosts: path.join(dir, 'server-hosts.json') };
  const hosts = [...new Set(opts.hosts)];
  try {
    const [cert, key, saved] = await Promise.all([readFile(files.cert, 'utf8'), readFile(files.key, 'utf8'), readFile(files.hosts, 'utf8')]);
    if (JSON.stringify(JSON.parse(saved)) === JSON.stringify(hosts) && cert.length > 0) return { cert, key };
  } catch {
    /* absent or unreadable: issue a new one */
  }
  const issued = await opts.ca.issueServerCertificate(hosts);
  await writeFileAtomic(files.key, issued.privateKey, 0o600);
  await writeFileAtomic(files.cert, issued.certificate, 0o644);
  await writeFileAtomic(files.hosts, JSON.stringify(hosts), 0o644);
  return { cert: issued.certificate, key: issued.privateKey };
}
