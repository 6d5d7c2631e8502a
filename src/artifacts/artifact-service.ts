/**
 * The artifact catalogue (pattern step 2): stores a build's bytes in the blob store, records
 * name, version, SHA-256 and size in the state store, and resolves `name@version` references.
 */
import type { Readable } from 'node:stream';
import { UpdraftError } from '../errors.ts';
import { SEMVER } from '../protocol/software.ts';
import { isValidId } from '../protocol/topics.ts';
import type { ArtifactRecord, StateStore } from '../store/state-store.ts';
import { rememberLru } from '../util/lru.ts';
import type { BlobStore } from './blob-store.ts';

/**
 * Records kept in memory: name@version is immutable and never deleted, so a record read once
 * is right on every instance for ever (every download resolves its artifact: 2% of the
 * server's CPU in a fleet update, profiled).
 */
const RECORD_CACHE = 1000;

/** Parses `fw@2.0.0` into name and version; BAD_REQUEST naming the expected form. */
export function parseArtifactRef(ref: string): { name: string; version: string } {
  const at = ref.lastIndexOf('@');
  if (at <= 0 || at === ref.length - 1) throw new UpdraftError('BAD_REQUEST', `artifact reference "${ref}" must look like name@version, e.g. fw@2.0.0`);
  return { name: ref.slice(0, at), version: ref.slice(at + 1) };
}

/** Validates an artifact name and version; BAD_REQUEST naming the problem. */
export function checkArtifactId(name: string, version: string): void {
  if (!isValidId(name)) throw new UpdraftError('BAD_REQUEST', `artifact name "${name}" must be 1-128 characters of letters, digits, _ . : -`);
  if (!SEMVER.test(version)) throw new UpdraftError('BAD_REQUEST', `artifact version "${version}" must be a semantic version like 2.0.0`);
}

/** What the catalogue needs. */
export interface ArtifactServiceDeps {
  store: StateStore;
  blobs: BlobStore;
  maxArtifactBytes: number;
  /** Signs a new artifact's record (pattern step 2: stored, hashed, signed); the signature is recorded with it. */
  sign?: (artifact: { name: string; version: string; sha256: string; size: number }) => string;
}

/** Adds, lists and resolves artifacts. */
export class ArtifactService {
  private readonly deps: ArtifactServiceDeps;
  private readonly records = new Map<string, ArtifactRecord>();

  constructor(deps: ArtifactServiceDeps) {
    this.deps = deps;
  }

  /** Stores a build; CONFLICT if name@version exists (versions are immutable). */
  async add(name: string, version: string, source: Readable): Promise<ArtifactRecord> {
    checkArtifactId(name, version);
    if (await this.deps.store.getArtifact(name, version)) {
      source.resume();
      throw new UpdraftError('CONFLICT', `artifact ${name}@${version} already exists; versions are immutable, add a new version`);
    }
    const blob = await this.deps.blobs.write(source, this.deps.maxArtifactBytes);
    // an empty build is a mistake (a wrong path, a failed build step), and a device would
    // install nothing in place of its software; the empty blob left behind is zero bytes
    if (blob.size === 0) throw new UpdraftError('BAD_REQUEST', `artifact ${name}@${version} is empty (0 bytes): there is nothing to install`);
    const record: ArtifactRecord = { name, version, sha256: blob.sha256, size: blob.size, createdAt: Date.now() };
    if (this.deps.sign) record.signature = this.deps.sign(record);
    await this.deps.store.putArtifact(record);
    return record;
  }

  /** An artifact by name and version; NOT_FOUND naming it. */
  async get(name: string, version: string): Promise<ArtifactRecord> {
    const key = `${name}@${version}`;
    const held = this.records.get(key);
    if (held) return { ...held };
    const found = await this.deps.store.getArtifact(name, version);
    if (found) rememberLru(this.records, key, { ...found }, RECORD_CACHE);
    if (!found) throw new UpdraftError('NOT_FOUND', `artifact ${name}@${version} does not exist; add it with: updraft artifact add <file> --name ${name} --version ${version}`);
    return found;
  }

  /** Every artifact, newest first. */
  list(): Promise<ArtifactRecord[]> {
    return this.deps.store.listArtifacts();
  }
}
