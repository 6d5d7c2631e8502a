/**
 * The software section of the shadow (docs/design.md §3): what an operator desires, what the
 * device reports, and the update command the device receives in its delta.
 */
import { UpdraftError } from '../errors.ts';
import { statusDetailsOf } from './aws-jobs-messages.ts';
import { isJsonObject, type JsonObject } from './json.ts';

/** `state.desired.software`, written by a deployment or rollout (pattern step 3). */
export interface DesiredSoftware {
  /** Artifact name, e.g. `fw`. */
  name: string;
  /** Semantic version of the build, e.g. `2.0.0`. */
  version: string;
  /** Lower-case hex SHA-256 of the artifact bytes. */
  sha256: string;
  /** Size in bytes: the agent stops reading past it. */
  size: number;
  /** Globally unique id of the job this desired state belongs to (Command pattern). */
  jobId: string;
}

/**
 * The update command a device takes from its delta (pattern steps 5-6): the whole desired
 * software section plus a freshly signed, device-scoped, expiring download URL. It is
 * built when the delta is published and never stored, because a stored URL would expire
 * while a device is offline.
 */
export interface SoftwareCommand extends DesiredSoftware {
  /** Pre-signed download URL, valid only for this device and artifact, until `urlExpiresAt`. */
  url: string;
  /** Expiry of `url`, in seconds since the epoch. */
  urlExpiresAt: number;
  /**
   * What the server vouches for (a `SoftwareManifest`, see `manifest.ts`), signed when the delta is issued.
   * Kept as received: the agent validates it with `parseManifest` and refuses the job, with
   * the reason, when it is missing, malformed or not signed by its key.
   */
  manifest?: JsonObject;
  /** Base64 Ed25519 signature over `manifestBytes(manifest)`. */
  signature?: string;
  /**
   * The root's certificate of the key that signed the manifest (a `KeyCertificate`, see
   * `key-certificate.ts`), when the server has one: what a device provisioned with the root
   * key verifies the manifest's key by. Kept as received, like the manifest.
   */
  keyCertificate?: JsonObject;
  /**
   * The rotations of the offline root from the first root to the certificate's (each a
   * `RootRotation`, see `root-rotation.ts`), when it was replaced: a device provisioned with an
   * older root follows them. Kept as received, like the certificate.
   */
  rootRotations?: JsonObject[];
  /**
   * The job's maintenance windows in the device's own time zone (`plan.timeZone: "device"`):
   * the agent downloads and verifies at once, and installs when one is open in its local
   * time, reporting the wait meanwhile. Kept as received; the agent checks them.
   */
  installWindows?: JsonObject[];
}

/** The agent's update phases, reported in `state.reported.software.status`. */
export const AGENT_STATUSES = ['IDLE', 'DOWNLOADING', 'VERIFYING', 'INSTALLING', 'SUCCESS', 'FAILURE'] as const;
/** One of the agent's update phases; SUCCESS and FAILURE end a job (pattern step 8). */
export type AgentStatus = (typeof AGENT_STATUSES)[number];

/** `state.reported.software`, written by the device: the truth about what runs. */
export interface ReportedSoftware {
  /** Name of the software that runs now. */
  name?: string;
  /** Version that runs now; after a rollback, the old one. */
  version: string;
  /** SHA-256 of what runs now, when known. */
  sha256?: string;
  /** Size of what runs now, when known. */
  size?: number;
  /** The job this report is about (the last one the agent handled). */
  jobId?: string;
  /**
   * A SUCCESS of `jobId` repeated after the device moved on to other software (a server whose
   * database went back asks again for a job finished before): the version that job installed,
   * where `version` stays what runs now. Absent (null in the agent's reports) otherwise.
   */
  jobVersion?: string;
  /** The agent's phase for `jobId`. */
  status: AgentStatus;
  /** Download progress 0..1 while DOWNLOADING. */
  progress?: number;
  /** Why the job failed, when status is FAILURE. */
  error?: string;
  /** On a device that trusts the offline root key: the newest key certificate serial it has accepted (older ones it refuses). */
  keySerial?: number;
  /** While VERIFYING: the device's install gate put the install off (absent or null otherwise). */
  waiting?: InstallWait;
  /**
   * AWS Jobs `statusDetails` for `jobId`, written by the AWS jobs door (docs/aws-compatibility.md);
   * read as AWS bounds them (`statusDetailsOf`: the well-formed entries).
   */
  statusDetails?: Record<string, string>;
}

/**
 * Whether a FAILURE's `error` says the device called its job off because the server asked it
 * to, rather than that the job failed: the agent's words (src/agent/agent.ts) for a job a newer
 * command superseded, a stay (`<id>.cancel`) included (`superseded by job <id>`), or whose
 * desired software was cleared or shadow deleted (`canceled: ...`). A FAILURE without a reason
 * is taken as called off too. The execution tracker records such a FAILURE of a job being
 * stopped as its cancellation, and any other as a failure (docs/rollouts.md, Cancel).
 */
export function isCalledOff(error: string | undefined): boolean {
  return error === undefined || error.startsWith(SUPERSEDED_BY) || error.startsWith(CANCELED_BY_SERVER);
}

const SUPERSEDED_BY = 'superseded by job ';
const CANCELED_BY_SERVER = 'canceled: ';

/** The reasons an agent gives a job it calls off, which `isCalledOff` knows (the agent writes them only through these). */
export const calledOff = {
  /** Its command replaced by job `jobId`'s (a stay included). */
  supersededBy: (jobId: string): string => `${SUPERSEDED_BY}${jobId}`,
  /** Its desired software cleared or its shadow deleted: `why`. */
  canceled: (why: string): string => `${CANCELED_BY_SERVER}${why}`,
} as const;

/**
 * `reported.software.waiting`: a verified build the device's install gate put off ("not
 * now": a low battery, a vehicle in motion). Each new one (another `count`) restarts the
 * job's step timer, with `nextCheckInSeconds` more: the device asks its gate again by then
 * and reports INSTALLING or another `waiting`. A device that goes silent still times out.
 */
export interface InstallWait {
  /** Why, as the gate said it (at most `MAX_WAIT_REASON` characters). */
  reason: string;
  /** How many times in a row the gate put this job's install off (1, 2, …). */
  count: number;
  /** When the device asks its gate again, in seconds from this report (at most a day). */
  nextCheckInSeconds: number;
}

/** Longest `waiting.reason` accepted; the agent shortens longer ones. */
export const MAX_WAIT_REASON = 500;
/** Longest `waiting.nextCheckInSeconds` accepted: a day. */
export const MAX_WAIT_CHECK_SECONDS = 86_400;

/** The install wait in `value`, or undefined when it is not a well-formed one. */
export function parseInstallWait(value: unknown): InstallWait | undefined {
  if (!isJsonObject(value)) return undefined;
  const { reason, count, nextCheckInSeconds } = value;
  if (typeof reason !== 'string' || reason.length > MAX_WAIT_REASON) return undefined;
  if (typeof count !== 'number' || !Number.isSafeInteger(count) || count < 1) return undefined;
  if (typeof nextCheckInSeconds !== 'number' || !(nextCheckInSeconds > 0 && nextCheckInSeconds <= MAX_WAIT_CHECK_SECONDS)) return undefined;
  return { reason, count, nextCheckInSeconds };
}

const SHA256_HEX = /^[0-9a-f]{64}$/;
/**
 * Semantic version 2.0.0 (https://semver.org), prerelease and build allowed, as §9 and §10
 * define them: dot-separated identifiers, none empty (`1.0.0-rc..1`, `1.0.0-`), and a numeric
 * prerelease identifier without leading zeros (`1.0.0-rc.01` is refused: `01` and `1` would
 * be two spellings of one precedence; `0a` is alphanumeric and fine). Build identifiers may
 * have leading zeros (§10). This is semver.org's own suggested expression.
 */
const PRERELEASE_ID = '(?:0|[1-9]\\d*|\\d*[A-Za-z-][0-9A-Za-z-]*)';
export const SEMVER = new RegExp(
  `^(0|[1-9]\\d*)\\.(0|[1-9]\\d*)\\.(0|[1-9]\\d*)(?:-${PRERELEASE_ID}(?:\\.${PRERELEASE_ID})*)?(?:\\+[0-9A-Za-z-]+(?:\\.[0-9A-Za-z-]+)*)?$`,
);

/**
 * The spelling versions had before SEMVER followed §9 and §10 (2026-12-05): prerelease and
 * build as any run of `[0-9A-Za-z.-]`, so `2.0.0-rc.01` and `2.0.0-rc..1` too. New names are
 * checked with SEMVER (an artifact's version, `requires`, `--initial-version`); what was
 * stored or is reported is read with this one: a build added before, its jobs, the desired
 * state naming it and a device running it must keep working after an upgrade (an artifact
 * of such a version was left undeployable: every command write refused, QA).
 */
export const STORED_SEMVER = /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$/;

function field(obj: JsonObject, key: string, type: 'string' | 'number', where: string): string | number {
  const v = obj[key];
  if (typeof v !== type) throw new UpdraftError('BAD_REQUEST', `${where}.${key} must be a ${type}`);
  return v as string | number;
}

/** Validates `desired.software` as written by an operator; throws BAD_REQUEST naming the field. */
export function parseDesiredSoftware(value: unknown, where = 'software'): DesiredSoftware {
  if (!isJsonObject(value)) throw new UpdraftError('BAD_REQUEST', `${where} must be an object`);
  const name = field(value, 'name', 'string', where) as string;
  const version = field(value, 'version', 'string', where) as string;
  const sha256 = field(value, 'sha256', 'string', where) as string;
  const size = field(value, 'size', 'number', where) as number;
  const jobId = field(value, 'jobId', 'string', where) as string;
  if (!STORED_SEMVER.test(version)) throw new UpdraftError('BAD_REQUEST', `${where}.version must be a semantic version like 2.0.0`);
  if (!SHA256_HEX.test(sha256)) throw new UpdraftError('BAD_REQUEST', `${where}.sha256 must be 64 lower-case hex digits`);
  if (!Number.isSafeInteger(size) || size < 0) throw new UpdraftError('BAD_REQUEST', `${where}.size must be a non-negative integer`);
  if (jobId.length === 0 || jobId.length > 128) throw new UpdraftError('BAD_REQUEST', `${where}.jobId must be 1 to 128 characters`);
  return { name, version, sha256, size, jobId };
}

/**
 * Checks `reported.software` as a device writes it (server side): the section the server
 * reads to decide a job's outcome and what a device runs. A report is a partial update, so
 * only the fields present are checked, and `null` deletes one; other fields are left to the
 * device. Without this, a device that reported `"status": "SUCESS"` or a numeric version had
 * its report stored and silently ignored, and its job waited for its timeout.
 * Throws BAD_REQUEST naming the field.
 */
export function checkReportedSoftware(value: unknown, where = 'state.reported.software'): void {
  if (value === null || value === undefined) return;
  if (!isJsonObject(value)) throw new UpdraftError('BAD_REQUEST', `${where} must be an object`);
  for (const key of ['name', 'version', 'sha256', 'jobId', 'jobVersion', 'error'] as const) {
    const v = value[key];
    if (v !== undefined && v !== null && typeof v !== 'string') throw new UpdraftError('BAD_REQUEST', `${where}.${key} must be a string`);
  }
  const { status, size, progress } = value;
  if (status !== undefined && status !== null && !(AGENT_STATUSES as readonly unknown[]).includes(status)) {
    throw new UpdraftError('BAD_REQUEST', `${where}.status must be one of ${AGENT_STATUSES.join(', ')}`);
  }
  if (size !== undefined && size !== null && !(typeof size === 'number' && Number.isSafeInteger(size) && size >= 0)) {
    throw new UpdraftError('BAD_REQUEST', `${where}.size must be a non-negative integer`);
  }
  if (progress !== undefined && progress !== null && !(typeof progress === 'number' && progress >= 0 && progress <= 1)) {
    throw new UpdraftError('BAD_REQUEST', `${where}.progress must be a number from 0 to 1`);
  }
  const keySerial = value.keySerial;
  if (keySerial !== undefined && keySerial !== null && !(typeof keySerial === 'number' && Number.isSafeInteger(keySerial) && keySerial >= 0)) {
    throw new UpdraftError('BAD_REQUEST', `${where}.keySerial must be a non-negative integer`);
  }
  const waiting = value.waiting;
  if (waiting !== undefined && waiting !== null && !parseInstallWait(waiting)) {
    throw new UpdraftError('BAD_REQUEST', `${where}.waiting must be null or {reason: a string of at most ${MAX_WAIT_REASON} characters, count: a whole number from 1, nextCheckInSeconds: above 0 and at most ${MAX_WAIT_CHECK_SECONDS}}`);
  }
}

/** Validates an update command taken from a delta (agent side). */
export function parseSoftwareCommand(value: unknown): SoftwareCommand {
  const base = parseDesiredSoftware(value, 'delta.software');
  const obj = value as JsonObject;
  const url = field(obj, 'url', 'string', 'delta.software') as string;
  const urlExpiresAt = field(obj, 'urlExpiresAt', 'number', 'delta.software') as number;
  // built field by field: in Node 20 a spread followed by new keys (`{ ...base, url }`) takes
  // V8's slow path, 1.5-2 µs against 0.02, and this runs for every delta a device receives
  const out: SoftwareCommand = { name: base.name, version: base.version, sha256: base.sha256, size: base.size, jobId: base.jobId, url, urlExpiresAt };
  // an unsigned or malformed manifest is not refused here: the agent decides, and reports why
  if (isJsonObject(obj.manifest)) out.manifest = obj.manifest;
  if (typeof obj.signature === 'string') out.signature = obj.signature;
  if (isJsonObject(obj.keyCertificate)) out.keyCertificate = obj.keyCertificate;
  if (Array.isArray(obj.rootRotations)) out.rootRotations = obj.rootRotations as JsonObject[];
  if (Array.isArray(obj.installWindows)) out.installWindows = obj.installWindows as JsonObject[];
  return out;
}

/** Validates `reported.software` (server side, to drive job outcomes); undefined if absent. */
export function parseReportedSoftware(value: unknown): ReportedSoftware | undefined {
  if (!isJsonObject(value)) return undefined;
  const version = value.version;
  const status = value.status;
  if (typeof version !== 'string') return undefined;
  if (typeof status !== 'string' || !(AGENT_STATUSES as readonly string[]).includes(status)) return undefined;
  const out: ReportedSoftware = { version, status: status as AgentStatus };
  if (typeof value.name === 'string') out.name = value.name;
  if (typeof value.sha256 === 'string') out.sha256 = value.sha256;
  if (typeof value.size === 'number') out.size = value.size;
  if (typeof value.jobId === 'string') out.jobId = value.jobId;
  if (typeof value.jobVersion === 'string') out.jobVersion = value.jobVersion;
  if (typeof value.progress === 'number') out.progress = value.progress;
  if (typeof value.error === 'string') out.error = value.error;
  const waiting = value.waiting === undefined || value.waiting === null ? undefined : parseInstallWait(value.waiting);
  if (waiting) out.waiting = waiting;
  const statusDetails = value.statusDetails === undefined ? undefined : statusDetailsOf(value.statusDetails);
  if (statusDetails) out.statusDetails = statusDetails;
  return out;
}

/**
 * The version a report says its job (`jobId`) installed: `jobVersion` for a SUCCESS repeated
 * after the device moved on, else the version that runs.
 */
export function installedByJob(reported: ReportedSoftware): string {
  return reported.status === 'SUCCESS' && reported.jobVersion !== undefined ? reported.jobVersion : reported.version;
}

/**
 * Compares two semantic versions by precedence (semver §11): -1, 0 or 1. Numeric parts and
 * numeric prerelease identifiers compare as digit strings (length, then digit by digit),
 * never through Number(): parts past 2^53 (`9007199254740993` is not `...992`) and past
 * 1e308 (Infinity - Infinity gave NaN) keep their order.
 */
export function compareSemver(a: string, b: string): number {
  const pa = STORED_SEMVER.exec(a);
  const pb = STORED_SEMVER.exec(b);
  if (!pa || !pb) return a < b ? -1 : a > b ? 1 : 0;
  for (let i = 1; i <= 3; i++) {
    const d = compareDigits(pa[i]!, pb[i]!);
    if (d !== 0) return d;
  }
  const preA = a.split('+')[0]!.split('-').slice(1).join('-');
  const preB = b.split('+')[0]!.split('-').slice(1).join('-');
  if (preA === preB) return 0;
  if (preA === '') return 1;
  if (preB === '') return -1;
  const xa = preA.split('.');
  const xb = preB.split('.');
  for (let i = 0; i < Math.max(xa.length, xb.length); i++) {
    const ia = xa[i];
    const ib = xb[i];
    if (ia === undefined) return -1;
    if (ib === undefined) return 1;
    const na = /^\d+$/.test(ia);
    const nb = /^\d+$/.test(ib);
    if (na && nb) {
      const d = compareDigits(ia, ib);
      if (d !== 0) return d;
    }
    if (na !== nb) return na ? -1 : 1;
    // equal numbers written differently (`01`, which §9 forbids but versions stored before
    // SEMVER followed it may hold) keep an order
    if (ia !== ib) return ia < ib ? -1 : 1;
  }
  return 0;
}

/** Orders two runs of decimal digits by value: leading zeros dropped, then length, then digit by digit. */
function compareDigits(a: string, b: string): number {
  const x = a.replace(/^0+(?=\d)/, '');
  const y = b.replace(/^0+(?=\d)/, '');
  if (x.length !== y.length) return x.length < y.length ? -1 : 1;
  return x < y ? -1 : x > y ? 1 : 0;
}
