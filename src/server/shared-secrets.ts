/**
 * The secrets every instance on one PostgreSQL database must hold alike, each read from its
 * own data directory (docs/deployment.md, "Every instance needs the same secrets"): the
 * operator token, the software signing key, the URL signing key ring and the device CA. An
 * instance holding another copy does not fail by itself: URLs it signs are refused by the
 * others, commands it signs are refused by devices, the token works on some instances only.
 * So each instance compares fingerprints of its copies with those recorded in the store's
 * shared settings (`shared-secret:<name>`):
 *
 * - before it serves (`checkSharedSecrets`): a recorded one that differs refuses the start,
 *   with one line naming every file that differs and what to copy;
 * - once it has started (`SharedSecrets.start`), it records those with no record yet (the first
 *   instance: recorded only after a start the broker admitted, so a stray data directory that
 *   the broker refuses never becomes the reference), then compares every 30 s: a secret this
 *   instance replaced (an online rotation) is recorded, one replaced elsewhere is logged as an
 *   error once, since this instance then works against the others until given the new file.
 *
 * Offline rotations record the new fingerprint when given the database (`recordSharedSecrets`,
 * from `updraft token rotate --offline`, `keys rotate-url --offline`, `keys generate`,
 * `keys record-shared`). A store of one instance (SQLite) is never compared.
 *
 * What is recorded reveals nothing usable: the signing key and the CA by their public halves;
 * the URL keys (256 random bits each, made here) by a SHA-256 under a label; the operator
 * token by scrypt with a per-record salt, since the token file takes any text of 32
 * characters or more, which a person may have chosen: a reader of the database must not be
 * able to guess it offline at SHA-256 speed.
 */
import { createHash, randomBytes, scrypt, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { SigningKey } from '../artifacts/url-signer.ts';
import { UpdraftError } from '../errors.ts';
import type { StateStore } from '../store/state-store.ts';
import type { Logger } from '../util/logger.ts';
import { unnamedPostgres } from './store-kind.ts';

const scryptAsync = promisify(scrypt) as (password: string, salt: Buffer, keylen: number, options: { N: number; r: number; p: number }) => Promise<Buffer>;

/** The shared secrets, by the name used in records and messages. */
export type SharedSecretName = 'operator-token' | 'software-signing-key' | 'url-signing-keys' | 'ca';

/** Every shared secret, in the order messages name them. */
export const SHARED_SECRET_NAMES: readonly SharedSecretName[] = ['operator-token', 'software-signing-key', 'url-signing-keys', 'ca'];

/** The files of each secret under a data directory: what to copy. */
export const SHARED_SECRET_FILES: Record<SharedSecretName, string> = {
  'operator-token': 'operator-token',
  'software-signing-key': 'keys/software-signing.key and .pub',
  'url-signing-keys': 'keys/url-signing.json',
  ca: 'pki/ca.key and pki/ca.crt',
};

/** What goes wrong on the others while an instance holds another copy. */
const CONSEQUENCE: Record<SharedSecretName, string> = {
  'operator-token': 'the token is refused by the instances that hold the other one, and the broker admits only one',
  'software-signing-key': 'devices provisioned with the other public key refuse the commands this instance signs',
  'url-signing-keys': "download URLs and tokens signed by one instance are refused by the other's",
  ca: 'device certificates issued by one instance are refused by the other',
};

/** Settings key of a secret's record. */
export const sharedSecretKey = (name: SharedSecretName): string => `shared-secret:${name}`;

/** The secrets as this instance holds them. */
export interface SharedSecretValues {
  'operator-token': string;
  /** The signing key's id: the SHA-256 of its public key, already public. */
  'software-signing-key': string;
  'url-signing-keys': readonly SigningKey[];
  /** The CA certificate (PEM). */
  ca: string;
}

/** A stored record (JSON in the settings table). */
interface SecretRecord {
  fingerprint: string;
  /** Base64 salt, for the operator token's scrypt. */
  salt?: string;
  recordedAt: number;
  /** Which host and data directory recorded it: where a good copy is. */
  by: string;
}

// scrypt's default cost (N = 2^14, r = 8): about 50 ms, 16 MiB, once per start and rotation
const SCRYPT = { N: 16_384, r: 8, p: 1 };

/** The fingerprint of one secret; `salt` only for the operator token. */
async function fingerprintOf(name: SharedSecretName, values: SharedSecretValues, salt: Buffer | undefined): Promise<string> {
  // the label keeps fingerprints of one secret from ever standing for another
  const label = `updraft shared secret v1\0${name}\0`;
  switch (name) {
    case 'operator-token':
      return (await scryptAsync(label + values['operator-token'], salt ?? Buffer.alloc(0), 32, SCRYPT)).toString('hex');
    case 'software-signing-key':
      return createHash('sha256').update(label).update(values['software-signing-key']).digest('hex');
    case 'url-signing-keys': {
      const h = createHash('sha256').update(label);
      for (const k of values['url-signing-keys']) h.update(`${k.kid}\0${k.activeFrom ?? ''}\0`).update(k.secret).update('\0');
      return h.digest('hex');
    }
    case 'ca':
      return createHash('sha256').update(label).update(new X509Certificate(values.ca).raw).digest('hex');
  }
}

function parseRecord(text: string | undefined): SecretRecord | undefined {
  if (text === undefined) return undefined;
  try {
    const r = JSON.parse(text) as SecretRecord;
    return typeof r.fingerprint === 'string' ? r : undefined;
  } catch {
    return undefined;
  }
}

/** Where this instance is, for the others' messages. */
function here(dataDir: string): string {
  return `${os.hostname()}:${path.resolve(dataDir)}`;
}

/** A record of `values[name]`, with a new salt where one is used. */
async function newRecord(name: SharedSecretName, values: SharedSecretValues, dataDir: string): Promise<SecretRecord> {
  const salt = name === 'operator-token' ? randomBytes(16) : undefined;
  return { fingerprint: await fingerprintOf(name, values, salt), ...(salt ? { salt: salt.toString('base64') } : {}), recordedAt: Date.now(), by: here(dataDir) };
}

/** True when `values[name]` is the recorded one. */
async function matches(name: SharedSecretName, values: SharedSecretValues, record: SecretRecord): Promise<boolean> {
  return (await fingerprintOf(name, values, record.salt === undefined ? undefined : Buffer.from(record.salt, 'base64'))) === record.fingerprint;
}

/** The one line that refuses a start: which files differ, from whom to copy them. */
function refusal(differing: { name: SharedSecretName; record: SecretRecord }[], dataDir: string): string {
  const files = differing.map((d) => SHARED_SECRET_FILES[d.name]).join(', ');
  const from = [...new Set(differing.map((d) => `${d.record.by} at ${new Date(d.record.recordedAt).toISOString()}`))].join(', ');
  const why = differing.map((d) => CONSEQUENCE[d.name]).join('; ');
  return `this instance's ${files} differ${differing.length === 1 && !files.includes(' and ') ? 's' : ''} from what the other instances on this database hold (${why}): copy ${differing.length === 1 ? 'it' : 'them'} from an instance already running into ${path.resolve(dataDir)} (recorded from ${from}), then start this one again; if this instance's copy is the new one (replaced offline without --db), record it first: updraft keys record-shared --data-dir ${path.resolve(dataDir)} --db <url> (docs/deployment.md)`;
}

/** Before an instance on a shared store serves: CONFIG naming every recorded secret its copy differs from. */
export async function checkSharedSecrets(store: StateStore, dataDir: string, values: SharedSecretValues): Promise<void> {
  const differing: { name: SharedSecretName; record: SecretRecord }[] = [];
  for (const name of SHARED_SECRET_NAMES) {
    const record = parseRecord(await store.getSetting(sharedSecretKey(name)));
    if (record && !(await matches(name, values, record))) differing.push({ name, record });
  }
  if (differing.length > 0) throw new UpdraftError('CONFIG', refusal(differing, dataDir));
}

/** Records `names` as `values` holds them, over what was recorded (a rotation). */
export async function recordSharedSecrets(store: StateStore, dataDir: string, values: Partial<SharedSecretValues>, names: readonly SharedSecretName[] = SHARED_SECRET_NAMES): Promise<SharedSecretName[]> {
  const done: SharedSecretName[] = [];
  for (const name of names) {
    if (values[name] === undefined) continue;
    await store.putSetting(sharedSecretKey(name), JSON.stringify(await newRecord(name, values as SharedSecretValues, dataDir)));
    done.push(name);
  }
  return done;
}

/**
 * The shared secrets as a data directory holds them on disk (what an offline command just
 * changed); those whose files are absent are left out. Read without creating anything.
 */
export async function readSharedSecrets(dataDir: string): Promise<Partial<SharedSecretValues>> {
  const dir = path.resolve(dataDir);
  const text = (file: string) => readFile(path.join(dir, file), 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw new UpdraftError('CONFIG', `cannot read ${path.join(dir, file)}: ${err.message}`);
  });
  const values: Partial<SharedSecretValues> = {};
  const token = (await text('operator-token'))?.trim();
  if (token) values['operator-token'] = token;
  const pub = await text('keys/software-signing.pub');
  if (pub !== undefined) {
    const { keyIdOf, parsePublicKey } = await import('../signing/signing-key.ts');
    values['software-signing-key'] = keyIdOf(parsePublicKey(pub));
  }
  const ring = await text('keys/url-signing.json');
  if (ring !== undefined) {
    const parsed = JSON.parse(ring) as { keys: { kid: string; secret: string; activeFrom?: string }[] };
    values['url-signing-keys'] = parsed.keys.map((k) => ({ kid: k.kid, secret: Buffer.from(k.secret, 'base64'), ...(k.activeFrom !== undefined ? { activeFrom: Date.parse(k.activeFrom) } : {}) }));
  }
  const ca = await text('pki/ca.crt');
  if (ca !== undefined) values.ca = ca;
  return values;
}

/** Where an offline command finds the store: the server's own settings (`--config`, `--db`, `--data-dir`, their environment variables). */
export interface OfflineStoreSource {
  dataDir: string;
  db?: string;
  config?: string;
}

/**
 * After an offline command changed secrets in a data directory: records them in the
 * PostgreSQL store the instances share, so that the instances given the new files start and
 * the others are told. `undefined` when the settings name no PostgreSQL store (the embedded
 * store has one instance, and nothing to compare); else the store's redacted URL.
 */
export async function recordOffline(source: OfflineStoreSource, names: readonly SharedSecretName[]): Promise<{ where: string; recorded: SharedSecretName[] } | undefined> {
  const { loadConfig } = await import('../config/load-config.ts');
  const config = loadConfig({ ...(source.config !== undefined ? { file: source.config } : {}), env: process.env, flags: { 'data-dir': source.dataDir, db: source.db } });
  if (!config.db) {
    // a directory whose server runs on PostgreSQL: not recording there is no choice to make in silence
    const postgres = await unnamedPostgres(path.resolve(config.dataDir));
    if (postgres !== undefined) throw new UpdraftError('CONFIG', postgres);
    return undefined;
  }
  // loaded here only: the CLI's other commands start without the stores' modules
  const [{ createStateStoreBesideServer }, { createLogger }, { redactUrl }] = await Promise.all([import('./adapters.ts'), import('../util/logger.ts'), import('../util/redact-url.ts')]);
  const dataDir = path.resolve(config.dataDir);
  const values = await readSharedSecrets(dataDir);
  const store = await createStateStoreBesideServer(config, dataDir, createLogger({ level: 'warn', component: 'store' }));
  await store.start();
  try {
    return { where: redactUrl(config.db), recorded: await recordSharedSecrets(store, dataDir, values, names) };
  } finally {
    await store.stop();
  }
}

/** What the running comparison needs. */
export interface SharedSecretsDeps {
  store: StateStore;
  dataDir: string;
  /** The secrets as this instance holds them now (the token and the URL ring change with online rotations). */
  values: () => SharedSecretValues;
  logger: Logger;
  /** How often the records are compared, in ms (default 30 s). */
  intervalMs?: number;
}

/** Records this instance's secrets where none are, and compares them with the records while it runs. */
export class SharedSecrets {
  private readonly deps: SharedSecretsDeps;
  private timer: NodeJS.Timeout | undefined;
  private turn: Promise<unknown> = Promise.resolve();
  /** The record this instance last agreed with, per secret: a change of its own copy since then is a rotation here. */
  private readonly agreed = new Map<SharedSecretName, SecretRecord>();
  /** What was last said per secret (said once). */
  private readonly said = new Map<SharedSecretName, string>();
  /** The last fingerprints computed, by secret, salt and value: the token's scrypt runs once per change, not every 30 s. */
  private readonly cache = new Map<string, string>();

  constructor(deps: SharedSecretsDeps) {
    this.deps = deps;
  }

  /** After the instance started: records what has no record; refuses (CONFIG) a record another instance made meanwhile that differs. */
  async start(): Promise<void> {
    const d = this.deps;
    const values = d.values();
    const differing: { name: SharedSecretName; record: SecretRecord }[] = [];
    for (const name of SHARED_SECRET_NAMES) {
      const key = sharedSecretKey(name);
      let record = parseRecord(await d.store.getSetting(key));
      if (!record) {
        const mine = await newRecord(name, values, d.dataDir);
        // two first instances starting together: one record wins, the other compares with it
        if (await d.store.addSetting(key, JSON.stringify(mine))) {
          this.agreed.set(name, mine);
          continue;
        }
        record = parseRecord(await d.store.getSetting(key));
        if (!record) continue;
      }
      if ((await this.fingerprint(name, values, record)) === record.fingerprint) this.agreed.set(name, record);
      else differing.push({ name, record });
    }
    if (differing.length > 0) throw new UpdraftError('CONFIG', refusal(differing, d.dataDir));
    this.timer = setInterval(() => void this.sync(), d.intervalMs ?? 30_000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.turn;
  }

  /** After a rotation on this instance: its new copy becomes the record the others are compared with. */
  record(names: readonly SharedSecretName[]): Promise<void> {
    const run = this.turn.then(() => this.recordNow(names, this.deps.values()));
    this.turn = run.catch(() => {});
    return run;
  }

  /** One comparison, one at a time. */
  sync(): Promise<void> {
    const run = this.turn.then(() => this.compare());
    this.turn = run.catch(() => {});
    return run.catch((err: unknown) => this.deps.logger.warn('could not compare the shared secrets with the recorded ones; trying again later', { error: (err as Error).message }));
  }

  private async recordNow(names: readonly SharedSecretName[], values: SharedSecretValues): Promise<void> {
    for (const name of names) {
      const r = await newRecord(name, values, this.deps.dataDir);
      await this.deps.store.putSetting(sharedSecretKey(name), JSON.stringify(r));
      this.agreed.set(name, r);
      this.said.delete(name);
    }
  }

  /** `fingerprintOf`, remembered. */
  private async fingerprint(name: SharedSecretName, values: SharedSecretValues, record: Pick<SecretRecord, 'salt'>): Promise<string> {
    const value = name === 'operator-token' ? values[name] : name === 'url-signing-keys' ? values[name].map((k) => `${k.kid}:${k.activeFrom ?? ''}:${k.secret.toString('base64')}`).join(',') : values[name];
    const key = `${name}\0${record.salt ?? ''}\0${value}`;
    let fp = this.cache.get(key);
    if (fp === undefined) {
      fp = await fingerprintOf(name, values, record.salt === undefined ? undefined : Buffer.from(record.salt, 'base64'));
      if (this.cache.size > 16) this.cache.clear();
      this.cache.set(key, fp);
    }
    return fp;
  }

  private async compare(): Promise<void> {
    const d = this.deps;
    const values = d.values();
    for (const name of SHARED_SECRET_NAMES) {
      const record = parseRecord(await d.store.getSetting(sharedSecretKey(name)));
      if (record && (await this.fingerprint(name, values, record)) === record.fingerprint) {
        this.agreed.set(name, record);
        this.said.delete(name);
        continue;
      }
      // no record (removed by hand), or this instance's copy changed since it last agreed: a
      // rotation here (keys rotate-url through this instance); the others are compared with it
      const agreed = this.agreed.get(name);
      if (!record || !agreed || (await this.fingerprint(name, values, agreed)) !== agreed.fingerprint) {
        await this.recordNow([name], values);
        d.logger.warn(`this instance's ${SHARED_SECRET_FILES[name]} changed: recorded as the one every instance on this database must hold; copy it to the others`);
        continue;
      }
      const message = `the ${SHARED_SECRET_FILES[name]} was replaced on ${record.by} at ${new Date(record.recordedAt).toISOString()}, and this instance still holds the old one, so ${CONSEQUENCE[name]}: copy it from there into ${path.resolve(d.dataDir)} and restart this instance`;
      if (this.said.get(name) !== message) d.logger.error(message);
      this.said.set(name, message);
    }
  }
}
