/**
 * Who is still on a CA rollover's previous CA, read from the store the server uses with the
 * server stopped (`updraft ca drop-previous`): the devices whose agents reported a client
 * certificate issued by it (`reported.agent.certificateIssuer`, protocol/certificate-issuer.ts).
 * Dropping the previous CA while some are locks them out from the next start: their
 * certificates are refused at the handshake, and the renewal that would move them needs a
 * connection (QA of the CA rollover: 5 devices locked out by a drop run too early).
 *
 * Only what agents reported can be counted: a device that never reports (not an Updraft agent,
 * an agent older than the field, one on a password) counts as on no CA, and a device's last
 * report stays in its shadow however long it has been silent.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { UpdraftError } from '../errors.ts';
import { caSubject, issuerQuery } from '../protocol/certificate-issuer.ts';
import type { OfflineStoreSource } from '../server/shared-secrets.ts';
import { unnamedPostgres } from '../server/store-kind.ts';

/** What one read of the fleet found. */
export interface CaCount {
  /** The previous CA's subject, as agents report an issuer. */
  previousSubject: string;
  /** The query that lists the devices on the previous CA (`updraft device list --query`). */
  previousQuery: string;
  /** Devices not revoked that reported a certificate of the previous CA: those a drop locks out. */
  onPrevious: number;
  /**
   * Revoked devices that reported a certificate of the previous CA: refused anyway (a renewal,
   * pki/certificate-renewal.ts, refuses a revoked device), so they can never move and a drop
   * changes nothing for them; counted apart, not refused for.
   */
  revokedOnPrevious: number;
  /** Devices that reported a certificate of the current CA (undefined without a readable pki/ca.crt). */
  onCurrent?: number;
  /** Registered devices that reported no issuer: not counted either way. */
  unreported: number;
  /** Where the devices were read: the redacted PostgreSQL URL or the SQLite file; undefined when the data directory has no store yet. */
  from?: string;
}

/**
 * Counts the devices on the previous CA (`previousPem`) and on the current one (`currentPem`)
 * in the store of `source` (the server's settings: --config, --db, --data-dir and their
 * environment variables), opened beside the stopped server as `ca rollover --db` opens it.
 * An embedded store (SQLite) not made yet holds no device: nothing is created for it.
 */
export async function countDevicesByCa(source: OfflineStoreSource, previousPem: string, currentPem: string | undefined): Promise<CaCount> {
  const previousSubject = caSubject(previousPem);
  const currentSubject = currentPem === undefined ? undefined : caSubject(currentPem);
  const previousQuery = issuerQuery(previousSubject);
  const count: CaCount = { previousSubject, previousQuery, onPrevious: 0, revokedOnPrevious: 0, ...(currentSubject !== undefined ? { onCurrent: 0 } : {}), unreported: 0 };
  // loaded here only: the CLI's other commands start without the stores' modules
  const [{ loadConfig }, { parseQuery }, { scanDevices }, { createStateStoreBesideServer }, { createLogger }, { redactUrl }] = await Promise.all([
    import('../config/load-config.ts'),
    import('../fleet/query.ts'),
    import('../fleet/device-selector.ts'),
    import('../server/adapters.ts'),
    import('../util/logger.ts'),
    import('../util/redact-url.ts'),
  ]);
  const config = loadConfig({ ...(source.config !== undefined ? { file: source.config } : {}), env: process.env, flags: { 'data-dir': source.dataDir, db: source.db } });
  const dataDir = path.resolve(config.dataDir);
  if (!config.db) {
    // its server moved to PostgreSQL: an updraft.db left from its SQLite days is stale
    const postgres = await unnamedPostgres(dataDir);
    if (postgres !== undefined) throw new UpdraftError('CONFIG', postgres);
  }
  if (!config.db && !existsSync(path.join(dataDir, 'updraft.db'))) {
    // a server of before store.json ran here (it made the operator token) and kept no
    // updraft.db: it runs on PostgreSQL, and its devices would be counted nowhere; without a
    // token no server ever ran
    if (existsSync(path.join(dataDir, 'operator-token'))) throw new UpdraftError('CONFIG', `the server of ${dataDir} runs on PostgreSQL: it has an operator-token and no updraft.db`);
    return count;
  }
  // the queries an operator runs to list them: what is counted is what they list
  const onPrevious = parseQuery(previousQuery);
  const onCurrent = currentSubject === undefined ? undefined : parseQuery(issuerQuery(currentSubject));
  const store = await createStateStoreBesideServer(config, dataDir, createLogger({ level: 'warn', component: 'store' }));
  await store.start();
  try {
    await scanDevices(
      store,
      (s) => {
        if (onPrevious.matches(s)) {
          if (s.device.revoked) count.revokedOnPrevious++;
          else count.onPrevious++;
        }
        else if (onCurrent?.matches(s)) count.onCurrent!++;
        else if (typeof (s.reported?.agent as { certificateIssuer?: unknown } | undefined)?.certificateIssuer !== 'string') count.unreported++;
        return false;
      },
      true,
      () => {},
    );
  } finally {
    await store.stop();
  }
  return { ...count, from: config.db ? redactUrl(config.db) : path.join(dataDir, 'updraft.db') };
}

/** The shell command that lists the devices `query` selects: one writing, doctor's and the health findings' (health/findings.ts). */
export { listCommand } from '../health/findings.ts';

/** A CA certificate file's text, undefined when it is not there. */
export async function readCaFile(file: string): Promise<string | undefined> {
  return readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
}
