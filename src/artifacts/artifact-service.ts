/**
 * The artifact catalogue (pattern step 2): stores a build's bytes in the blob store, records
 * name, version, SHA-256 and size in the state store, and resolves `name@version` references.
 */
import type { Readable } from 'node:stream';
import type { Compatibility } from '../protocol/compatibility.ts';
import { UpdraftError } from '../errors.ts';
import type { EventBus } from '../events/event-bus.ts';
import { SEMVER, compareSemver } from '../protocol/software.ts';
import { idProblem } from '../protocol/topics.ts';
import { ACTIVE_JOB_STATUSES, allArtifacts, type ArtifactRecord, type JobRecord, type Page, type StateStore } from '../store/state-store.ts';
import { rememberLru } from '../util/lru.ts';
import type { BlobStore } from './blob-store.ts';

/**
 * Records kept in memory: name@version is immutable, so a record read once stays right
 * until the artifact is deleted (every download resolves its artifact: 2% of the server's
 * CPU in a fleet update, profiled). A deletion is refused while a job that is not finished
 * installs the artifact, so no command names it afterwards; another instance that still
 * holds the record only serves a download that finds no bytes (404). Job creation reads the
 * store itself (`current`).
 */
const RECORD_CACHE = 1000;
/** The longest version a build may be added under (with its prerelease and build parts). */
export const MAX_VERSION_LENGTH = 64;

/** Parses `fw@2.0.0` into name and version; BAD_REQUEST naming the expected form. */
export function parseArtifactRef(ref: string): { name: string; version: string } {
  const at = ref.lastIndexOf('@');
  if (at <= 0 || at === ref.length - 1) throw new UpdraftError('BAD_REQUEST', `artifact reference "${ref}" must look like name@version, e.g. fw@2.0.0`);
  return { name: ref.slice(0, at), version: ref.slice(at + 1) };
}

/** Validates an artifact name and version; BAD_REQUEST naming the problem. */
export function checkArtifactId(name: string, version: string): void {
  const nameDefect = idProblem('artifact name', name);
  if (nameDefect !== undefined) throw new UpdraftError('BAD_REQUEST', nameDefect);
  if (!SEMVER.test(version)) throw new UpdraftError('BAD_REQUEST', `artifact version "${version}" must be a semantic version like 2.0.0`);
}

/** What the catalogue needs. */
export interface ArtifactServiceDeps {
  store: StateStore;
  blobs: BlobStore;
  maxArtifactBytes: number;
  /** Signs a new artifact's record (pattern step 2: stored, hashed, signed); the signature is recorded with it. */
  sign?: (artifact: { name: string; version: string; sha256: string; size: number }) => string;
  /** Told when a build's bytes are deleted (the download cache lets them go). */
  onBytesDeleted?: (sha256: string) => void;
  /** Told of every build added or deleted (`artifact.changed`: live views read the list again). */
  events?: EventBus;
}

/** What a deletion did. */
export interface ArtifactDeletion {
  artifact: ArtifactRecord;
  /** False when another name@version holds the same bytes: they stay for it. */
  bytesDeleted: boolean;
}

/** What a prune did (or, with dryRun, would do): name@version references, newest first per name. */
export interface ArtifactPrune {
  dryRun: boolean;
  kept: string[];
  deleted: string[];
  /** Versions older than the kept ones that could not go: a job that is not finished installs them. */
  refused: { artifact: string; reason: string }[];
}

function notFound(name: string, version: string): UpdraftError {
  return new UpdraftError('NOT_FOUND', `artifact ${name}@${version} does not exist; add it with: updraft artifact add <file> --name ${name} --version ${version}`);
}

/** Adds, lists, resolves and deletes artifacts. */
export class ArtifactService {
  private readonly deps: ArtifactServiceDeps;
  private readonly records = new Map<string, ArtifactRecord>();
  /**
   * Blobs are shared by content: a record written and the check that no record names some
   * bytes before they are deleted must not interleave (on this instance; see `delete`).
   */
  private blobTurn: Promise<unknown> = Promise.resolve();
  /** Jobs being created for each name@version here (`whileCreatingJob`): it is not deleted under them. */
  private readonly creating = new Map<string, number>();
  /** name@version being deleted here: no job is created for it meanwhile. */
  private readonly deleting = new Set<string>();

  constructor(deps: ArtifactServiceDeps) {
    this.deps = deps;
  }

  /** The largest build `add` takes, in bytes (`downloads.maxArtifactBytes`). */
  get maxBytes(): number {
    return this.deps.maxArtifactBytes;
  }

  /**
   * Stores a build; CONFLICT if name@version exists (versions are immutable). `compatibility`
   * (checked by `parseCompatibility`) goes into every command for it, signed. Refused before
   * a byte is read (a bad id, an existing version), `source` is left unread: the HTTP server
   * closes the connection rather than read an upload it has refused.
   */
  async add(name: string, version: string, source: Readable, compatibility: Compatibility = {}): Promise<ArtifactRecord> {
    checkArtifactId(name, version);
    // semver sets no length; a version is shown in every listing, job and device row, and a
    // 500-character one made the dashboard's pages 5,000 pixels wide. Checked when a build is
    // added only: one stored before the limit can still be looked up and deleted
    if (version.length > MAX_VERSION_LENGTH) {
      throw new UpdraftError('BAD_REQUEST', `artifact version "${version.slice(0, 20)}…" is ${version.length} characters long: at most ${MAX_VERSION_LENGTH}`);
    }
    const exists = () => new UpdraftError('CONFLICT', `artifact ${name}@${version} already exists; versions are immutable, add a new version`);
    if (await this.deps.store.getArtifact(name, version)) throw exists();
    const blob = await this.deps.blobs.write(source, this.deps.maxArtifactBytes);
    // an empty build is a mistake (a wrong path, a failed build step), and a device would
    // install nothing in place of its software
    if (blob.size === 0) {
      await this.inBlobTurn(() => this.dropIfUnnamed(blob.sha256));
      throw new UpdraftError('BAD_REQUEST', `artifact ${name}@${version} is empty (0 bytes): there is nothing to install`);
    }
    const record: ArtifactRecord = { name, version, sha256: blob.sha256, size: blob.size, createdAt: Date.now() };
    if (compatibility.deviceTypes || compatibility.requires !== undefined) record.compatibility = compatibility;
    if (this.deps.sign) record.signature = this.deps.sign(record);
    await this.inBlobTurn(async () => {
      try {
        await this.deps.store.putArtifact(record);
      } catch (err) {
        // refused (the same name@version added meanwhile, with other bytes): the bytes just
        // written would stay in storage with no record naming them
        // (the refusal is what the caller is told, even if this clean-up fails too)
        await this.dropIfUnnamed(record.sha256).catch(() => false);
        // the loser of a race is told what a later retry is told, not the store's own wording
        throw err instanceof UpdraftError && err.code === 'CONFLICT' ? exists() : err;
      }
      // the same bytes, deleted with another artifact after they were written here and
      // before this record named them: the record would point at nothing
      if ((await this.deps.blobs.stat(record.sha256)) === undefined) {
        await this.deps.store.deleteArtifact(name, version);
        throw new UpdraftError('CONFLICT', `the bytes of ${name}@${version} were deleted with another artifact while they were being added; add it again`);
      }
    });
    this.deps.events?.emit('artifact.changed', { name, version, change: 'added' });
    return record;
  }

  /**
   * Deletes a build: its record, then its bytes unless another name@version holds the same
   * ones (blobs are content-addressed). CONFLICT naming the jobs while a job that is not
   * finished installs it (cancel them, or let them finish); NOT_FOUND when there is none.
   * The jobs that installed it keep their records. A device whose desired software still
   * names it (one that missed a finished job) is refused its download and reports FAILURE:
   * deploy another version to it.
   *
   * Order: the record first, so no download or command finds a record without bytes; a
   * crash in between leaves bytes no record names (disk, not correctness). Between
   * instances sharing a database and bucket, a build added under a new name with the same
   * bytes while they are deleted elsewhere is not guarded: its downloads would find nothing.
   */
  async delete(name: string, version: string): Promise<ArtifactDeletion> {
    checkArtifactId(name, version);
    const key = `${name}@${version}`;
    // a job being created for it is not a job in the store yet, which the store's check sees:
    // a large one is written in pieces for seconds, the job row last (`whileCreatingJob`)
    if ((this.creating.get(key) ?? 0) > 0) throw new UpdraftError('CONFLICT', `a job for artifact ${key} is being created right now; let it be created, cancel it, then delete the artifact`);
    this.deleting.add(key);
    try {
      // and on the other instances sharing the database (a lock they all see)
      const r = await this.deps.store.withArtifactLock(name, version, 'delete', () => this.deleteUnused(name, version));
      if (!r.ran) throw new UpdraftError('CONFLICT', `a job for artifact ${key} is being created right now on another instance; let it be created, cancel it, then delete the artifact`);
      return r.value;
    } finally {
      this.deleting.delete(key);
    }
  }

  private async deleteUnused(name: string, version: string): Promise<ArtifactDeletion> {
    const r = await this.deps.store.deleteArtifact(name, version);
    if (r.activeJobs.length > 0) throw new UpdraftError('CONFLICT', inUse(name, version, r.activeJobs));
    if (!r.deleted) throw new UpdraftError('NOT_FOUND', `artifact ${name}@${version} does not exist`);
    const artifact = r.deleted;
    this.records.delete(`${name}@${version}`);
    // the record is gone, which is what a listing shows: announced even if the bytes' clean-up fails
    this.deps.events?.emit('artifact.changed', { name, version, change: 'deleted' });
    const bytesDeleted = await this.inBlobTurn(() => this.dropIfUnnamed(artifact.sha256));
    return { artifact, bytesDeleted };
  }

  /**
   * Keeps the `keep` newest versions of each name (semantic version order: 1.10.0 is newer
   * than 1.9.0), or of `name` only, and deletes the older ones as `delete` does: one that an
   * unfinished job installs is refused and stays. `keep` is at least 1, so every name keeps
   * its newest build. With `dryRun` nothing is deleted: the answer says what would be.
   */
  async prune(o: { keep: number; name?: string; dryRun?: boolean }): Promise<ArtifactPrune> {
    if (!Number.isSafeInteger(o.keep) || o.keep < 1) throw new UpdraftError('BAD_REQUEST', 'keep must be a whole number of at least 1: the newest version of each name always stays');
    const all = await this.all(o.name);
    if (o.name !== undefined && all.length === 0) throw new UpdraftError('NOT_FOUND', `no artifact is named ${o.name}; list them with: updraft artifact list`);
    const byName = new Map<string, ArtifactRecord[]>();
    for (const a of all) byName.set(a.name, [...(byName.get(a.name) ?? []), a]);
    const out: ArtifactPrune = { dryRun: o.dryRun === true, kept: [], deleted: [], refused: [] };
    // a dry run refuses what a prune would: the builds of unfinished jobs (few: read at once)
    const unfinished = o.dryRun ? await this.unfinishedJobsByArtifact() : undefined;
    for (const [name, versions] of [...byName].sort(([a], [b]) => a.localeCompare(b))) {
      versions.sort((a, b) => compareSemver(b.version, a.version));
      out.kept.push(...versions.slice(0, o.keep).map((a) => `${name}@${a.version}`));
      for (const old of versions.slice(o.keep)) {
        const ref = `${name}@${old.version}`;
        if (unfinished) {
          const jobs = unfinished.get(ref);
          if (jobs) out.refused.push({ artifact: ref, reason: inUse(name, old.version, jobs.slice(0, 10)) });
          else out.deleted.push(ref);
          continue;
        }
        try {
          await this.delete(name, old.version);
          out.deleted.push(ref);
        } catch (err) {
          if (!(err instanceof UpdraftError) || (err.code !== 'CONFLICT' && err.code !== 'NOT_FOUND')) throw err;
          // NOT_FOUND: deleted meanwhile (by another operator or instance): gone either way
          if (err.code === 'NOT_FOUND') out.deleted.push(ref);
          else out.refused.push({ artifact: ref, reason: err.message });
        }
      }
    }
    return out;
  }

  /** The unfinished jobs' ids by the build they install (`name@version`), oldest first as `delete` names them. */
  private async unfinishedJobsByArtifact(): Promise<Map<string, string[]>> {
    const jobs: JobRecord[] = [];
    let after: string | undefined;
    do {
      const page = await this.deps.store.listJobs({ status: [...ACTIVE_JOB_STATUSES], limit: 500, omitSpec: true, ...(after ? { after } : {}) });
      jobs.push(...page.items);
      after = page.next;
    } while (after);
    const out = new Map<string, string[]>();
    for (const j of jobs.sort((a, b) => a.createdAt - b.createdAt)) {
      const ref = `${j.artifactName}@${j.artifactVersion}`;
      out.set(ref, [...(out.get(ref) ?? []), j.jobId]);
    }
    return out;
  }

  /**
   * Deletes the bytes `sha256` unless a record names them; whether it did. Run in the blob
   * turn: an add of the same bytes on this instance waits for it; one on another instance
   * finds them gone and is refused with CONFLICT, "add it again", by its own check.
   */
  private async dropIfUnnamed(sha256: string): Promise<boolean> {
    if ((await this.deps.store.countArtifactsWithBlob(sha256)) > 0) return false;
    this.deps.onBytesDeleted?.(sha256);
    return this.deps.blobs.delete(sha256);
  }

  /** Runs `work` once the work queued before it is done (a short section: no upload in it). */
  private inBlobTurn<T>(work: () => Promise<T>): Promise<T> {
    const run = this.blobTurn.then(work, work);
    this.blobTurn = run.catch(() => undefined);
    return run;
  }

  /** An artifact as the store has it now (not a record kept from before): for job creation. */
  /**
   * Runs the creation of a job for name@version (`create`, given the artifact's record read
   * after the guard is up): the artifact is not deleted here until it is done, and none is
   * created while it is being deleted (CONFLICT). Without it, a deletion could pass between
   * the creation's read of the record and its job row, the store's check seeing no job yet,
   * and devices would be sent a build that is gone. Instances sharing a database see each
   * other's through the store's lock (`withArtifactLock`: PostgreSQL advisory locks).
   */
  async whileCreatingJob<T>(name: string, version: string, create: (record: ArtifactRecord) => Promise<T>): Promise<T> {
    const key = `${name}@${version}`;
    if (this.deleting.has(key)) throw new UpdraftError('CONFLICT', `artifact ${key} is being deleted right now`);
    this.creating.set(key, (this.creating.get(key) ?? 0) + 1);
    try {
      const r = await this.deps.store.withArtifactLock(name, version, 'create', async () => create(await this.current(name, version)));
      if (!r.ran) throw new UpdraftError('CONFLICT', `artifact ${key} is being deleted right now on another instance`);
      return r.value;
    } finally {
      const n = (this.creating.get(key) ?? 1) - 1;
      if (n > 0) this.creating.set(key, n);
      else this.creating.delete(key);
    }
  }

  /**
   * CONFLICT when the storage answers that `record`'s bytes are not there (the blob file
   * removed, the S3 object deleted, or several instances each with an artifact directory of its
   * own, the build added through another): a job for it would fail every device it reaches
   * (soak QA). A storage that does not answer is no refusal: the rollout holds its sends until
   * it answers (rollout-engine.ts, storageAnswers).
   */
  async requireBytes(record: ArtifactRecord): Promise<void> {
    const size = await this.deps.blobs.stat(record.sha256).catch(() => null);
    if (size !== undefined) return;
    throw new UpdraftError(
      'CONFLICT',
      `the bytes of artifact ${record.name}@${record.version} (sha256 ${record.sha256.slice(0, 12)}…) are not in this server's artifact storage: restore them, or delete the build and add it again (with several instances, every one must share the artifact storage, --blob s3://...); no job was created`,
    );
  }

  async current(name: string, version: string): Promise<ArtifactRecord> {
    const found = await this.deps.store.getArtifact(name, version);
    if (!found) throw notFound(name, version);
    return found;
  }

  /** An artifact by name and version; NOT_FOUND naming it. */
  async get(name: string, version: string): Promise<ArtifactRecord> {
    const key = `${name}@${version}`;
    const held = this.records.get(key);
    if (held) return { ...held };
    const found = await this.deps.store.getArtifact(name, version);
    if (found) rememberLru(this.records, key, { ...found }, RECORD_CACHE);
    if (!found) throw notFound(name, version);
    return found;
  }

  /** A page of artifacts (only `name`'s when given), newest first; `after` is a `next` cursor. */
  list(options: { name?: string; after?: string; limit: number }): Promise<Page<ArtifactRecord>> {
    return this.deps.store.listArtifacts(options);
  }

  /** Every artifact (only `name`'s when given), newest first, read a page at a time (`prune`). */
  all(name?: string): Promise<ArtifactRecord[]> {
    return allArtifacts(this.deps.store, name);
  }
}

/** Why a build is not deleted: the unfinished jobs that install it (the store names up to 10). */
function inUse(name: string, version: string, jobIds: string[]): string {
  return `artifact ${name}@${version} is installed by jobs that are not finished (${jobIds.join(', ')}${jobIds.length === 10 ? ', …' : ''}); cancel them or let them finish, then delete it`;
}
