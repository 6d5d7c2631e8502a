/**
 * The key material the composition root wires in (issue 5), loaded or created on start so
 * that `npm start` just works: the software signing key (Ed25519), Updraft's CA, and the TLS
 * material of the MQTTS and (optional) HTTPS listeners.
 */
import path from 'node:path';
import type { UpdraftConfig } from '../config/schema.ts';
import { loadOrCreateCa, type CertificateAuthority } from '../pki/certificate-authority.ts';
import { resolveServerTls, type ServerTls } from '../pki/server-tls.ts';
import { ManifestSigner } from '../signing/manifest-signer.ts';
import { loadKeyCertificate } from '../signing/root-key.ts';
import { loadOrCreateSigningKey, signingKeyPaths, type SoftwareSigningKey } from '../signing/signing-key.ts';
import type { Logger } from '../util/logger.ts';
import { readStoreKind, recordStoreKind, STORE_KIND_FILE } from './store-kind.ts';
import { checkTlsFiles, type TlsFileSettings } from './tls-files-check.ts';

/** What `loadSecurity` resolved. */
export interface SecurityMaterial {
  signingKey: SoftwareSigningKey;
  /** Where devices' copy of the public signing key is (`<dataDir>/keys/software-signing.pub`). */
  publicKeyFile: string;
  manifests: ManifestSigner;
  ca: CertificateAuthority;
  /** MQTTS listener material, or undefined when `mqtt.tlsPort` is -1. */
  mqttTls: (ServerTls & { ca: string; port: number }) | undefined;
  /** HTTPS material, or undefined when `http.tls` is off. */
  httpTls: ServerTls | undefined;
}

/** Loads (creating on first start) the signing key, the CA and the listeners' TLS material. */
export async function loadSecurity(config: UpdraftConfig, dataDir: string, logger: Logger): Promise<SecurityMaterial> {
  // which store this start runs on (the store is started by now), for the offline CA commands
  // (server/store-kind.ts); here because it runs at every start, with the settings, under the
  // data directory's setup lock
  const kind = config.db ? 'postgres' : 'sqlite';
  // a start on SQLite where PostgreSQL ran last is likely a forgotten --db/UPDRAFT_DB: said,
  // since this start serves the directory's old updraft.db (or an empty one); still recorded,
  // as the offline commands must read the store this start writes
  if (kind === 'sqlite' && (await readStoreKind(dataDir)) === 'postgres') {
    logger.warn(`the server of ${dataDir} last ran on PostgreSQL (${STORE_KIND_FILE}); this start uses the embedded SQLite store (${path.join(dataDir, 'updraft.db')}): if that is not meant, stop it and give --db or UPDRAFT_DB`);
  }
  await recordStoreKind(dataDir, kind);
  const { key: signingKey, created } = await loadOrCreateSigningKey(dataDir);
  const publicKeyFile = signingKeyPaths(dataDir).pub;
  if (created) logger.debug('software signing key created; provision devices with its public key', { publicKey: publicKeyFile, keyId: signingKey.keyId });
  // a certificate that cannot be used (it certifies a key since replaced, say) is said loudly,
  // but the server still runs: refusing to start would take the whole fleet's connections,
  // shadows and API down over updates that devices trusting the root refuse anyway
  const installed = await loadKeyCertificate(dataDir, signingKey).catch((err: Error) => {
    logger.error(`the software signing key certificate is not used, so devices that trust the root refuse every update: ${err.message}`);
    return undefined;
  });
  // its expiry is said by the CertificateExpiryWatch, at start and while the server runs
  const { ca, created: caCreated } = await loadOrCreateCa(dataDir);
  if (caCreated) logger.debug("Updraft's device CA created", { dir: `${dataDir}/pki` });
  logPreviousCa(ca, logger);
  const hosts = config.tls.hosts.split(',').map((h) => h.trim()).filter((h) => h !== '');
  const mqttTls =
    config.mqtt.tlsPort >= 0
      ? // client certificates of the current CA, and of the previous one during a rollover
        { ...(await resolveTls({ dataDir, ca, hosts, prefix: 'mqtt', certFile: config.mqtt.tlsCert, keyFile: config.mqtt.tlsKey, logger })), ca: ca.clientCaBundle(), port: config.mqtt.tlsPort }
      : undefined;
  const httpTls = config.http.tls === 'on' ? await resolveTls({ dataDir, ca, hosts, prefix: 'http', certFile: config.http.tlsCert, keyFile: config.http.tlsKey, logger }) : undefined;
  return { signingKey, publicKeyFile, manifests: new ManifestSigner({ key: signingKey, ...(installed ? { certificate: installed.certificate, rootRotations: installed.rootRotations } : {}) }), ca, mqttTls, httpTls };
}

/**
 * Says, at start, that a rollover's previous CA (pki/previous-ca.crt) is trusted and until
 * when, or that it has expired and is ignored (pki/certificate-authority.ts, `clientCaBundle`).
 */
export function logPreviousCa(ca: CertificateAuthority, logger: Logger, nowMs = Date.now()): void {
  const end = ca.previousNotAfter;
  if (end === undefined) return;
  const until = new Date(end).toISOString();
  if (ca.trustsPrevious(nowMs)) logger.info("the previous CA (pki/previous-ca.crt) is trusted for devices' client certificates until it expires: devices renew onto the current CA (docs/security.md, \"When the CA nears its end\")", { previousCaExpiresAt: until });
  else logger.warn("the previous CA (pki/previous-ca.crt) is ignored: it has expired (or is not valid yet), so client certificates it issued are refused; remove it: updraft ca drop-previous", { previousCaExpiresAt: until });
}

/** A listener's TLS material; the operator's own files are checked here, where their settings can be named. */
async function resolveTls(o: TlsFileSettings & { dataDir: string; ca: CertificateAuthority; hosts: string[]; logger: Logger }): Promise<ServerTls> {
  const material = await resolveServerTls({ dataDir: o.dataDir, ca: o.ca, certFile: o.certFile, keyFile: o.keyFile, hosts: o.hosts, what: `${o.prefix}.tls`, logger: o.logger });
  if (o.certFile && o.keyFile) checkTlsFiles(material, o);
  return material;
}
