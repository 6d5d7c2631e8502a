/**
 * `updraft backup`: a consistent copy of a data directory, taken while the server runs.
 *
 * - The embedded database is copied with SQLite's `VACUUM INTO` on a connection of its own:
 *   one read transaction, so the copy is the database as of one instant however busy the
 *   server is (its WAL lets readers and the writer go on side by side). SQLite's backup API
 *   was not used: it starts over whenever another connection writes, which under a fleet
 *   update is all the time.
 * - Artifact bytes are copied for the artifacts that copy names (content-addressed files,
 *   never changed once written), so the copy holds what it refers to, and no more.
 * - Everything else (signing keys, the URL key ring, the CA, the operator token) is copied
 *   as it is, modes kept: the copy holds secrets, and its directory is made 0700.
 *
 * What to copy follows the server's own settings (`--db`, `--blob`, read by loadConfig as
 * the server reads them), not what happens to lie in the directory. A server with `--db`
 * keeps its state in PostgreSQL: back it up with pg_dump (this says so); its artifact bytes,
 * unless `--blob` puts them in a bucket, are in the data directory and are copied, for the
 * builds the database names when the backup runs. With `--blob` the bytes are in the bucket
 * (back it up with its versioning or replication): none are looked for in the directory.
 *
 * A backup that fails is removed, so that no partial copy passes for a whole one; and the
 * marker file is written last, so one cut short by a crash is refused by `updraft restore`.
 */
import { chmod, readdir, readlink, realpath, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import Database from 'better-sqlite3';
import { UpdraftError } from '../errors.ts';
import { allArtifacts } from '../store/state-store.ts';
import { createLogger } from '../util/logger.ts';
import { redactUrl } from '../util/redact-url.ts';
import { BACKUP_MARKER, DATABASE, copyKeepingMode, isDirectory, isFile, type BackupMarker } from './data-dir-files.ts';
import { SERVER_LOCK } from './data-dir-lock.ts';
import { refuseUnnamedPostgres } from './store-kind.ts';
import { makeDir } from '../util/make-dir.ts';

/** Where the server keeps what is backed up: its settings (`--data-dir`, `--db`, `--blob`, from loadConfig). */
export interface BackupSource {
  dataDir: string;
  /** The PostgreSQL store, or '' for the embedded `updraft.db`. */
  db: string;
  /** The S3 artifact storage, or '' for `<dataDir>/artifacts`. */
  blob: string;
}

/** What a backup copied. */
export interface BackupReport {
  /** True when the embedded database was copied; false for a server with --db (its state is in PostgreSQL). */
  database: boolean;
  /** The PostgreSQL store (password hidden) whose artifact records named the bytes copied; absent for the embedded one. */
  postgres?: string;
  /** Artifacts (builds) whose bytes were copied, and how many bytes were copied (each file's size checked against its record; builds with the same bytes share a file, copied once). */
  artifacts: number;
  artifactBytes: number;
  /** With S3 artifact storage (`--blob`): the bucket (password hidden) that holds the bytes, not copied, and how many builds the copy names. */
  bucket?: { url: string; artifacts: number };
  /** Other files: keys, CA, operator token. */
  files: string[];
}

/** An artifact's record: what its bytes are. */
interface ArtifactBytes {
  name: string;
  version: string;
  sha256: string;
  size: number;
}

/** The database's own files, copied through SQLite; artifacts, copied by what it names; and the running server's lock (data-dir-lock.ts). */
const SKIPPED = new Set([DATABASE, `${DATABASE}-wal`, `${DATABASE}-shm`, 'artifacts', BACKUP_MARKER, SERVER_LOCK, `${SERVER_LOCK}-wal`, `${SERVER_LOCK}-shm`]);

/** Copies the data directory of `source` into `out`, which must not exist or be empty. */
export async function backupDataDir(source: BackupSource, out: string): Promise<BackupReport> {
  const dataDir = source.dataDir;
  const from = path.resolve(dataDir);
  const to = path.resolve(out);
  if (!(await isDirectory(from))) throw new UpdraftError('BAD_REQUEST', `data directory ${dataDir} does not exist`);
  if (to === from || to.startsWith(from + path.sep)) throw new UpdraftError('BAD_REQUEST', `the backup cannot go inside the data directory ${dataDir}`);
  const existing = await readdir(to).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [];
    throw new UpdraftError('BAD_REQUEST', `cannot use ${out}: ${err.message}`);
  });
  if (existing.length > 0) throw new UpdraftError('BAD_REQUEST', `${out} exists and is not empty; back up into a new directory`);
  // a directory whose server moved to PostgreSQL keeps the updraft.db of its SQLite days: the
  // copy would have been of that stale file, reported as the database (store-kind.ts)
  await refuseUnnamedPostgres(source.db, from);
  const dbFile = path.join(from, DATABASE);
  if (!source.db && !(await isFile(dbFile))) {
    throw new UpdraftError('BAD_REQUEST', `no ${DATABASE} in ${dataDir}: a server with --db keeps its state in PostgreSQL; give the backup its settings as the server has them (--db, --blob, or --config, or UPDRAFT_DB and UPDRAFT_BLOB)`);
  }
  // listed first: a link to nothing is refused before anything is copied
  const files = await filesUnder(from, '', dataDir, new Set([await realpath(from)]));
  const created = !(await isDirectory(to)); // else it exists, empty (a non-empty one was refused)
  await makeDir(to, 0o700);
  try {
    return await copyInto(source, from, to, files);
  } catch (err) {
    // a copy cut short must not pass for a backup: removed (it has no marker either, so
    // `updraft restore` would refuse it), and the directory left as it was found
    const removed = await (created ? rm(to, { recursive: true, force: true }) : emptyDirectory(to)).then(
      () => `${out} was removed`,
      (e: Error) => `${out} could not be removed (${e.message}): delete it; it has no ${BACKUP_MARKER}, so updraft restore refuses it`,
    );
    const e = err instanceof UpdraftError ? err : new UpdraftError('INTERNAL', (err as Error).message, { cause: err });
    throw new UpdraftError(e.code, `${e.message}; the backup is not complete: ${removed}`, { cause: err, status: e.status });
  }
}

/** The copy itself, into the new directory `to`: the database, the artifact bytes, the files, and last the marker. */
async function copyInto(source: BackupSource, from: string, to: string, files: string[]): Promise<BackupReport> {
  const dataDir = source.dataDir;
  await chmod(to, 0o700);
  const report: BackupReport = { database: false, artifacts: 0, artifactBytes: 0, files: [] };
  let records: ArtifactBytes[] = [];
  if (!source.db) {
    report.database = true;
    records = await copyDatabase(path.join(from, DATABASE), path.join(to, DATABASE));
  } else if (!source.blob) {
    // PostgreSQL with the bytes in the data directory: copied for the builds it names now
    report.postgres = redactUrl(source.db);
    records = await postgresArtifacts(source);
  }
  if (source.blob) {
    // the bytes are in the bucket, none in the data directory: nothing of them to copy
    report.bucket = { url: redactUrl(source.blob), artifacts: records.length };
  } else {
    const missing: string[] = [];
    const damaged: string[] = [];
    const copied = new Set<string>();
    for (const a of records) {
      // builds with the same bytes share one file: copied once, each counted as a build
      if (copied.has(a.sha256)) {
        report.artifacts++;
        continue;
      }
      const rel = path.join('artifacts', 'sha256', a.sha256.slice(0, 2), a.sha256);
      if (!(await isFile(path.join(from, rel)))) {
        missing.push(`${a.name}@${a.version}`);
        continue;
      }
      await copyKeepingMode(path.join(from, rel), path.join(to, rel));
      copied.add(a.sha256);
      // the copy's size against the record, as a download checks what storage holds
      // (http/download-route.ts); not its SHA-256: that would read every build's bytes
      // again on each backup (up to downloads.maxArtifactBytes each) where the copy itself
      // need not pass them through this process, and nothing in the server re-hashes stored
      // bytes either (devices check the hash in the signed manifest)
      const size = (await stat(path.join(to, rel))).size;
      if (size !== a.size) damaged.push(`${a.name}@${a.version} (${size} of ${a.size} bytes in ${path.join(dataDir, rel)})`);
      report.artifacts++;
      report.artifactBytes += size;
    }
    if (damaged.length > 0) throw new UpdraftError('INTEGRITY', `the bytes of ${damaged.join(', ')} are not what their records say (storage is damaged): put the files back from an older backup, or delete those builds and add them again, then back up again`);
    // an artifact deleted (bytes and all) between the database's copy and its bytes' copy
    if (missing.length > 0) throw new UpdraftError('CONFLICT', `the bytes of ${missing.join(', ')} were not in ${path.join(dataDir, 'artifacts')} (deleted while the backup ran, or storage is damaged; or the server keeps them in S3: give the backup its --blob): back up again`);
  }

  for (const rel of files) {
    await copyKeepingMode(path.join(from, rel), path.join(to, rel));
    report.files.push(rel);
  }
  // last: `updraft restore` takes only a copy that has it, so one cut short is never restored
  const marker: BackupMarker = { format: 'updraft-backup', version: 1, createdAt: new Date().toISOString() };
  await writeFile(path.join(to, BACKUP_MARKER), JSON.stringify(marker, null, 2) + '\n', { mode: 0o600 });
  return report;
}

/** Removes what is in `dir`, keeping `dir` (it existed, empty, before the backup). */
async function emptyDirectory(dir: string): Promise<void> {
  for (const name of await readdir(dir)) await rm(path.join(dir, name), { recursive: true, force: true });
}

/** Copies the embedded database as of one instant; resolves with the artifacts the copy names. */
async function copyDatabase(dbFile: string, copy: string): Promise<ArtifactBytes[]> {
  const db = new Database(dbFile, { fileMustExist: true });
  try {
    // waits for the server's commit in progress, never blocks it
    db.pragma('busy_timeout = 10000');
    db.prepare('VACUUM INTO ?').run(copy);
  } catch (err) {
    throw new UpdraftError('INTERNAL', `cannot copy the database ${dbFile}: ${(err as Error).message}`, { cause: err });
  } finally {
    db.close();
  }
  await chmod(copy, 0o600);
  const snapshot = new Database(copy, { readonly: true });
  try {
    return snapshot.prepare('SELECT name, version, sha256, size FROM artifacts').all() as ArtifactBytes[];
  } finally {
    snapshot.close();
  }
}

/** The artifacts a PostgreSQL store names, read through the store as the server reads them. */
async function postgresArtifacts(source: BackupSource): Promise<ArtifactBytes[]> {
  const { createStateStoreBesideServer } = await import('./adapters.ts');
  const store = await createStateStoreBesideServer(source, path.resolve(source.dataDir), createLogger({ level: 'warn', component: 'store' }));
  await store.start();
  try {
    return await allArtifacts(store);
  } finally {
    await store.stop();
  }
}

/**
 * Files under `dir/rel`, relative to `dir`, without the database, the artifacts and files
 * being written (`*.tmp`). Symbolic links are followed (their targets are copied as regular
 * files): keys and tokens mounted from a secret store are links (a Kubernetes secret volume
 * links each file through `..data` to a `..<time>` directory, names skipped here as the
 * volume's own, so each file is copied once). A link to nothing is refused: the copy would
 * lack a key or the token without a word. `seen`: real paths of the directories on the way
 * down, so that a link to one of them is not followed round.
 */
async function filesUnder(dir: string, rel: string, dataDir: string, seen: Set<string>): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(path.join(dir, rel), { withFileTypes: true })) {
    const r = path.join(rel, e.name);
    if ((rel === '' && SKIPPED.has(e.name)) || e.name.endsWith('.tmp') || e.name.startsWith('..')) continue;
    let isDir = e.isDirectory();
    let isReg = e.isFile();
    if (e.isSymbolicLink()) {
      const target = await stat(path.join(dir, r)).catch(async (err: NodeJS.ErrnoException) => {
        const to = await readlink(path.join(dir, r));
        throw new UpdraftError('CONFIG', `${path.join(dataDir, r)} is a symbolic link to ${to}, which ${err.code === 'ELOOP' ? 'loops' : 'does not exist'} (a secret volume not mounted?): mount what it points to, or replace the link with the file, then back up again`, { cause: err });
      });
      isDir = target.isDirectory();
      isReg = target.isFile();
    }
    if (isDir) {
      const real = await realpath(path.join(dir, r));
      if (seen.has(real)) continue;
      out.push(...(await filesUnder(dir, r, dataDir, new Set([...seen, real]))));
    } else if (isReg) out.push(r);
  }
  return out.sort();
}
