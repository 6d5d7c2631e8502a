/**
 * What the agent must remember across a crash or power cut: the update in flight (written
 * BEFORE acting on it, so a restart resumes instead of starting blind) and the outcomes of
 * recent jobs (so a duplicate command is acknowledged, not applied twice). Kept in one small
 * JSON file, replaced atomically.
 */
import { mkdir, readFile, rename } from 'node:fs/promises';
import path from 'node:path';
import { UpdraftError, asUpdraftError } from '../errors.ts';
import { parseInstallWait, parseSoftwareCommand, type InstallWait, type SoftwareCommand } from '../protocol/software.ts';
import { silentLogger, type Logger } from '../util/logger.ts';
import { writeFileAtomic } from '../util/atomic-file.ts';
import type { JobLogData } from './job-log.ts';

/**
 * Persisted phase of the update in flight. REPORTING: the outcome is known (and acted on)
 * but the server has not yet acknowledged the final report (pattern step 9).
 */
export type InFlightPhase = 'DOWNLOADING' | 'VERIFYING' | 'INSTALLING' | 'REPORTING';

/** Legal phase changes; anything else is a bug and is refused. */
export const PHASE_TRANSITIONS: Readonly<Record<InFlightPhase, readonly InFlightPhase[]>> = {
  DOWNLOADING: ['VERIFYING', 'REPORTING'],
  VERIFYING: ['INSTALLING', 'DOWNLOADING', 'REPORTING'],
  // back to VERIFYING: recovery found the install never started, so it runs again
  INSTALLING: ['VERIFYING', 'REPORTING'],
  REPORTING: [],
};

/** Throws INTERNAL unless `from → to` is in the transition table. */
export function checkTransition(from: InFlightPhase, to: InFlightPhase): void {
  if (!PHASE_TRANSITIONS[from].includes(to)) throw new UpdraftError('INTERNAL', `illegal update phase change ${from} -> ${to}`);
}

/** How a job ended on this device. */
export interface JobOutcome {
  status: 'SUCCESS' | 'FAILURE';
  /** Why it failed. */
  error?: string;
}

/** The update being applied. */
export interface InFlightUpdate {
  jobId: string;
  /** The command as last received (its URL may have been refreshed since). */
  command: SoftwareCommand;
  phase: InFlightPhase;
  /** ISO time the job started on this device. */
  startedAt: string;
  /** Set in phase REPORTING. */
  outcome?: JobOutcome;
  /** In phase VERIFYING: the install gate put the install off (reported as `software.waiting`). */
  waiting?: InstallWait;
  /** In phase VERIFYING: how long (ms, the monotonic clock) the install gate has put the install off so far; a restart goes on from it. */
  gateWaitedMs?: number;
  /**
   * The one fetch from the start (a resumed file failed verification) is made for this job's
   * download: a restart does not allow another. Absent (a state of an older agent too): not yet.
   */
  fetchedFromStart?: true;
  /** The job's log so far (`job-log.ts`), saved with each phase. */
  log?: JobLogData;
}

/** A job this device finished and whose outcome the server acknowledged. */
export interface FinishedJob extends JobOutcome {
  jobId: string;
  /**
   * SUCCESS: the version this job installed. A re-report after the device moved on names it
   * (`jobVersion`). Absent in a state saved by an older agent: the re-report says what runs.
   */
  installed?: string;
  /** ISO time of the outcome. */
  finishedAt: string;
}

/** Everything the agent persists. */
export interface AgentStateData {
  inFlight?: InFlightUpdate;
  /** Most recent last; bounded by `MAX_FINISHED_JOBS`. */
  finished: FinishedJob[];
  /** The highest key certificate serial accepted (a device trusting the root key): lower ones are refused. */
  keySerial?: number;
  /** The signing key that certificate certifies: older certificates of it are still accepted. */
  keySerialKeyId?: string;
  /** The clock offset (seconds) last put in `reported.agent.clockOffsetSeconds`, if one was. */
  clockOffsetReported?: number;
  /**
   * The root this device took from a command's root rotations (a device trusting the root
   * key): trusted instead of the provisioned root, `provisionedKeyId`, while that one is the
   * root the agent is given (a device given another root by hand trusts that one).
   */
  rotatedRoot?: { keyId: string; publicKey: string; provisionedKeyId: string };
  /** The log of the last failed job, until the server took it (or refused it for good), and since when (ISO). */
  pendingLog?: JobLogData & { jobId: string; since: string };
  /**
   * Set by a store that had no state to give (none saved yet, or lost: unreadable, deleted),
   * or whose state may be older than what the device reported (the file store, at every
   * load: a save a full or read-only disk refused, until a kill or power cut, lost a job's
   * outcome the server had acknowledged): what this device did before is not known here, or
   * not all of it. Before its first report (which would overwrite it) the agent takes the
   * outcome its shadow still holds, the last one it reported, as a finished job when it
   * does not know it, so that a job it finished is not run again; then clears it.
   */
  unknownPast?: true;
  /**
   * Job ids the server took back from this device (a stay command `<id>.cancel` was heard),
   * most recent last, bounded by `MAX_CANCELED_JOBS`. A command naming one of them is a late
   * one (held by a server instance cut off from the broker, say) and is never acted on: job ids
   * are unique and a canceled one never comes back (a retry has its own id, `<id>.<attempt>`).
   */
  canceled?: string[];
}

/** How many finished jobs are remembered (duplicates of older ones are not expected). */
export const MAX_FINISHED_JOBS = 16;

/** How many canceled job ids are remembered (`canceled`). */
export const MAX_CANCELED_JOBS = 64;

/** Where the agent state lives. */
export interface AgentStateStore {
  /** The saved state, or an empty one. */
  load(): Promise<AgentStateData>;
  /** Replaces the saved state; durable when the promise resolves. */
  save(state: AgentStateData): Promise<void>;
}

/** Appends `job` to `finished`, dropping an older entry of the same job and the oldest beyond the bound. */
export function rememberFinished(finished: FinishedJob[], job: FinishedJob): FinishedJob[] {
  const next = finished.filter((f) => f.jobId !== job.jobId);
  next.push(job);
  return next.slice(-MAX_FINISHED_JOBS);
}

/** A new list: `canceled` with `jobId` last (moved there when it held it), the oldest dropped beyond `MAX_CANCELED_JOBS`. */
export function rememberCanceled(canceled: readonly string[] | undefined, jobId: string): string[] {
  const next = (canceled ?? []).filter((id) => id !== jobId);
  next.push(jobId);
  return next.slice(-MAX_CANCELED_JOBS);
}

/** `<stateDir>/agent-state.json`, written with temp file + fsync + rename. */
export class FileAgentStateStore implements AgentStateStore {
  readonly file: string;
  private readonly log: Logger;
  /** Saves run one after another, so an older state can never land after a newer one. */
  private chain: Promise<void> = Promise.resolve();

  constructor(file: string, logger?: Logger) {
    this.file = file;
    this.log = (logger ?? silentLogger).child('agent-state');
  }

  async load(): Promise<AgentStateData> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (err) {
      // a first start, or a state directory wiped since: the shadow tells what was finished
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { finished: [], unknownPast: true };
      throw new UpdraftError('CONFIG', `cannot read ${this.file}: ${asUpdraftError(err).message}`, { cause: err });
    }
    try {
      // a save the disk refused (full, read-only) may have lost the last outcome, acknowledged
      // by the server, before the agent was killed: its shadow says (agent.ts learnPast)
      return { ...sanitize(JSON.parse(text)), unknownPast: true };
    } catch (err) {
      // the file is replaced atomically, so this is outside damage: keep it for inspection
      const aside = `${this.file}.corrupt-${Date.now()}`;
      await rename(this.file, aside).catch(() => {});
      this.log.warn('agent state unreadable, starting without it', { file: aside, error: asUpdraftError(err).message });
      return { finished: [], unknownPast: true };
    }
  }

  save(state: AgentStateData): Promise<void> {
    const data = JSON.stringify({ version: 1, ...state }, null, 2) + '\n';
    const run = this.chain.then(async () => {
      try {
        await mkdir(path.dirname(this.file), { recursive: true });
        await writeFileAtomic(this.file, data);
      } catch (err) {
        // said as the job's failure reason on the server: name the file and the disk's answer
        throw new UpdraftError('INTERNAL', `cannot save the agent's state in ${this.file}: ${asUpdraftError(err).message}`, { cause: err });
      }
    });
    this.chain = run.catch(() => {});
    return run;
  }
}

/**
 * Keeps the state in memory (simulator, tests): nothing survives the process. What it keeps
 * is what was saved, not a copy: the agent replaces the objects of its state (a new
 * in-flight record per phase, a new list of finished jobs), never changes them, so sharing
 * them is safe (`test/agent/agent.test.ts` holds the agent to it). A copy per save cost a
 * cycling simulator 1.8-3.2% of its CPU (JSON; structuredClone before it, more), and
 * freezing what was saved 1.3%, profiled.
 */
export class MemoryAgentStateStore implements AgentStateStore {
  private saved: AgentStateData;

  /**
   * `initial`: what the device kept from an earlier run (the simulator's devices file). Without
   * it the store has nothing saved and says so (`unknownPast`), as the file store does with no
   * file: the agent takes what its shadow says it finished before acting on a command. A device
   * whose last job FAILED, with desired still naming it, ran that job again and reported SUCCESS
   * under the job the server keeps FAILED (QA).
   */
  constructor(initial: AgentStateData = { finished: [], unknownPast: true }) {
    this.saved = { ...initial, finished: [...initial.finished] };
  }

  /** What was saved last (read, not changed: see above). */
  get current(): Readonly<AgentStateData> {
    return this.saved;
  }

  async load(): Promise<AgentStateData> {
    return { ...this.saved };
  }

  async save(state: AgentStateData): Promise<void> {
    // the top level is copied: the agent sets and deletes its fields on its own object
    this.saved = { ...state };
  }
}

const PHASES: readonly string[] = Object.keys(PHASE_TRANSITIONS);

/** The well-formed entries of a saved list of finished jobs (a job id, SUCCESS or FAILURE), the latest `MAX_FINISHED_JOBS`; [] for what is not a list. */
export function finishedJobsOf(raw: unknown): FinishedJob[] {
  if (!Array.isArray(raw)) return [];
  return (raw as FinishedJob[])
    .filter((f) => typeof f?.jobId === 'string' && (f.status === 'SUCCESS' || f.status === 'FAILURE'))
    .slice(-MAX_FINISHED_JOBS)
    .map((f) => {
      // a SUCCESS's reason that is no string is left out by outcomeOf: the spread kept it (QA)
      const { error: _e, installed, ...rest } = f;
      return { ...rest, ...outcomeOf(f), ...(f.status === 'SUCCESS' && typeof installed === 'string' ? { installed } : {}) };
    });
}

/**
 * A failure reason is cut to this many characters, and to this many bytes of JSON text
 * (`cutReason`): it is reported as it is (QA: one of 100,000).
 */
export const MAX_SAVED_ERROR_CHARS = 2000;

/** Bytes of `text` written as a JSON string, its quotes left out: what it weighs in a report. */
function jsonBytes(text: string): number {
  return Buffer.byteLength(JSON.stringify(text)) - 2;
}

/**
 * `text` as it can be reported: unchanged when it has at most MAX_SAVED_ERROR_CHARS
 * characters and as many bytes of JSON; else its longest beginning that fits with `tail`
 * after it. Bytes count too: a control character is 6 bytes of JSON (`\u0001`) and a CJK one
 * 3, so 2,000 characters of a script's binary output made a report of 12 KB, which the server
 * refuses (its shadow documents take 8 KiB by default): the agent sent it again at each
 * reconnect and the job waited for its timeout (QA, 2026-12-06). Never cut between the two
 * halves of a surrogate pair.
 */
export function cutReason(text: string, tail: string): string {
  if (text.length <= MAX_SAVED_ERROR_CHARS && jsonBytes(text) <= MAX_SAVED_ERROR_CHARS) return text;
  const room = MAX_SAVED_ERROR_CHARS - jsonBytes(tail);
  // a beginning of n code units, less a high surrogate it would end on (never half a pair):
  // its bytes then grow with n (a lone high surrogate is 6 bytes of JSON, its pair 4, which
  // made the search skip a fitting length, review), so a binary search finds the longest that
  // fits in a dozen JSON.stringify calls
  const whole = (n: number): number => {
    const last = text.charCodeAt(n - 1);
    return n > 0 && last >= 0xd800 && last <= 0xdbff ? n - 1 : n;
  };
  let lo = 0;
  let hi = Math.min(text.length, room);
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (jsonBytes(text.slice(0, whole(mid))) <= room) lo = mid;
    else hi = mid - 1;
  }
  return text.slice(0, whole(lo)) + tail;
}

/**
 * A saved outcome as it can be reported: its reason a string of at most
 * MAX_SAVED_ERROR_CHARS (the server refuses a report whose error is no string, and the job
 * then waited for its timeout, QA); a FAILURE whose reason is damaged says so.
 */
function outcomeOf(o: JobOutcome): JobOutcome {
  const out: JobOutcome = { status: o.status };
  const error: unknown = o.error;
  if (typeof error === 'string') out.error = cutReason(error, '…');
  else if (o.status === 'FAILURE' && error !== undefined) out.error = 'the reason saved on the device is unreadable';
  return out;
}

/** An ISO time (what the agent writes), not any string Date.parse takes (`"12"` is 2001). */
function isIsoTime(v: unknown): v is string {
  return typeof v === 'string' && /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/.test(v) && !Number.isNaN(Date.parse(v));
}

/**
 * Keeps what is well formed; a malformed in-flight record is dropped (the server re-sends the
 * command). Two fields are repaired instead, since dropping the record would lose a job that
 * may be mid-install: a `startedAt` that is no ISO time becomes the time the file is read (the
 * install gate's wait then counts from the restart; NaN asked the gate every few ms for ever,
 * QA), and an outcome's reason that is no string, or too long, is made one (`outcomeOf`).
 */
function sanitize(raw: unknown): AgentStateData {
  const obj = (raw ?? {}) as Record<string, unknown>;
  const out: AgentStateData = { finished: finishedJobsOf(obj.finished) };
  // saved before the shadow could be asked (no connection yet): it still has to be
  if (obj.unknownPast === true) out.unknownPast = true;
  Object.assign(out, trustStateOf(obj));
  if (Array.isArray(obj.canceled)) {
    const canceled = obj.canceled.filter((id): id is string => typeof id === 'string' && id !== '').slice(-MAX_CANCELED_JOBS);
    if (canceled.length > 0) out.canceled = canceled;
  }
  if (typeof obj.clockOffsetReported === 'number' && Number.isSafeInteger(obj.clockOffsetReported)) out.clockOffsetReported = obj.clockOffsetReported;
  const pending = obj.pendingLog as Record<string, unknown> | undefined;
  const pendingData = jobLogData(pending);
  if (typeof pending?.jobId === 'string' && pendingData) out.pendingLog = { jobId: pending.jobId, since: typeof pending.since === 'string' && !Number.isNaN(Date.parse(pending.since)) ? pending.since : new Date().toISOString(), ...pendingData };
  const inFlight = obj.inFlight as InFlightUpdate | undefined;
  const outcomeOk = inFlight?.phase !== 'REPORTING' || inFlight.outcome?.status === 'SUCCESS' || inFlight.outcome?.status === 'FAILURE';
  if (inFlight && typeof inFlight.jobId === 'string' && PHASES.includes(inFlight.phase) && outcomeOk) {
    try {
      const command = parseSoftwareCommand(inFlight.command);
      if (command.jobId === inFlight.jobId) {
        const { waiting, log, gateWaitedMs, fetchedFromStart, ...rest } = inFlight;
        const wait = inFlight.phase === 'VERIFYING' ? parseInstallWait(waiting) : undefined;
        const gateWaited = wait && typeof gateWaitedMs === 'number' && Number.isSafeInteger(gateWaitedMs) && gateWaitedMs >= 0 ? gateWaitedMs : undefined;
        const logData = jobLogData(log);
        // a start later than now is unreadable too: a clock wrong when the command came, set right since
        const startedAt = isIsoTime(rest.startedAt) && Date.parse(rest.startedAt) <= Date.now() ? rest.startedAt : new Date().toISOString();
        const outcome = rest.outcome && (rest.outcome.status === 'SUCCESS' || rest.outcome.status === 'FAILURE') ? outcomeOf(rest.outcome) : undefined;
        delete rest.outcome;
        out.inFlight = { ...rest, startedAt, command, ...(outcome ? { outcome } : {}), ...(wait ? { waiting: wait } : {}), ...(gateWaited !== undefined ? { gateWaitedMs: gateWaited } : {}), ...(fetchedFromStart === true ? { fetchedFromStart } : {}), ...(logData ? { log: logData } : {}) };
      }
    } catch {
      /* dropped */
    }
  }
  return out;
}

/** What a device trusting the root keeps of its trust: its highest key certificate serial, that certificate's key, the root it rotated to. */
export type TrustState = Pick<AgentStateData, 'keySerial' | 'keySerialKeyId' | 'rotatedRoot'>;

/**
 * The well-formed trust fields of a saved state (the others left out): read so by the agent's
 * file store and by the simulator's devices file (`sim/device-state.ts`).
 */
export function trustStateOf(obj: Record<string, unknown>): TrustState {
  const out: TrustState = {};
  const keyId = /^[0-9a-f]{16}$/;
  if (typeof obj.keySerial === 'number' && Number.isSafeInteger(obj.keySerial) && obj.keySerial > 0) out.keySerial = obj.keySerial;
  if (out.keySerial !== undefined && typeof obj.keySerialKeyId === 'string' && keyId.test(obj.keySerialKeyId)) out.keySerialKeyId = obj.keySerialKeyId;
  const root = obj.rotatedRoot as Record<string, unknown> | undefined;
  if (typeof root?.keyId === 'string' && keyId.test(root.keyId) && typeof root.provisionedKeyId === 'string' && keyId.test(root.provisionedKeyId) && typeof root.publicKey === 'string') {
    out.rotatedRoot = { keyId: root.keyId, publicKey: root.publicKey, provisionedKeyId: root.provisionedKeyId };
  }
  return out;
}

/** A saved job log when well formed (a damaged one is dropped: it is evidence, not state). */
function jobLogData(raw: unknown): JobLogData | undefined {
  const o = raw as Record<string, unknown> | undefined;
  if (!Array.isArray(o?.lines) || !o.lines.every((l) => typeof l === 'string')) return undefined;
  const dropped = typeof o.dropped === 'number' && Number.isSafeInteger(o.dropped) && o.dropped >= 0 ? o.dropped : 0;
  return { lines: o.lines as string[], dropped };
}
