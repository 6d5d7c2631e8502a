/**
 * `updraft broker mosquitto-config --offline`: what the broker's files need, read without a
 * running server: the operator token from the data directory and the registry from the state
 * store itself. An instance started with `--mqtt-url` connects to the broker as `operator`
 * with that token, so the broker must know it before the first instance can start: asking
 * the API (the default) is impossible at that point (docs/deployment.md, the bootstrap).
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { RegisteredDevice } from '../broker/mosquitto-config.ts';
import { loadConfig } from '../config/load-config.ts';
import { UpdraftError } from '../errors.ts';
import { operatorTokenPath } from '../server/operator-token.ts';
import type { RevokedEntry, StateStore } from '../store/state-store.ts';
import { redactUrl } from '../util/redact-url.ts';
import { createLogger } from '../util/logger.ts';

/** Where to read: the server's own settings (`--config`, `--data-dir`, `--db`, their environment variables). */
export interface OfflineSource {
  dataDir?: string;
  db?: string;
  config?: string;
}

/** Shortest token the server keeps: a shorter file is replaced at its start (server/operator-token.ts). */
const MIN_TOKEN_LENGTH = 32;

/** The operator token every instance starts with, and every registered device with what the broker needs; with `revokedCertificates`, the store's revoked device certificates too (the CRL's entries). */
export async function offlineCredentials(source: OfflineSource, options: { revokedCertificates?: boolean } = {}): Promise<{ token: string; devices: RegisteredDevice[]; from: string; revokedCertificates?: RevokedEntry[] }> {
  const config = loadConfig({
    ...(source.config !== undefined ? { file: source.config } : {}),
    env: process.env,
    flags: { 'data-dir': source.dataDir, db: source.db },
  });
  const dataDir = path.resolve(config.dataDir);
  const token = await readOperatorToken(dataDir);
  // loaded here only: every other command starts without the stores' modules
  const { createStateStoreBesideServer } = await import('../server/adapters.ts');
  const store = await createStateStoreBesideServer(config, dataDir, createLogger({ level: 'warn', component: 'store' }));
  await store.start();
  try {
    const devices = await registryCredentials(store);
    // what a CRL entry needs only, in pages that let the thread go (as the server's route reads
    // them): whole records of a million revoked certificates cost the command seconds and memory
    // (those expired a day ago at most, as the route reads them: pki/revocation-list.ts listedAfter)
    const listedAfter = options.revokedCertificates ? (await import('../pki/revocation-list.ts')).listedAfter : undefined;
    const revokedCertificates = listedAfter ? await store.listRevokedEntries(listedAfter(Date.now())) : undefined;
    return { token, devices, from: config.db ? redactUrl(config.db) : path.join(dataDir, 'updraft.db'), ...(revokedCertificates ? { revokedCertificates } : {}) };
  } finally {
    await store.stop();
  }
}

/** The token file as the server reads it; refused when the server would replace it at its start. */
async function readOperatorToken(dataDir: string): Promise<string> {
  const file = operatorTokenPath(dataDir);
  let token: string;
  try {
    token = (await readFile(file, 'utf8')).trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new UpdraftError('BAD_REQUEST', `cannot read the operator token ${file}: ${(err as Error).message}`, { cause: err });
    token = '';
  }
  if (token.length < MIN_TOKEN_LENGTH) {
    throw new UpdraftError('BAD_REQUEST', `no operator token in ${file}: make the one the instances and the broker share with \`updraft token rotate --offline --data-dir ${dataDir}\` (once; then copy the file into every instance's data directory)`);
  }
  return token;
}

/** Every registered device, page by page, as `GET /api/v1/broker/credentials` lists them. */
async function registryCredentials(store: StateStore): Promise<RegisteredDevice[]> {
  const devices: RegisteredDevice[] = [];
  let after: string | undefined;
  do {
    const page = await store.listDevices({ limit: 1000, ...(after ? { after } : {}) });
    for (const d of page.items) devices.push({ deviceId: d.deviceId, revoked: d.revoked, ...(d.brokerHash ? { brokerHash: d.brokerHash } : {}) });
    after = page.next;
  } while (after);
  return devices;
}
