/**
 * Turns a device's desired software into its update command (pattern steps 5-6): a fresh
 * download URL bound to the device (or an S3 pre-signed one) and a manifest signed with the
 * operator's key, both expiring together (a frozen command cannot be replayed for long).
 *
 * The replica asks for a command with every delta, and a device in the middle of an update
 * gets a delta after each of its progress reports (the shadow contract: desired still
 * differs). Signing each one anew costs an Ed25519 signature per report, for a command the
 * agent already has and ignores; so the signed manifest (and its expiry) is reused for the
 * same job and artifact while it is young (a tenth of its lifetime, at most 30 s). The
 * manifest names no device (it vouches for the software and its freshness; the URL is what
 * binds a download to one device), so every device of a rollout wave shares one signature:
 * one per device was 2.5% of the server's CPU in a fleet update. The URL is asked for every
 * time, so it always carries the current key after a rotation; the HMAC signer gives the same
 * device the URL it signed for the same grant (same expiry, same key) without signing again.
 */
import { DEVICE_TIME_ZONE, type MaintenanceWindow } from '../protocol/maintenance-window.ts';
import type { RootRotation } from '../protocol/root-rotation.ts';
import type { DownloadUrlIssuer } from '../artifacts/download-url-issuer.ts';
import type { JsonObject } from '../protocol/json.ts';
import type { DesiredSoftware, SoftwareCommand } from '../protocol/software.ts';
import type { ManifestSigner, SignedManifest } from '../signing/manifest-signer.ts';
import type { StateStore } from '../store/state-store.ts';
import { rememberLru } from '../util/lru.ts';

/** What the command issuer needs. */
export interface UpdateCommandDeps {
  store: StateStore;
  urls: DownloadUrlIssuer;
  manifests: ManifestSigner;
  /** Lifetime of the URL and the manifest, in seconds. */
  ttlSeconds: number;
  /** The address to bind a device's URL to (`downloads.ipBinding mqtt`), if any. */
  addressOf?: (deviceId: string) => string | undefined;
  /** Milliseconds since the epoch (tests). */
  now?: () => number;
}

/** Signed manifests kept for reuse (least recently used dropped first); one per job and build. */
export const KEPT_MANIFESTS = 10_000;

/** A signed manifest, with the expiry it carries. */
interface SignedCommandPart {
  signed: SignedManifest;
  urlExpiresAt: number;
  /** The job's windows, in the device's own time zone, when it has them (`plan.timeZone: "device"`). */
  installWindows?: MaintenanceWindow[];
}

/** What a job's spec says of every command it sends (it never changes). */
interface JobTerms {
  allowDowngrade: boolean;
  installWindows?: MaintenanceWindow[];
}

/** A manifest kept for reuse: when it was asked for, and its signing (shared while it runs). */
interface KeptManifest {
  issuedAt: number;
  signing: Promise<SignedCommandPart>;
}

/** Issues (and briefly reuses) update commands. */
export class UpdateCommands {
  private readonly deps: UpdateCommandDeps;
  /** jobId → what its spec says of its commands; the promise, so concurrent deltas load a job once. */
  private readonly terms = new Map<string, Promise<JobTerms>>();
  /**
   * Kept manifests. The promise is kept, not its value: a wave of commands for one job asked
   * for in the same turn of the event loop would all miss an entry that is set only after the
   * job's spec is read, and each sign the same manifest (up to a window's worth of Ed25519
   * signatures at once; 0.7% of the server in a cycling rollout, profiled).
   */
  private readonly recent = new Map<string, KeptManifest>();

  constructor(deps: UpdateCommandDeps) {
    this.deps = deps;
  }

  /** The command for `software` on `deviceId` (the replica's CommandIssuer). */
  async issue(deviceId: string, sw: DesiredSoftware): Promise<SoftwareCommand> {
    const now = this.deps.now ? this.deps.now() : Date.now();
    const key = `${sw.jobId}\n${sw.sha256}\n${sw.name}\n${sw.version}\n${sw.size}`;
    const reuseMs = Math.min(30_000, (this.deps.ttlSeconds * 1000) / 10);
    let entry = this.recent.get(key);
    if (!entry || now - entry.issuedAt >= reuseMs) {
      const kept: KeptManifest = { issuedAt: now, signing: this.signManifest(sw, now) };
      rememberLru(this.recent, key, kept, KEPT_MANIFESTS);
      // a failure (the job's spec unreadable) is not kept: the next command tries again
      kept.signing.catch(() => this.recent.get(key) === kept && this.recent.delete(key));
      entry = kept;
    }
    const { urlExpiresAt, signed, installWindows } = await entry.signing;
    const ip = this.deps.addressOf?.(deviceId);
    const url = await this.deps.urls.issue({ deviceId, name: sw.name, version: sw.version, sha256: sw.sha256, expiresAt: urlExpiresAt, ...(ip ? { ip } : {}) });
    // field by field, not `{ ...sw, url, ...signed }`: a spread followed by new keys takes V8's
    // slow path in Node 20 (1.5-2 µs against 0.02), twice per updated device
    const command: SoftwareCommand = { name: sw.name, version: sw.version, sha256: sw.sha256, size: sw.size, jobId: sw.jobId, url, urlExpiresAt, manifest: signed.manifest, signature: signed.signature };
    if (installWindows) command.installWindows = installWindows as unknown as JsonObject[];
    // read per command, not kept with the manifest: a certificate installed while the server runs goes out at once
    const certificate = this.deps.manifests.certificate;
    if (certificate) {
      command.keyCertificate = certificate;
      // after a root rotation, the chain to the certificate's root (about 330 bytes a step): a device provisioned with an older root follows it
      const rotations = this.deps.manifests.rootRotations;
      if (rotations.length > 0) command.rootRotations = rotations as RootRotation[];
    }
    return command;
  }

  private async signManifest(sw: DesiredSoftware, now: number): Promise<SignedCommandPart> {
    const urlExpiresAt = Math.floor(now / 1000) + this.deps.ttlSeconds;
    const [terms, artifact] = await Promise.all([this.jobTerms(sw.jobId.split('.')[0]!), this.deps.store.getArtifact(sw.name, sw.version)]);
    const control = /\.(rollback|cancel)$/.exec(sw.jobId)?.[1];
    const takesBack = control !== undefined;
    // a downgrade is allowed when the job allows it, and for a rollback (back to what the
    // device ran before the job). Never for a stay (cancel): it names what the device reported
    // running, so it is no downgrade for a device that runs it. One that finished the job
    // before the cancel reached it (offline, its reports not yet in) refuses the stay instead
    // of being taken back from the job's build; and a stay replayed into another device's
    // delta cannot take that device back either
    const allowDowngrade = control === 'rollback' || (control === undefined && terms.allowDowngrade);
    // what the build may be installed on, signed: the device checks it before downloading.
    // Taking a device back to what it ran is a path it has been on: its hardware still counts,
    // not the versions the build installs over
    let compatibility = artifact?.sha256 === sw.sha256 ? artifact.compatibility : undefined;
    if (takesBack && compatibility?.requires !== undefined) compatibility = compatibility.deviceTypes ? { deviceTypes: compatibility.deviceTypes } : undefined;
    const signed = this.deps.manifests.sign(sw, urlExpiresAt, allowDowngrade, compatibility);
    // the device holds the install until a window opens where it is; a command that takes it
    // back (a rollback, a cancel) is not held: it undoes what should not be there
    return { signed, urlExpiresAt, ...(terms.installWindows && !takesBack ? { installWindows: terms.installWindows } : {}) };
  }

  /** A job's spec never changes: remember what it says of its commands instead of loading (and parsing) the job per delta. */
  private jobTerms(jobId: string): Promise<JobTerms> {
    const known = this.terms.get(jobId);
    if (known) return known;
    const loading = this.deps.store.getJob(jobId).then((job): JobTerms => {
      // an unknown job (a command written by hand) is looked up again next time
      if (!job) this.terms.delete(jobId);
      const plan = job?.spec?.plan as { timeZone?: string; windows?: MaintenanceWindow[] } | undefined;
      const windows = plan?.timeZone === DEVICE_TIME_ZONE ? plan.windows : undefined;
      return { allowDowngrade: job?.spec?.allowDowngrade === true, ...(windows ? { installWindows: windows } : {}) };
    });
    loading.catch(() => this.terms.delete(jobId));
    if (this.terms.size >= 10_000) this.terms.delete(this.terms.keys().next().value!);
    this.terms.set(jobId, loading);
    return loading;
  }
}
