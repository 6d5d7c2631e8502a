/**
 * The rollout engine (docs/design.md §4): one scheduler tick, no per-device timers. Each tick
 *
 * 1. takes the executions whose deadline passed (one indexed scan, `listDueExecutions`) and
 *    ends them TIMED_OUT (or CANCELED, for devices asked to stop), then takes the command
 *    back and retries; a TIMED_OUT execution stays due until then, so a crash in between is
 *    finished by the next tick;
 * 2. for every active job: starts it at its scheduled time, applies the abort rules, sends
 *    the next commands of the current wave, devices that just came online first, within
 *    the rate allowance and the in-flight window (the allowance derived from the
 *    stored wave start and the count sent since, so a restart neither loses nor repeats the
 *    budget), and moves to the next wave, pauses, or completes when the wave has finished;
 *    while the artifact storage does not answer (the check of `/readyz`) it sends nothing
 *    new, and goes on by itself when it does;
 * 3. adds devices that newly match a continuous job's targets.
 *
 * Everything it knows is in the store (job progress, execution rows with wave, attempt,
 * dispatch time and deadline); after a crash it picks up where the stored state says.
 * With several instances only the holder of the lease ticks (docs/design.md §7): each tick
 * first renews it, and an instance that becomes the holder (the previous one died) runs
 * the same recovery as after a crash before its first round. A
 * command written just before a crash and not yet marked sent is sent again with the same
 * device-side job id, which the agent never applies twice.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { ArtifactService } from '../artifacts/artifact-service.ts';
import type { BlobStoreHealth } from '../artifacts/blob-store-probe.ts';
import { InProcessLease, type Lease } from '../cluster/lease.ts';
import { asUpdraftError, isUnreachable, UpdraftError } from '../errors.ts';
import type { EventBus } from '../events/event-bus.ts';
import { isJsonObject, type JsonObject } from '../protocol/json.ts';
import { parseReportedSoftware, type ReportedSoftware } from '../protocol/software.ts';
import type { ShadowReplica } from '../shadow/replica.ts';
import { ACTIVE_JOB_STATUSES, type ArtifactRecord, type ExecutionCount, type ExecutionRecord, type JobRecord, type JobStatus, type ShadowRecord, type StateStore } from '../store/state-store.ts';
import { JOB_CHUNK } from '../store/job-creation.ts';
import { startInSlices } from '../util/in-slices.ts';
import type { Logger } from '../util/logger.ts';
import { agentJobId, parseAgentJobId } from './agent-job-id.ts';
import { CANCEL_GRACE_MS, deadlineOf, timeoutReason } from './deadlines.ts';
import { refusalOf } from './device-fit.ts';
import { replaceCommand, retractCommand, rollBack, sendCommand, softwareFor, type DesiredSoftwareDeps } from './desired-software.ts';
import { isTerminal } from './execution-state.ts';
import type { ExecutionTracker } from './execution-tracker.ts';
import { mutateExecution } from './execution-writer.ts';
import { isTransient, owedRetract, RETRACT_PENDING, RETRACT_RETRY_MS, withoutRetractPending } from './pending-retract.ts';
import { specOf, type JobSpec } from './job-spec.ts';
import { isJobFinal } from './job-state.ts';
import { jobsIn, OPEN_JOB_STATUSES, sentExecutionPages } from './open-executions.ts';
import { DEVICE_TIME_ZONE, inWindow, nextOpening } from '../protocol/maintenance-window.ts';
import { DEVICE_REVOKED, requeueForNewDevice, retryIfAllowed, succeededAttemptOf, succeededUnsent } from './retry-policy.ts';
import { FINISHED, rateAllowance, rateCap, successPercent, tally } from './rollout-math.ts';
import { sweepStrandedCommands } from './stranded-commands.ts';
import { resolveTargets, targetsInclude } from './targets.ts';
import { StoredQueryError } from '../fleet/query.ts';

/** What the engine needs. */
export interface RolloutEngineDeps {
  store: StateStore;
  events: EventBus;
  replica: ShadowReplica;
  artifacts: ArtifactService;
  tracker: ExecutionTracker;
  logger: Logger;
  /** Milliseconds since the epoch (injectable: tests drive time). */
  now?: () => number;
  /**
   * A clock that never steps (`performance.now()`), to tell a step of `now` (NTP setting the
   * server's clock, a VM resumed) from time passing (`followStep`). Default: performance.now
   * when `now` is not given; with `now` given and no `monotonic`, steps are not looked for
   * (tests driving `now` by hand would look like steps).
   */
  monotonic?: () => number;
  /** Milliseconds between ticks; 0 runs no timer at all (tests call tick()). */
  tickMs?: number;
  /** Most commands one job sends per tick. */
  maxSendPerTick?: number;
  /**
   * How often continuous jobs look for newly matching devices, in ms; a scan also waits
   * `SCAN_SPACING` times as long as the last one took.
   */
  continuousScanMs?: number;
  /** Who drives rollouts when several instances share the store; default: this process alone. */
  lease?: Lease;
  /**
   * How the engine learns that a device came online, to send it its command before the
   * others: `presence` (the embedded broker's connect events, the default) or `fetch` (the
   * device's catch-up `get`, for an external broker: there presence is what devices announce
   * themselves, and a device on an AWS IoT SDK, or any client but the agent, does not).
   * Departures come from presence either way.
   */
  arrivals?: 'presence' | 'fetch';
  /** Most devices remembered per job as just come online (the oldest are forgotten first). */
  maxArrivedPerJob?: number;
  /**
   * Whether the artifact storage answers (`probeBlobStore`, what `/readyz` checks). While it
   * does not, no new update command is sent (see `storageAnswers`). Absent: not checked.
   */
  artifactStorage?: () => Promise<BlobStoreHealth>;
  /**
   * Whether the instance's MQTT connection is up (an external broker's; the embedded broker
   * always is). While it is not, no new update command is sent (see `busConnected`): the
   * publish settles at once (bounded-publish.ts), and an execution marked dispatched then
   * would time out with its command never sent. Absent: always connected.
   */
  mqttConnected?: () => boolean;
  /**
   * Told each time this instance comes to lead rollouts (the lease taken: at start, from a
   * leader that died or gave it up, or again after it was lost), once recovery has run. The
   * server's DisruptionResync re-sends the commands of open executions then, behind an
   * external broker (a database restored while no instance ran: docs/deployment.md).
   */
  onLead?: () => void;
}

/**
 * A continuous job's scan reads the whole registry (1.7-2.3 s of the server's thread per
 * 100,000 devices, measured): the next one waits at least this many times as long as the
 * last took, so scanning takes at most 5% of the server whatever the fleet's size or how
 * often groups change (a million devices: a scan every 6 minutes or so instead of every 30 s).
 */
export const SCAN_SPACING = 20;

/** Commands begun per turn of the event loop when a tick sends many (startInSlices). */
const DISPATCH_SLICE = 200;

/**
 * How long an answer of the artifact storage holds (ms, the engine's clock): it is asked at
 * most this often, and only when a job has a command to send.
 */
export const STORAGE_RECHECK_MS = 1000;

/**
 * A change of the engine's clock between two ticks that differs from the time passed on the
 * monotonic clock by more than this is a step of the clock (`followStep`). Above the error of
 * the cluster clock's measurement (half a slow round trip to the database), far below any
 * step worth correcting.
 */
export const CLOCK_STEP_MS = 2_000;

/** Defaults of the tuning options. */
export const ENGINE_DEFAULTS = { tickMs: 250, maxSendPerTick: 2000, continuousScanMs: 30_000, maxArrivedPerJob: 50_000, busLeadGraceMs: 5_000 } as const;

/** Why a job paused (progress.pause.reason). */
export type PauseReason = 'operator' | 'threshold' | 'approval';

/** The durable progress of a rollout (JobRecord.progress). */
export interface RolloutProgress {
  /** The wave being rolled out; 0 is the canary. */
  wave: number;
  /** Number of targets when the job was created. */
  total: number;
  startedAt?: number;
  waveStartedAt?: number;
  /** Start of the current rate window (wave start or resume)... */
  rateEpoch?: number;
  /** ...and the commands sent since. */
  sentSinceEpoch: number;
  /**
   * Allowance given up since `epoch` (the rate epoch it counts for: a new epoch starts from
   * none): what built up above `rateCap` while there was less to send than the rate allowed.
   */
  rateForfeit?: { epoch: number; count: number };
  pause?: { reason: PauseReason; wave: number; message: string; at: number };
  /** Set while the job's maintenance windows are closed: since when, and when the next one opens (absent: none within 8 days). */
  windowClosed?: { since: number; opensAt?: number };
  /**
   * Set while the artifact storage does not answer and the job has commands to send: since
   * when. Kept with the job, not in the leader's memory, so that whichever instance leads when
   * it answers again moves the rate's clock on by the wait (`endHold`).
   */
  storageHeldSince?: number;
  /**
   * Why the job is held since `storageHeldSince` when not for the artifact storage: `mqtt`, the
   * instance's MQTT broker cannot be reached. One hold (named for its first reason, as stored
   * jobs have it), moved past the same way (`endHold`).
   */
  heldBy?: 'mqtt';
  /**
   * The end of the last outage of the state database the rate's clock was moved on by
   * (`skipOutage`): every instance that ticked through it knows of it, and whichever leads
   * when it ends moves the clock on once, not once per instance.
   */
  storeOutageUntil?: number;
  /**
   * The step of the engine's clock the rate's times were last moved by (`followStep`; its id:
   * the clock's reading when it was seen): a step tried again after a failure moves a job once.
   */
  clockStep?: number;
  /** Why the job was aborted. */
  abortReason?: string;
  finishedAt?: number;
}

/**
 * A step of the engine's clock being applied (`followStep`): seen when the clock read `now`
 * (its id), moved by `by` from `from`; what was done so far.
 */
interface ClockStep {
  id: number;
  from: number;
  now: number;
  by: number;
  /** Jobs whose rate was moved, deadlines moved, over every try. */
  jobs: number;
  deadlines: number;
  /** A try failed (said once). */
  failed: boolean;
}

/** The progress of a job as stored. */
export function progressOf(job: JobRecord): RolloutProgress {
  return { wave: 0, total: 0, sentSinceEpoch: 0, ...(job.progress as Partial<RolloutProgress> | undefined) };
}

const DUE_BATCH = 500;
/** How long a quiet job may go without being looked at (ms). */
const QUIET_RECHECK_MS = 5_000;
const PAGE = 500;
/** The first wait before a stop left owed by a refused write is tried again (ms; doubled at each failure, up to STOP_RETRY_MAX_MS). */
const STOP_RETRY_MS = 5_000;
const STOP_RETRY_MAX_MS = 5 * 60_000;
/** Take-backs of commands of executions ended unsent remembered at most (`owedTakeBacks`; a few hundred bytes each). */
const MAX_OWED_TAKE_BACKS = 10_000;

/** The reason a stopped job's executions end with, as its record keeps it (the operator's words are not kept). */
function stopReasonOf(job: JobRecord): string {
  return progressOf(job).abortReason ?? 'job canceled';
}

/**
 * A QUEUED execution ended by a cancel or abort, with the job's reason. A timed-out attempt's
 * command it still owes a retract stays due (pending-retract.ts): the unsent retry that was to
 * replace it never will, and the next tick takes it back.
 */
function canceledNow(cur: ExecutionRecord, reason: string): Partial<ExecutionRecord> {
  const details: JsonObject = { ...cur.details, error: reason };
  delete details.cancelBy;
  return { status: 'CANCELED', details, dueAt: owedRetract(cur) !== undefined ? cur.dueAt : undefined };
}

/** Runs rollouts. */
export class RolloutEngine {
  private readonly deps: RolloutEngineDeps;
  private readonly desired: DesiredSoftwareDeps;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  /** Set by stop(): background work started at taking the lead (the sweep of stranded commands) ends early. */
  private stopping = false;
  private chain: Promise<unknown> = Promise.resolve();
  /**
   * When each continuous job last looked for new devices, how long that took (`ms`, on the
   * engine's clock), and whether a group changed since (`wanted`).
   */
  private readonly lastScan = new Map<string, { at: number; ms: number; wanted?: boolean }>();
  private readonly lease: Lease;
  private leading = false;
  /** The lease's term this instance leads in (Lease.term). */
  private leadTerm = 0;
  private offEvents: (() => void)[] = [];
  private refill: NodeJS.Timeout | undefined;
  /**
   * Jobs whose executions changed since the job was last advanced; kept only while leading:
   * a follower's would grow with every job its devices report on, and a new leader needs none
   * of it (taking the lead clears `quiet`, so its first pass advances every active job).
   */
  private readonly changed = new Set<string>();
  /**
   * IN_PROGRESS jobs with nothing to send until an execution changes (wave fully sent, or
   * the in-flight window full), and since when: a tick skips them, so twenty jobs of 5,000
   * devices cost nothing per tick while their devices work. Looked at again anyway after
   * QUIET_RECHECK_MS, in case an event was lost (a relay between instances is not durable).
   */
  private readonly quiet = new Map<string, number>();
  /** Jobs with an in-flight window: an outcome there is worth an early tick. */
  private readonly windowed = new Set<string>();
  /**
   * Devices that just came online, with their executions still to send, per job: the job's
   * next step sends these first, within the same budget (current wave, rate, window). A
   * rollout writes every target's command anyway (a device offline catches up with `get` when
   * it connects), but writing a big one takes a while, and a device online now should not
   * wait behind thousands that are not, nor leave again before its turn. Bounded per job
   * (`maxArrivedPerJob`): a large job held back by its rate, window or a pause, while its
   * fleet comes and goes, would otherwise remember most of its devices; the oldest arrivals,
   * the likeliest to have left again, are forgotten first, and are sent in the normal order.
   */
  private readonly arrived = new Map<string, Map<string, ExecutionRecord>>();
  /**
   * Continuous jobs whose stored query (their own or a dynamic group's) this release no longer
   * parses (saved deeper than 7860efa's nesting cap), with what was logged: such a job takes no
   * new devices, said once per job and lead term, not at every scan and device coming online.
   */
  private readonly unparsable = new Map<string, string>();
  /**
   * Stopped (CANCELED or ABORTED) jobs whose stop left an execution neither ended nor marked
   * (a write refused: the CANCELED of an unsent row, or the mark of a sent one), with when the
   * stop is passed again over those (`retryStops`, at each tick on any instance, with backoff).
   * Nothing else is due for such a row: before, it stayed open until a restart (recover). Kept
   * in memory only: an instance that ends with a stop owed leaves it to the next start or lead
   * taken (recover), as a crash in the middle of a stop did already.
   */
  private readonly owedStops = new Map<string, { reason: string; tries: number; due: number }>();
  /**
   * Executions ended CANCELED unsent whose command take-back failed for now and whose owed
   * retract (retractPending) could not be written either (one database outage): nothing else
   * takes such a command back (a CANCELED row has no grace; owedStops and recover look at open
   * rows only), so the take-back is tried again at each tick on this instance, with backoff,
   * like `owedStops` (key: job id, newline, device id). In memory, at most MAX_OWED_TAKE_BACKS.
   */
  private readonly owedTakeBacks = new Map<string, { jobId: string; deviceId: string; aid: string; tries: number; due: number }>();
  /** The active jobs as of the last tick (or kick): with none, a connecting device costs no lookup. */
  private active = new Set<string>();
  /**
   * The specs of active jobs (null: a job from before rollouts has none). A spec never
   * changes, and one that lists its devices runs to a megabyte per 60,000 of them: listing
   * and parsing five such specs at every tick kept an idle server's thread about 70% busy
   * (measured), so ticks list jobs without their specs and read each spec once.
   */
  private readonly specs = new Map<string, JsonObject | null>();
  /** The artifact storage's last answer (`storageAnswers`): when it was asked, and whether it answered. */
  private storageProbe: { at: number; ok: boolean } | undefined;
  /** Since when the artifact storage has not answered, as the engine saw it. */
  private storageDownSince: number | undefined;
  /** Jobs held back by this outage of the artifact storage, as this instance saw it (logged when it ends). */
  private readonly heldJobs = new Set<string>();
  /** Since when the MQTT connection has been down, as the engine saw it (`busConnected`). */
  private busDownSince: number | undefined;
  /** Jobs held back by this outage of the MQTT connection (logged when it ends). */
  private readonly busHeldJobs = new Set<string>();
  /** Since when (monotonic, else the engine's clock) lead() has seen the MQTT connection down (`cutOff`). */
  private busLostAt: number | undefined;
  /** lead()'s last answer was "cut off from the broker" (not asked of the lease: its `unreachable` is stale). */
  private busCut = false;
  /** Since when the state database has not answered this instance's ticks (engine clock). */
  private storeDownSince: number | undefined;
  /** The last outage of the state database this instance ticked through, once it ended: rates skip it (`skipOutage`). */
  private storeOutage: { since: number; until: number } | undefined;
  /**
   * The engine's clock and the monotonic one at the last look (`followStep`), this lead term
   * only: a new leader takes its own first reading, and judges no step from another's.
   */
  private clockMark: { wall: number; mono: number } | undefined;
  /**
   * Steps of the engine's clock seen this lead term and not yet fully applied (`followStep`):
   * one whose work failed (the database dropped with the step, as a resumed machine's
   * connections do) is tried again at the next tick, judged by the clock readings of when it
   * was seen, and no other work of the tick is done until it is applied.
   */
  private pendingSteps: ClockStep[] = [];
  /** Time spent counting executions, this tick so far and in the last one (paces early ticks). */
  private countingMs = 0;
  private lastTickCountingMs = 0;

  constructor(deps: RolloutEngineDeps) {
    this.deps = deps;
    this.desired = { store: deps.store, replica: deps.replica, artifacts: deps.artifacts };
    this.lease = deps.lease ?? new InProcessLease();
  }

  /** How many jobs each of the engine's per-job memories holds (tests: a follower keeps none). */
  memory(): { changed: number; quiet: number; windowed: number; arrived: number; specs: number; lastScan: number; heldJobs: number; unparsable: number } {
    return { changed: this.changed.size, quiet: this.quiet.size, windowed: this.windowed.size, arrived: this.arrived.size, specs: this.specs.size, lastScan: this.lastScan.size, heldJobs: this.heldJobs.size, unparsable: this.unparsable.size };
  }

  /** True while this instance drives the rollouts. */
  get isLeader(): boolean {
    return this.leading && this.lease.held;
  }

  private now(): number {
    return this.deps.now ? this.deps.now() : Date.now();
  }

  /** Takes the lead if it is free (recovering what a crash left in flight), then starts ticking. */
  async start(): Promise<void> {
    await this.exclusive(() => this.lead());
    this.running = true;
    this.offEvents = [
      this.deps.events.on('execution.changed', ({ previous, current }) => {
        if (this.leading) this.changed.add(current.jobId);
        // a device that finishes frees a place in its job's in-flight window: refill it soon
        // rather than at the next tick. Coalesced: at most one early tick per 50 ms, and fewer
        // when counting the jobs' executions takes long (a tick counts each job it advances),
        // so that early ticks spend at most about 5% of the time counting
        if (isTerminal(current.status) && this.windowed.has(current.jobId)) this.wakeSoon();
        if ((current.status === 'FAILED' || current.status === 'TIMED_OUT') && previous?.status !== current.status) this.track(this.rollBackLate(current));
      }),
      this.deps.events.on('device.presence', ({ deviceId, online }) => {
        if (!online) this.onDeparture(deviceId);
        else if (this.deps.arrivals !== 'fetch') this.onArrival(deviceId);
      }),
      ...(this.deps.arrivals === 'fetch' ? [this.deps.events.on('device.fetched', ({ deviceId }) => this.onArrival(deviceId))] : []),
      // paused, resumed, canceled (here or on another instance): look at it again; a job that
      // ended takes no more devices coming online from now (stopJob does so on this instance)
      this.deps.events.on('job.changed', ({ job }) => {
        this.quiet.delete(job.jobId);
        if (isJobFinal(job.status)) this.retire(job.jobId);
      }),
    ];
    this.schedule(0);
  }

  /** An early tick, coalesced: at most one per 50 ms, fewer while counting takes long (see start()). */
  private wakeSoon(): void {
    if (this.refill || !this.leading) return;
    this.refill = setTimeout(() => {
      this.refill = undefined;
      this.wake();
    }, Math.max(50, 20 * this.lastTickCountingMs));
    this.refill.unref?.();
  }

  /** A device came online: looked up only while this instance leads and some job is active. */
  private onArrival(deviceId: string): void {
    if (this.leading && this.running && this.active.size > 0) void this.arrive(deviceId);
  }

  /**
   * A device went offline: it no longer goes before the store's order. Under load, when more
   * devices arrive than a tick sends, the places go to devices still online (a device online
   * for a short wake-up would otherwise see its command written just after it left, and wait
   * for its next wake-up), and a command for one that left waits for its turn like any other.
   * With an external broker, only devices that announce their presence (the agent) are
   * seen leaving.
   */
  private onDeparture(deviceId: string): void {
    for (const [jobId, waiting] of this.arrived) {
      if (waiting.delete(deviceId) && waiting.size === 0) this.arrived.delete(jobId);
    }
  }

  /** Remembers the arrived device's executions still to send, for their jobs' next step. */
  private async arrive(deviceId: string): Promise<void> {
    try {
      await this.joinContinuous(deviceId);
      const undispatched = await this.deps.store.listUndispatchedOfDevice(deviceId);
      // the lead may have been lost during the reads (lead() cleared `changed`): a follower
      // keeps nothing of the arrival, which would stay until it led again
      if (!this.leading) return;
      let any = false;
      const max = this.deps.maxArrivedPerJob ?? ENGINE_DEFAULTS.maxArrivedPerJob;
      for (const e of undispatched) {
        let waiting = this.arrived.get(e.jobId);
        if (!waiting) this.arrived.set(e.jobId, (waiting = new Map()));
        waiting.delete(deviceId); // the latest arrival goes last, the oldest is forgotten first
        waiting.set(deviceId, e);
        if (waiting.size > max) waiting.delete(waiting.keys().next().value!);
        this.changed.add(e.jobId);
        any = true;
      }
      if (any) this.wakeSoon();
    } catch (err) {
      this.deps.logger.warn('cannot look up the executions of a device that came online', { deviceId, error: asUpdraftError(err).message });
    }
  }

  /**
   * Adds the arrived device to the active continuous jobs whose targets it now matches (a
   * device registered, tagged or grouped since their last scan): it gets its command now,
   * not at the next scan, which on a large fleet comes minutes later (SCAN_SPACING). A few
   * reads per job, and a write only for a device not in the job yet.
   *
   * An id deleted and registered again is a new device: the execution its predecessor left
   * (marked `deviceDeletedAt` when it was deleted) is queued again for it. Only here, as it
   * comes online: a scan skips the devices a job holds already (the store adds only new
   * rows), so such a device registered again gets its command when it first connects.
   */
  private async joinContinuous(deviceId: string): Promise<void> {
    const now = this.now();
    for (const [jobId, json] of this.specs) {
      const spec = json ? specOf({ spec: json }) : undefined;
      if (spec?.type !== 'continuous') continue;
      const existing = await this.deps.store.getExecution(jobId, deviceId);
      if (existing && existing.details.deviceDeletedAt === undefined) continue;
      // a job whose stored query no longer parses is skipped: the next job still gets its turn
      if (!(await this.targetsInclude(jobId, spec, deviceId))) continue;
      if (existing) {
        // registered again (a presence notice may come from a connection the deletion has not closed yet)
        const device = await this.deps.store.getDevice(deviceId);
        if (!device || device.revoked) continue;
        if (await requeueForNewDevice(this.deps, existing, now)) this.deps.logger.info('continuous job took up a device registered again under a deleted id', { jobId, deviceId });
        continue;
      }
      const added = await this.deps.store.addExecutions([continuousExecution(jobId, deviceId, spec, now)]);
      if (added === 0) continue;
      // the job may have been canceled or aborted since it was read as active (here, in the
      // store, or on another instance, where this one's memory of active jobs is a tick old):
      // the stop's pass over its executions, begun after its status was committed, may have
      // missed this one. Read the status now that the execution is committed; a stop committed
      // later finds the execution and ends it itself
      const stopped = await this.stoppedJob(jobId);
      if (stopped) {
        // as the stop's own pass would: canceled if unsent, told to stay if a tick sent it meanwhile
        const record = await this.deps.store.getExecution(jobId, deviceId);
        if (record && (await this.stopExecution(record, stopReasonOf(stopped), this.now())) === 'owed') this.oweStop(jobId, stopReasonOf(stopped), 1, this.now());
        await this.settleTotal(jobId, this.now());
        continue;
      }
      this.deps.logger.info('continuous job picked up a device as it came online', { jobId, deviceId });
    }
  }

  /** targetsInclude, false (said once) for a job whose stored query no longer parses. */
  private async targetsInclude(jobId: string, spec: JobSpec, deviceId: string): Promise<boolean> {
    try {
      return await targetsInclude(this.deps.store, spec.targets, deviceId);
    } catch (err) {
      if (!(err instanceof StoredQueryError)) throw err;
      this.unparsableQuery(jobId, err);
      return false;
    }
  }

  /**
   * A continuous job's stored query no longer parses: the job takes no new devices, and goes on
   * with those it has. Logged once per job, lead term and message; the job's view says it
   * (JobView.targetsError) on every instance.
   */
  private unparsableQuery(jobId: string, err: StoredQueryError): void {
    if (this.unparsable.get(jobId) === err.message) return;
    this.unparsable.set(jobId, err.message);
    this.deps.logger.error('continuous job takes no new devices: its stored query no longer parses', { jobId, error: err.message });
  }

  /** A job as stored, if it has ended (a continuous job's stop is read again after devices are added to it). */
  private async stoppedJob(jobId: string): Promise<JobRecord | undefined> {
    const stored = await this.deps.store.getJob(jobId, { omitSpec: true });
    return stored && isJobFinal(stored.status) ? stored : undefined;
  }

  /**
   * A stopped continuous job's count of devices (progress.total) brought up to date with
   * devices added after its stop counted them: nothing advances a stopped job. Written only
   * when it differs.
   */
  private async settleTotal(jobId: string, now: number): Promise<void> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const job = await this.deps.store.getJob(jobId, { omitSpec: true });
      if (!job) return;
      const p = progressOf(job);
      const total = devicesOf(await this.deps.store.countExecutions(jobId));
      if (total === p.total || (await this.saveJob(job, job.status, { ...p, total }, now))) return;
    }
  }

  /** A job that ended takes no more devices: forgotten as active at once, not at the next tick. */
  private retire(jobId: string): void {
    this.active.delete(jobId);
    this.specs.delete(jobId);
    this.arrived.delete(jobId);
  }

  /**
   * Up to `limit` executions of `jobId`'s wave `wave` whose devices came online, read again
   * from the store (still queued, not sent, same attempt: a cancel or another send in between
   * wins). Those of a later wave wait for it in the normal order.
   */
  private async arrivals(jobId: string, wave: number, limit: number): Promise<ExecutionRecord[]> {
    const waiting = this.arrived.get(jobId);
    if (!waiting) return [];
    const picked: ExecutionRecord[] = [];
    for (const [deviceId, e] of waiting) {
      if (picked.length >= limit) break;
      waiting.delete(deviceId);
      if ((e.wave ?? 0) === wave) picked.push(e);
    }
    if (waiting.size === 0) this.arrived.delete(jobId);
    // read again all at once: on PostgreSQL each read is a round trip, and one after the other
    // they held a tick for seconds when thousands of devices arrived
    const current = await Promise.all(picked.map((e) => this.deps.store.getExecution(jobId, e.deviceId)));
    return current.filter((cur, i): cur is ExecutionRecord => cur !== undefined && cur.status === 'QUEUED' && cur.dispatchedAt === undefined && (cur.attempt ?? 1) === (picked[i]!.attempt ?? 1));
  }

  /** Stops ticking, waits for the tick in progress and hands the lead to another instance. */
  async stop(): Promise<void> {
    this.running = false;
    this.stopping = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    for (const off of this.offEvents) off();
    this.offEvents = [];
    clearTimeout(this.refill);
    this.refill = undefined;
    await this.chain.catch(() => undefined);
    await this.settled();
    this.leading = false;
    await this.lease.release();
  }

  /**
   * Renews (or tries to take) the lease; true while this instance leads. Taking over runs
   * recovery first: the previous holder may have died between two commits, exactly as in a
   * crash of a single instance.
   */
  private async lead(): Promise<boolean> {
    this.busCut = this.cutOff();
    if (this.busCut) {
      if (this.leading) {
        this.stepDown();
        await this.lease.release();
        this.deps.logger.warn(`no longer driving rollouts: the MQTT broker has not been reachable from this instance for ${ENGINE_DEFAULTS.busLeadGraceMs / 1000} s; the lease is given up so that an instance that reaches the broker leads (this one takes it again only once its connection is back)`);
      }
      return false;
    }
    const held = await this.lease.acquire();
    // a new term: taken now, or lost and taken again since the last tick (another instance
    // may have led in between, and died between two commits as a crashed one does)
    if (held && (!this.leading || this.lease.term !== this.leadTerm)) {
      if (this.leading) this.deps.logger.warn('the rollouts lease was lost and taken again since the last tick: recovering what another instance may have left in flight');
      await this.recover();
      // commands versions before this one left on devices, out of the deadline index: once per
      // store, in the background (a read of every shadow), cut short by stop()
      this.track(
        sweepStrandedCommands({ ...this.desired, logger: this.deps.logger }, this.now(), { stopping: () => this.stopping }).then(
          () => undefined,
          (err: unknown) => this.deps.logger.warn('commands left by an earlier version not looked for; tried again at the next start', { error: asUpdraftError(err).message }),
        ),
      );
      this.lastScan.clear();
      this.quiet.clear();
      this.unparsable.clear(); // said again once in this term
      this.clockMark = undefined;
      this.dropSteps();
      this.leadTerm = this.lease.term;
      this.leading = true;
      this.deps.logger.info('driving rollouts (lease taken)');
      this.deps.onLead?.();
    } else if (!held && this.leading) {
      this.stepDown();
      this.deps.logger.warn('no longer driving rollouts: the lease was lost');
    }
    return held;
  }

  /** Stops leading: what only a leader keeps is let go (the lease lost, or given up by `cutOff`). */
  private stepDown(): void {
    this.leading = false;
    this.changed.clear(); // not kept by a follower (see `changed`)
    // nor the devices that came online: a follower hears of no arrival (onArrival), and a
    // departure may reach only the instance leading meanwhile (its connection's), so an entry
    // kept would, when this one leads again, put a device that left long ago before the
    // store's order, taking a place of the job's rate (test: follower-memory)
    this.arrived.clear();
    this.clockMark = undefined;
    this.dropSteps();
  }

  /**
   * Whether this instance is cut off from the MQTT broker for leading: its connection has been
   * down for more than `busLeadGraceMs`, and the lease is one other instances can take (with
   * the in-process lease the instance is alone, and keeps leading). A leader cut off would hold
   * every job's sends (`busConnected`) while it kept the lease, and an instance that reaches
   * the broker would never lead; with the broker down for every instance nobody leads, and
   * nobody could send anyway. The grace keeps a reconnect of a second or two from moving the lead.
   */
  private cutOff(): boolean {
    if (this.lease instanceof InProcessLease) return false;
    const at = this.deps.monotonic?.() ?? this.now();
    if (this.deps.mqttConnected?.() ?? true) {
      this.busLostAt = undefined;
      return false;
    }
    this.busLostAt ??= at;
    return at - this.busLostAt > ENGINE_DEFAULTS.busLeadGraceMs;
  }

  /** Runs `fn` when no tick or job operation is running (one at a time). */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** Asks for a tick soon (new job, group change, resume). */
  wake(): void {
    if (this.running) this.schedule(0);
  }

  /** Continuous jobs look for new devices at the next tick their scan spacing allows (a group changed). */
  rescan(): void {
    for (const [id, last] of this.lastScan) this.lastScan.set(id, { ...last, wanted: true });
    this.wake();
  }

  private schedule(ms: number): void {
    const tickMs = this.deps.tickMs ?? ENGINE_DEFAULTS.tickMs;
    if (!this.running || tickMs === 0) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.tick()
        .catch((err: unknown) => this.tickFailed('rollout tick failed', err))
        .finally(() => {
          if (this.running && !this.timer && tickMs > 0) this.schedule(tickMs);
        });
    }, ms);
    this.timer.unref?.();
  }

  /** One scheduler pass (timers call it; tests call it with a fake clock). */
  tick(): Promise<void> {
    return this.exclusive(async () => {
      try {
        await this.pass();
      } catch (err) {
        if (isUnreachable(err)) this.storeDown(this.now(), err);
        throw err;
      }
    });
  }

  /** The tick's work; an unreachable database it meets starts an outage (`storeDown`). */
  private async pass(): Promise<void> {
    if (this.owedStops.size > 0) await this.retryStops(this.now());
    if (this.owedTakeBacks.size > 0) await this.retryTakeBacks(this.now());
    if (!(await this.lead())) {
      // no answer from the database (the lease's), or another instance leads: that one
      // ticked through any outage too, and moves the rates on when it ends
      if (this.lease.unreachable && !this.busCut) this.storeDown(this.now());
      else if (!this.busCut) this.storeAnswersElsewhere(this.now());
      else this.storeUnfollowed(this.now());
      return;
    }
    const now = this.now();
    await this.followStep(now);
    await this.processDue(now);
    const active = await this.activeJobs();
    this.storeAnswers(now);
    this.active = new Set(active.map((j) => j.jobId));
    this.forgetFinished(this.active);
    this.countingMs = 0;
    for (const job of active) {
      const since = this.quiet.get(job.jobId);
      if (since !== undefined && job.status === 'IN_PROGRESS' && !this.changed.has(job.jobId) && now - since < QUIET_RECHECK_MS && now >= since) continue;
      try {
        await this.advance(job, now);
      } catch (err) {
        // the outage's WARN names the job whose step met it: a statement timeout of one job's
        // query is said with its job, not only as the database's (review of 9cd5e04)
        if (isUnreachable(err)) this.storeDown(now, err, { jobId: job.jobId });
        this.tickFailed('rollout step failed', err, { jobId: job.jobId });
      }
    }
    this.lastTickCountingMs = this.countingMs;
  }

  /**
   * A tick (or one job's step in it) that failed. An unreachable database is the outage its
   * WARN said once (`storeDown`, the tick's catch has called it): each tick it fails is said at
   * debug only. QA (2026-12-06): a database restart gave the WARN and then an ERROR "rollout
   * tick failed" for the same outage, once per tick that met it after the lease had answered.
   */
  private tickFailed(what: string, err: unknown, fields: Record<string, unknown> = {}): void {
    const error = asUpdraftError(err).message;
    if (isUnreachable(err) && this.storeDownSince !== undefined) this.deps.logger.debug(`${what}: the state database does not answer (said once, as the outage began)`, { ...fields, error });
    else this.deps.logger.error(what, { ...fields, error });
  }

  /** A tick found the state database unreachable: the outage starts now, as this instance sees it (logged once). */
  private storeDown(now: number, err?: unknown, fields: Record<string, unknown> = {}): void {
    if (this.storeDownSince !== undefined) return;
    this.storeDownSince = now;
    this.deps.logger.warn('the state database does not answer: rollouts wait for it; the rate of each job leaves the outage out when it answers again', err === undefined ? fields : { ...fields, error: asUpdraftError(err).message });
  }

  /** A tick read the active jobs: an outage of the state database this instance saw is over, and the jobs' rates skip it (`skipOutage`). */
  private storeAnswers(now: number): void {
    const since = this.storeDownSince;
    if (since === undefined) return;
    this.storeDownSince = undefined;
    this.storeOutage = { since, until: now };
    this.quiet.clear(); // every job is looked at now, and its rate moved on
    this.deps.logger.info('the state database answers again: rollouts go on, each job\'s rate where it stopped', { seconds: Math.max(0, Math.round((now - since) / 1000)) });
  }

  /**
   * The lease answered on an instance that does not lead: an outage of the state database it
   * said the start of is over, said here too (QA: the WARN of the start on a follower had no
   * end). The leader moves the jobs' rates on by its own view of the outage; this one keeps
   * nothing of it.
   */
  private storeAnswersElsewhere(now: number): void {
    const since = this.storeDownSince;
    if (since === undefined) return;
    this.storeDownSince = undefined;
    this.deps.logger.info('the state database answers again: another instance leads rollouts, and moves each job\'s rate on', { seconds: Math.max(0, Math.round((now - since) / 1000)) });
  }

  /**
   * Cut off from the MQTT broker (`busCut`), this instance asks the lease nothing, so it no
   * longer knows whether an outage of the state database it said the start of still stands:
   * said once, as that outage's last line here, and forgotten (the leader of the moment moves
   * the jobs' rates on by its own view of it). Until 2026-12-06 it was dropped without a word:
   * the WARN of its start had no end.
   */
  private storeUnfollowed(now: number): void {
    const since = this.storeDownSince;
    if (since === undefined) return;
    this.storeDownSince = undefined;
    this.deps.logger.info('the state database outage is no longer followed here: this instance is cut off from the MQTT broker and leaves rollouts to an instance that reaches it, which says when the database answers', { seconds: Math.max(0, Math.round((now - since) / 1000)) });
  }

  /**
   * The engine's clock stepped since the last tick (NTP setting the server's clock, or on
   * PostgreSQL the database's; a VM resumed): told from time passing by the monotonic clock,
   * which steps never move, on the leader only (`clockMark`). Every time kept with the jobs
   * was written by the clock before the step, so their rate's clock moves with it: stepped
   * back an hour, `now - rateEpoch` was an hour short and nothing was sent for an hour;
   * stepped forward, an hour's allowance was sent at once. A step forward also passed over
   * deadlines (dueAt, written by the clock before it): each of those moves on by the step
   * (`shiftDeadlines`), or every execution due within the step timed out at once.
   *
   * A step stays pending (`pendingSteps`) until all of its work succeeded: the reading is taken
   * at once, so a tick whose work failed (a dropped connection, a statement timeout) would
   * otherwise see no step at the next, and the next processDue(now) timed out every deadline
   * the step passed over. Until then every tick tries it again first and throws, doing nothing
   * else. Logged once when applied; once more, before, when a try failed.
   */
  private async followStep(now: number): Promise<void> {
    const mono = this.deps.monotonic?.() ?? (this.deps.now ? undefined : performance.now());
    if (mono === undefined) return;
    const last = this.clockMark;
    this.clockMark = { wall: now, mono };
    if (last) {
      // whole milliseconds: the times it moves are stored as integers
      const by = Math.round(now - last.wall - (mono - last.mono));
      if (Math.abs(by) > CLOCK_STEP_MS) {
        this.shiftMemory(by);
        this.pendingSteps.push({ id: now, from: now - by, now, by, jobs: 0, deadlines: 0, failed: false });
      }
    }
    // in the order seen: a second step while the first is pending moves what the first did
    while (this.pendingSteps.length > 0) {
      await this.applyStep(this.pendingSteps[0]!);
      this.pendingSteps.shift();
    }
  }

  /**
   * The work of one step of the clock (`followStep`), judged by the readings of when it was seen
   * (`step.now`): what a try before this one did is not done again (rows moved are due after
   * `step.now`, jobs moved carry the step's id, `shiftRate`). Throws what failed, after saying so
   * (once per step).
   */
  private async applyStep(step: ClockStep): Promise<void> {
    const { by } = step;
    const said = `the server's clock stepped ${by > 0 ? 'forward' : 'back'} by ${(Math.abs(by) / 1000).toFixed(1)} s (set by NTP, or a machine resumed)`;
    try {
      if (by > 0) {
        // what was due before the step is due all the same (judged by the clock of then),
        // and is out of the listing the shift pages through
        await this.processDue(step.from);
        await this.shiftDeadlines(step);
      }
      await this.shiftRates(step);
    } catch (err) {
      if (!step.failed) {
        step.failed = true;
        this.deps.logger.warn(`${said}, and it is not fully applied yet: rates and deadlines are moved at the next tick, and until then no rollout goes on`, { stepMs: by, jobs: step.jobs, ...(by > 0 ? { deadlines: step.deadlines } : {}), error: asUpdraftError(err).message });
      }
      throw err;
    }
    const deadlinesSaid = by > 0 ? `, and the ${step.deadlines} deadline(s) it passed over are moved on by as much` : '';
    this.deps.logger.warn(`${said}: each job's rate goes on at its pace${deadlinesSaid}`, { stepMs: by, jobs: step.jobs, ...(by > 0 ? { deadlines: step.deadlines } : {}), ...(step.failed ? { retried: true } : {}) });
  }

  /**
   * Steps not fully applied when the lead term ends are left: another instance may lead
   * meanwhile and write times by the clock after the step, which a step back cannot tell from
   * those before it (moving them would be wrong). What is left is as a step no leader saw.
   */
  private dropSteps(): void {
    for (const step of this.pendingSteps) {
      this.deps.logger.warn(`a step of the server's clock by ${(step.by / 1000).toFixed(1)} s was not fully applied when the lead changed, and is left: deadlines it passed over may time out, and a job's rate may stall or send a minute's worth at once`, { stepMs: step.by, jobs: step.jobs, deadlines: step.deadlines });
    }
    this.pendingSteps = [];
  }

  /**
   * The deadlines a step forward of the clock passed over (`dueAt` in (`from`, `now`]) moved
   * on by the step, with the times they are computed from (`dispatchedAt`, the phase's start,
   * a stop's grace, a device's own step timer: `deadlineOf`), so that a report recomputing the
   * deadline keeps it. Conditional writes of the rows, a page of DUE_BATCH at a time with a turn
   * of the event loop between, counted in `step.deadlines`; a row that fails to move fails the
   * whole (tried again: rows moved are due after `now`). A timed-out execution whose command
   * is still to take back, and a take-back to try again, are left due: they are not timeouts.
   * Deadlines past `now` stay as they are (a step forward shortens them by the step).
   */
  private async shiftDeadlines(step: ClockStep): Promise<void> {
    const { from, now, by } = step;
    const seen = new Set<string>();
    for (;;) {
      const listed = await this.deps.store.listDueExecutions(now, DUE_BATCH);
      const fresh = listed.filter((e) => !seen.has(`${e.jobId}\n${e.deviceId}`));
      // moved rows are due after `now`: what is listed again was left due (seen)
      if (fresh.length === 0) break;
      for (const e of fresh) seen.add(`${e.jobId}\n${e.deviceId}`);
      const written = await Promise.allSettled(fresh.map((e) => mutateExecution(this.deps, e, (cur) => movedDeadline(cur, from, now, by), now, e)));
      step.deadlines += written.filter((w) => w.status === 'fulfilled' && w.value !== undefined).length;
      // a row not moved would time out at the next processDue(now): the step is tried again
      const failed = written.find((w) => w.status === 'rejected');
      if (failed) throw failed.reason;
      if (listed.length < DUE_BATCH) break;
      await nextTurn();
    }
  }

  /** What the engine remembers by its clock, moved by a step of it (`followStep`). */
  private shiftMemory(by: number): void {
    if (this.storeOutage) this.storeOutage = { since: this.storeOutage.since + by, until: this.storeOutage.until + by };
    if (this.storeDownSince !== undefined) this.storeDownSince += by;
    if (this.storageDownSince !== undefined) this.storageDownSince += by;
    this.storageProbe = undefined; // asked again
    this.quiet.clear(); // every job looked at again
    for (const [id, last] of this.lastScan) this.lastScan.set(id, { ...last, at: last.at + by });
  }

  /**
   * The rate's clock of every active job moved by a step of the engine's clock (`followStep`),
   * written with the job with the step's id (conditional, read again on a conflict), so that a
   * try again after a failure moves no job twice; counted in `step.jobs`.
   */
  private async shiftRates(step: ClockStep): Promise<void> {
    const { by, id, now } = step;
    let after: string | undefined;
    do {
      const page = await this.deps.store.listJobs({ status: [...ACTIVE_JOB_STATUSES], limit: PAGE, omitSpec: true, ...(after ? { after } : {}) });
      for (const head of page.items) {
        let job: JobRecord | undefined = head;
        for (let attempt = 0; attempt < 5 && job && ACTIVE_JOB_STATUSES.includes(job.status); attempt++) {
          const p = progressOf(job);
          const moved = shiftRate(p, by, id);
          if (moved === p) break;
          if (await this.saveJob(job, job.status, moved, now)) {
            step.jobs++;
            break;
          }
          job = await this.deps.store.getJob(head.jobId, { omitSpec: true });
        }
      }
      after = page.next;
    } while (after);
  }

  /** Drops what the engine remembers of jobs no longer active. */
  private forgetFinished(active: Set<string>): void {
    for (const memo of [this.changed, this.windowed, this.quiet, this.arrived, this.specs, this.lastScan, this.heldJobs, this.busHeldJobs, this.unparsable] as const) for (const id of memo.keys()) if (!active.has(id)) memo.delete(id);
  }

  /**
   * Advances one job at once (a new job sends its first wave without waiting for the tick).
   * On an instance that does not lead it does nothing: the leader's next tick starts the job.
   */
  kick(jobId: string): Promise<void> {
    return this.exclusive(async () => {
      if (!(await this.lead())) return;
      // a step since the last tick is followed before the job is read (its rate moved with it)
      const now = this.now();
      await this.followStep(now);
      const job = await this.deps.store.getJob(jobId);
      if (!job || !ACTIVE_JOB_STATUSES.includes(job.status)) return;
      this.active.add(jobId);
      await this.advance(job, now);
    });
  }

  private async activeJobs(): Promise<JobRecord[]> {
    const out: JobRecord[] = [];
    let after: string | undefined;
    do {
      const page = await this.deps.store.listJobs({ status: [...ACTIVE_JOB_STATUSES], limit: PAGE, omitSpec: true, ...(after ? { after } : {}) });
      out.push(...page.items);
      after = page.next;
    } while (after);
    const jobs: JobRecord[] = [];
    for (const head of out.reverse()) {
      // oldest first; a job deleted meanwhile is skipped
      const job = await this.withSpec(head);
      if (job) jobs.push(job);
    }
    return jobs;
  }

  /** A job read without its spec, given the spec the engine keeps (read once per active job). */
  private async withSpec(head: JobRecord): Promise<JobRecord | undefined> {
    let spec = this.specs.get(head.jobId);
    if (spec === undefined) {
      const full = await this.deps.store.getJob(head.jobId);
      if (!full) return undefined;
      spec = full.spec ?? null;
      // finished jobs are forgotten at the next tick (forgetFinished): keep only active ones
      if (ACTIVE_JOB_STATUSES.includes(full.status)) this.specs.set(head.jobId, spec);
    }
    return spec ? { ...head, spec } : head;
  }

  // ---- the job's own state ----------------------------------------------------------------

  /** Writes the job's status and progress (conditional); undefined when someone else wrote first. */
  async saveJob(job: JobRecord, status: JobStatus, progress: RolloutProgress, now: number): Promise<JobRecord | undefined> {
    const next = { ...job, status, progress: progress as unknown as JsonObject, updatedAt: now, version: (job.version ?? 1) + 1 };
    if (!(await this.deps.store.updateJob(next))) return undefined;
    // the record replaced goes with it: a listener that never saw the job (a restarted
    // webhook notifier) still tells a resume or a next wave from progress
    this.deps.events.emit('job.changed', { job: next, previous: job });
    return next;
  }

  private async advance(initial: JobRecord, now: number): Promise<void> {
    let job = initial;
    const spec = specOf(job);
    this.changed.delete(job.jobId);
    this.quiet.delete(job.jobId);
    const countStart = performance.now();
    let counts = await this.deps.store.countExecutions(job.jobId);
    this.countingMs += performance.now() - countStart;
    let all = tally(counts);
    if (!spec) {
      // a job created before rollouts: complete it when every execution has finished, written
      // and announced as a rollout's completion is (saveJob: conditional, job.changed with the
      // record replaced, so webhooks post it), its end and its devices recorded
      if (job.status === 'IN_PROGRESS' && all.QUEUED + all.IN_PROGRESS === 0) await this.saveJob(job, 'COMPLETED', { ...progressOf(job), total: devicesOf(counts), finishedAt: now }, now);
      return;
    }
    let abort = abortReason(spec, all);
    if (abort && all.FAILED > 0 && retriesFailed(spec)) {
      // failures a retry is working on do not count (docs/rollouts.md), but a FAILED counted
      // between the tracker's two commits (the FAILED, then its retry), or left without its
      // retry by a crash, did: a job with retries could abort on one transient failure. Retries
      // owed are queued first and the rule judged again on counts read after them (a retry the
      // tracker committed since the first count among them). Read only when it would abort.
      await this.queueOwedRetries(job, spec, spec.plan.waves.length - 1, now);
      counts = await this.deps.store.countExecutions(job.jobId);
      all = tally(counts);
      abort = abortReason(spec, all);
    }
    if (abort) {
      await this.stopJob(job, 'ABORTED', abort, now);
      return;
    }
    if (job.status === 'PAUSED') return;
    let p = progressOf(job);
    if (job.status === 'SCHEDULED') {
      if (spec.plan.startAt !== undefined && spec.plan.startAt > now) return;
      p = { ...p, startedAt: now, waveStartedAt: now, rateEpoch: now, sentSinceEpoch: 0 };
      const started = await this.saveJob(job, 'IN_PROGRESS', p, now);
      if (!started) return;
      job = started;
    }
    if (spec.type === 'continuous' && (await this.scanContinuous(job, spec, now)) === 'stopped') return;

    // maintenance windows: outside them nothing new is sent (what was sent goes on); the
    // rate starts over when one opens, so a night's allowance is not spent in one burst
    // in each device's own time zone, the agents hold their installs: the engine sends at any time
    const windows = spec.plan.timeZone === DEVICE_TIME_ZONE ? undefined : spec.plan.windows;
    const closed = windows !== undefined && !inWindow(windows, now, spec.plan.timeZone);
    let mustSave = false;
    // a continuous job's devices grow as it picks them up: its count of devices (progress.total,
    // the job list's) follows them, a tick behind, written only when it changed
    if (spec.type === 'continuous') {
      const counted = devicesOf(counts);
      if (counted !== p.total) {
        p = { ...p, total: counted };
        mustSave = true;
      }
    }
    if (closed && !p.windowClosed) {
      const opensAt = nextOpening(windows, now, spec.plan.timeZone);
      p = { ...p, windowClosed: { since: now, ...(opensAt !== undefined ? { opensAt } : {}) } };
      mustSave = true;
    } else if (!closed && p.windowClosed) {
      const { windowClosed: _, ...rest } = p;
      p = { ...rest, rateEpoch: now, sentSinceEpoch: 0 };
      mustSave = true;
    }

    // an outage of the state database this instance ticked through: the rate's clock moves on
    // by it, as by a hold of the artifact storage (once per job and outage)
    const outage = this.storeOutage;
    if (outage && owesOutage(p, outage)) {
      p = skipOutage(p, outage);
      mustSave = true;
    }

    // send within the rate allowance and the in-flight window
    const w = p.wave;
    // what the rate allows now: built up since the epoch, less what was sent and given up, and
    // at most `rateCap` (a minute's worth): a time with less to send than the rate allowed
    // does not make a burst when there is something to send again
    const rate = () => {
      const elapsed = now - (p.rateEpoch ?? now);
      const built = rateAllowance(spec.plan, elapsed) - p.sentSinceEpoch - forfeitOf(p);
      return { built, allowance: Math.min(built, rateCap(spec.plan, elapsed)) };
    };
    let { built, allowance } = rate();
    const window = spec.plan.maxInFlight === undefined ? Infinity : spec.plan.maxInFlight - inFlight(counts);
    if (spec.plan.maxInFlight !== undefined) this.windowed.add(job.jobId);
    // a command sent while the artifact storage does not answer is a device bound to fail its
    // download (or to wait it out): the window would fill with them, and their failures count
    // towards the abort rules. Nothing new is sent until it answers; what was sent goes on
    // (the agent retries its download for minutes). Asked only when there is something to send
    let held = false;
    if (!closed && Math.min(allowance, window) > 0 && unsentUpTo(counts, w) > 0) {
      // the same for the MQTT connection (an external broker's): a command published while it
      // is down is held by the instance and the execution would be marked dispatched, its
      // timeout running, while no device can get it. Nothing new is sent until it is back.
      // One hold, two reasons: either moves the rate's clock on by the wait (`endHold`), so a
      // ramp-up goes on where it stopped (until 2026-12-06 the MQTT one did not: after a
      // 10-minute outage a ramp sent a minute of its tenth minute at once)
      const reason = !this.busConnected(now) ? 'mqtt' : (await this.storageAnswers(now)) ? undefined : 'storage';
      if (reason === undefined) {
        this.heldJobs.delete(job.jobId);
        if (p.storageHeldSince !== undefined) {
          p = endHold(p, now);
          mustSave = true;
          ({ built, allowance } = rate());
        }
      } else {
        held = true;
        (reason === 'mqtt' ? this.busHeldJobs : this.heldJobs).add(job.jobId);
        // saved with the job: a leader taking over during the outage (or after a restart)
        // knows how long the job waited, and does not send what its rate built up at once
        const heldBy = reason === 'mqtt' ? 'mqtt' : undefined;
        if (p.storageHeldSince === undefined || p.heldBy !== heldBy) {
          const { heldBy: _, ...rest } = p;
          p = { ...rest, storageHeldSince: p.storageHeldSince ?? now, ...(heldBy ? { heldBy } : {}) };
          mustSave = true;
        }
      }
    }
    const budget = closed || held ? 0 : Math.min(allowance, window, this.deps.maxSendPerTick ?? ENGINE_DEFAULTS.maxSendPerTick);
    let sent = 0;
    // nothing to send until an execution changes: the window is full, or the wave all sent
    let quiet = window <= 0 && allowance > 0;
    if (budget > 0) {
      // devices online now first, then the store's order
      const first = await this.arrivals(job.jobId, w, budget);
      const taken = new Set(first.map((e) => e.deviceId));
      const rest = first.length < budget ? await this.deps.store.nextUndispatched(job.jobId, w, budget - first.length) : [];
      const batch = [...first, ...rest.filter((e) => !taken.has(e.deviceId))];
      quiet = batch.length === 0;
      if (batch.length > 0) {
        const artifact = await this.deps.store.getArtifact(job.artifactName, job.artifactVersion);
        if (!artifact) {
          await this.stopJob(job, 'ABORTED', `artifact ${job.artifactName}@${job.artifactVersion} is no longer in the catalogue`, now);
          return;
        }
        // all in flight together (sharing group commits), begun a slice at a time
        const results = await startInSlices(batch, DISPATCH_SLICE, (e) => this.dispatch(job, spec, artifact, e, now));
        sent = results.filter((r) => r === 'sent').length;
      }
    }

    // the wave has finished when nothing in it (or before it) is queued or in progress
    let next: { status: JobStatus; progress: RolloutProgress } | undefined;
    let upTo = tally(counts, (wave) => wave <= w);
    const last = spec.plan.waves.length - 1;
    let judged = counts;
    // a device's FAILED and its retry are two commits (the tracker's): judged in between, the
    // wave passed or failed without the retry and the job completed, and the retry then found
    // it final. Retries still owed are queued first, and the wave judged on counts read after
    // that (a retry the tracker committed since the first count is one of them)
    if (upTo.QUEUED + upTo.IN_PROGRESS === 0 && sent === 0 && upTo.FAILED > 0 && (w < last || spec.type === 'snapshot') && retriesFailed(spec)) {
      const queued = await this.queueOwedRetries(job, spec, w, now);
      judged = await this.deps.store.countExecutions(job.jobId);
      upTo = tally(judged, (wave) => wave <= w);
      if (queued > 0) this.wake(); // send them at once
    }
    if (upTo.QUEUED + upTo.IN_PROGRESS === 0 && sent === 0) {
      if (w < last) {
        const wave = spec.plan.waves[w]!;
        const own = tally(judged, (x) => x === w);
        const pct = successPercent(own);
        const finished = own.SUCCEEDED + own.FAILED + own.TIMED_OUT;
        const unproven = own.REJECTED + own.CANCELED + own.REMOVED;
        if (wave.successThreshold > 0 && finished === 0 && unproven > 0) {
          // a gate with nothing to judge: every device of the wave ended without an install
          // (REJECTED, CANCELED: a newer job's command stood, REMOVED). Counting that as 100%
          // let the rollout past its canary with no evidence at all
          const message = `wave ${w + 1} finished with no device updated (${unproven} ended without an install: rejected, canceled or removed), so its threshold of ${wave.successThreshold}% has nothing to judge; resume to go on, or cancel`;
          next = { status: 'PAUSED', progress: { ...p, pause: { reason: 'threshold', wave: w, message, at: now } } };
        } else if (pct < wave.successThreshold) {
          // waves are named from 1 to people (job watch, the dashboard, webhooks); `wave: w` is the index
          // a timed-out device whose SUCCESS came after its timeout runs the build but counts
          // as not succeeded: said, with where to see which (QA: a canary of five devices that
          // all ran the build paused at 0.0%, with nothing saying why)
          const timedOut = own.TIMED_OUT > 0 ? ` (${own.TIMED_OUT} timed out; a success that came after its timeout counts as none: updraft job show ${job.jobId} says which devices run the build)` : '';
          const message = `wave ${w + 1} succeeded on ${pct.toFixed(1)}% of its finished devices${timedOut}, below its threshold of ${wave.successThreshold}%; resume to go on, or cancel`;
          next = { status: 'PAUSED', progress: { ...p, pause: { reason: 'threshold', wave: w, message, at: now } } };
        } else if (wave.requireApproval) {
          const message = `wave ${w + 1} finished (${pct.toFixed(1)}% succeeded) and needs approval: resume the job to start wave ${w + 2}`;
          next = { status: 'PAUSED', progress: { ...p, pause: { reason: 'approval', wave: w, message, at: now } } };
        } else {
          next = { status: 'IN_PROGRESS', progress: { ...p, wave: w + 1, waveStartedAt: now, rateEpoch: now, sentSinceEpoch: 0 } };
        }
      } else if (spec.type === 'snapshot') {
        next = { status: 'COMPLETED', progress: { ...p, finishedAt: now } };
      }
    }
    if (next) {
      const saved = await this.saveJob(job, next.status, next.progress, now);
      if (saved && next.progress.wave !== w) this.wake(); // start the next wave at once
    } else if (sent > 0 || mustSave) {
      // sent from a capped allowance: what was above the cap is given up, with the sends
      const excess = sent > 0 && p.rateEpoch !== undefined && built > allowance ? built - allowance : 0;
      const forfeit = excess > 0 ? { rateForfeit: { epoch: p.rateEpoch!, count: forfeitOf(p) + excess } } : {};
      await this.saveJob(job, job.status, { ...p, sentSinceEpoch: p.sentSinceEpoch + sent, ...forfeit }, now);
    } else if (closed && job.status === 'IN_PROGRESS' && !this.changed.has(job.jobId)) {
      // looked at again when an execution changes, or every few seconds: soon enough for a window to open
      this.quiet.set(job.jobId, now);
    } else if (quiet && job.status === 'IN_PROGRESS' && spec.type === 'snapshot' && !this.changed.has(job.jobId)) {
      // continuous jobs are not quiet: they look for new devices on a timer
      this.quiet.set(job.jobId, now);
    }
  }

  /**
   * Queues the retries that FAILED executions of `job`'s waves up to `wave` are still owed;
   * resolves with how many it queued. The tracker writes a device's FAILED, then its retry, in
   * a second commit: a tick in between (the early one the outcome sets off, or another
   * instance's) saw nothing queued or in progress and completed the job or judged the wave,
   * and the retry then found the job final; a crash between the two commits lost it too.
   * retryIfAllowed applies the tracker's rules (the limit, a deleted device, the job active),
   * and of the two writers only one queues the retry (the write is conditional on the failed
   * attempt). Read only when the job retries on FAILED; rows at the limit (attempt above
   * `retries.limit`: they owe nothing) are not read, the store leaves them out by index.
   */
  private async queueOwedRetries(job: JobRecord, spec: JobSpec, wave: number, now: number): Promise<number> {
    if (!retriesFailed(spec)) return 0;
    let queued = 0;
    let after: string | undefined;
    do {
      const page = await this.deps.store.listFailedBelowAttempt(job.jobId, { attemptBelow: spec.retries.limit + 1, maxWave: wave, limit: PAGE, ...(after ? { after } : {}) });
      const retried = await Promise.all(page.items.map((e) => retryIfAllowed(this.deps, job, e, now)));
      queued += retried.filter((r) => r !== undefined).length;
      after = page.next;
      // the embedded store reads synchronously: let device traffic through between pages
      if (after) await nextTurn();
    } while (after);
    if (queued > 0) this.deps.logger.info('queued retries owed to failed devices', { jobId: job.jobId, devices: queued });
    return queued;
  }

  /**
   * Whether the artifact storage answers, asked at most every STORAGE_RECHECK_MS (all jobs of
   * a tick share one answer). Logged once when it stops answering and once when it answers
   * again, however many ticks and jobs it held back. A probe that gets no answer takes its
   * timeout (2 s) out of the tick: the tick sends nothing anyway.
   */
  private async storageAnswers(now: number): Promise<boolean> {
    const probe = this.deps.artifactStorage;
    if (!probe) return true;
    const last = this.storageProbe;
    if (last && now >= last.at && now - last.at < STORAGE_RECHECK_MS) return last.ok;
    const health = await probe().catch((err: unknown): BlobStoreHealth => ({ state: 'unreachable', detail: asUpdraftError(err).message }));
    const ok = health.state === 'ok';
    this.storageProbe = { at: now, ok };
    if (!ok && this.storageDownSince === undefined) {
      this.storageDownSince = now;
      this.deps.logger.warn('the artifact storage does not answer: no new update commands are sent until it does (devices already downloading retry); checked every second', { storage: health.state, ...(health.detail ? { error: health.detail } : {}) });
    } else if (ok && this.storageDownSince !== undefined) {
      this.deps.logger.info('the artifact storage answers again: sending update commands', { seconds: Math.max(0, Math.round((now - this.storageDownSince) / 1000)), jobsHeld: this.heldJobs.size });
      this.storageDownSince = undefined;
    }
    return ok;
  }

  /**
   * Whether the instance's MQTT connection is up (`mqttConnected`). Logged once when a job is
   * first held by its outage and once when it is back, however many ticks and jobs it held.
   */
  private busConnected(now: number): boolean {
    const ok = this.deps.mqttConnected?.() ?? true;
    if (!ok && this.busDownSince === undefined) {
      this.busDownSince = now;
      this.deps.logger.warn('the MQTT broker cannot be reached: no new update commands are sent until the connection is back (they could not leave this instance; devices already updating go on)');
    } else if (ok && this.busDownSince !== undefined) {
      this.deps.logger.info('the MQTT broker connection is back: sending update commands', { seconds: Math.max(0, Math.round((now - this.busDownSince) / 1000)), jobsHeld: this.busHeldJobs.size });
      this.busDownSince = undefined;
      this.busHeldJobs.clear();
    }
    return ok;
  }

  // ---- executions -----------------------------------------------------------------------

  /**
   * Sends one execution's command, or refuses it (downgrade, device gone). `withdrawn`: sent,
   * but taken back (or replaced by its retry's) at once by the fence: not counted against the
   * job's rate, like a refusal (the device is not asked for it).
   */
  private async dispatch(job: JobRecord, spec: JobSpec, artifact: ArtifactRecord, e: ExecutionRecord, now: number): Promise<'sent' | 'withdrawn' | 'refused' | 'failed'> {
    const { store } = this.deps;
    const key = { jobId: e.jobId, deviceId: e.deviceId };
    const stillQueued = (cur: ExecutionRecord) => cur.status === 'QUEUED' && cur.dispatchedAt === undefined && (cur.attempt ?? 1) === (e.attempt ?? 1);
    // set once the command is written: a failure after it is fenced all the same (below)
    let written: { aid: string; at: number } | undefined;
    try {
      const device = await store.getDevice(e.deviceId);
      if (!device || device.revoked) {
        const error = device ? DEVICE_REVOKED : 'the device is no longer registered';
        await mutateExecution(this.deps, key, (cur) => (stillQueued(cur) ? { status: 'REMOVED', details: { ...cur.details, error } } : undefined), now, e);
        return 'refused';
      }
      const aid = agentJobId(e.jobId, e.attempt ?? 1);
      let reported: ReportedSoftware | undefined;
      for (let attempt = 1; ; attempt++) {
        const shadow = await store.getShadow(e.deviceId, '');
        const reportedState = shadow && !shadow.deleted ? shadow.state.reported : undefined;
        reported = parseReportedSoftware(reportedState?.software);
        // a retry whose device reports the SUCCESS of an earlier attempt on the job's build (that
        // of a timed-out attempt, come in once its retry was queued): done, nothing sent
        // (retry-policy.ts, succeededAttemptOf). Before the refusals: a build whose `requires`
        // the device's new version no longer meets would end it REJECTED
        const succeeded = succeededAttemptOf(job, e.attempt ?? 1, reported);
        if (succeeded !== undefined) {
          const version = reported!.version;
          // a take-back the retry owes ends with it: the device finished that job (succeededUnsent)
          await mutateExecution(this.deps, key, (cur) => (stillQueued(cur) ? succeededUnsent(cur, succeeded, version, now) : undefined), now, e);
          return 'refused'; // nothing sent: not counted against the rate
        }
        // a lower version than the device runs, or a build for other hardware or over other
        // versions (protocol/compatibility.ts): REJECTED, nothing sent (a wave's success rate
        // leaves it out). A device that has not said its type decides itself (jobs/device-fit.ts)
        const refusal = refusalOf(artifact, spec.allowDowngrade === true, reportedState, reported);
        if (refusal) {
          const { error, version } = refusal;
          await mutateExecution(this.deps, key, (cur) => (stillQueued(cur) ? { status: 'REJECTED', details: { ...cur.details, error, ...(version !== undefined ? { version } : {}) } } : undefined), now, e);
          return 'refused';
        }
        // the device is asked for a newer job's build it has not finished (a hotfix over this
        // slower rollout): that job stands, and this execution ends, CANCELED as when the newer
        // job's command supersedes this one's (execution-tracker.ts); nothing is sent
        const newer = await this.newerCommand(job, e.deviceId, shadow?.deleted ? undefined : shadow?.state.desired?.software, reported);
        if (newer) {
          const error = `not sent: the device was asked for job ${newer}, created after this one, and has not finished it; that job's command stands`;
          // the newer command replaced any this execution's timed-out attempt left desired: nothing owed
          await mutateExecution(this.deps, key, (cur) => (stillQueued(cur) ? { status: 'CANCELED', details: { ...withoutRetractPending(cur.details), error }, dueAt: undefined } : undefined), now, e);
          return 'refused';
        }
        // written over the version read: a command, stay or rollback written meanwhile (another
        // instance leading for a moment too, deployment.md) is not replaced unseen; read again
        try {
          await sendCommand(this.desired, e.deviceId, softwareFor(artifact, aid), shadow);
          break;
        } catch (err) {
          if (err instanceof UpdraftError && err.code === 'CONFLICT' && attempt < 3) continue;
          throw err;
        }
      }
      // the command's clock starts when it is committed and sent, not when the tick began: a
      // big batch waits for its group commit, and the device's timeout and latency count from here
      const sentAt = this.now();
      written = { aid, at: sentAt };
      const previous: JsonObject | undefined = reported ? { version: reported.version, ...(reported.name ? { name: reported.name } : {}) } : undefined;
      const markSent = (cur: ExecutionRecord): Partial<ExecutionRecord> | undefined => {
        if ((cur.attempt ?? 1) !== (e.attempt ?? 1) || isTerminal(cur.status)) return undefined;
        // this command replaced a timed-out attempt's that a failed retract left desired: nothing is owed any more
        const details: JsonObject = { ...withoutRetractPending(cur.details) };
        if (details.previous === undefined && previous) details.previous = previous;
        // the device may have reported already (the tracker then set dispatchedAt)
        if (cur.dispatchedAt !== undefined) return details.previous === cur.details.previous && details[RETRACT_PENDING] === cur.details[RETRACT_PENDING] ? undefined : { details };
        return { dispatchedAt: sentAt, details, dueAt: deadlineOf(spec, { status: cur.status, dispatchedAt: sentAt, details }) };
      };
      // the last row the edit saw, and whether it had something to write there
      let last: { row: ExecutionRecord; change: boolean } | undefined;
      const marked = await mutateExecution(
        this.deps,
        key,
        (cur) => {
          const change = markSent(cur);
          last = { row: cur, change: change !== undefined };
          return change;
        },
        sentAt,
        e, // as listed: if it changed since, the conditional write fails and the row is read again
      );
      // the row as written, or as found with nothing to write (the store's: mutateExecution
      // confirms a remembered row); unknown when the write kept conflicting or there is no row
      const stands = await this.fenceCommand(key, e.attempt ?? 1, aid, marked ?? (last && !last.change ? last.row : undefined), sentAt, artifact);
      return stands ? 'sent' : 'withdrawn';
    } catch (err) {
      // the replica refused (429) or the store failed: the execution stays queued for the next tick
      this.deps.logger.warn('update command not sent; retrying next tick', { jobId: e.jobId, deviceId: e.deviceId, error: asUpdraftError(err).message });
      // the command was written but the execution not marked sent: fenced as a marked one is
      // (the row read again). A row still wanting it keeps it (the next tick sends it again and
      // marks it); one canceled meanwhile (on another instance, whose stop found the row unsent
      // and the shadow perhaps without the command yet) has it taken back here. A cancel after
      // this read finds the command itself (stopExecution, takeBackUnsent)
      if (written) {
        try {
          await this.fenceCommand(key, e.attempt ?? 1, written.aid, undefined, written.at, artifact);
        } catch (fenceErr) {
          this.deps.logger.warn('update command whose execution was not marked sent not fenced; a stop of the execution takes it back', { ...key, agentJobId: written.aid, error: asUpdraftError(fenceErr).message });
        }
      }
      return 'failed';
    }
  }

  /**
   * The fence after a command is written (dispatch): takes it back when the execution, as
   * the write of its dispatch left or found it (`row`, read again when unknown), no longer
   * wants it: canceled or asked to stop, refused, removed or timed out, or on another attempt.
   *
   * Why: the command goes out before the execution is marked sent (a crash in between sends
   * it again, the same device-side job id), so a cancel in between (on another instance
   * leading for a moment too, deployment.md, the bound: on this one a cancel waits for the
   * tick, `exclusive`) finds the execution QUEUED with nothing sent: it ends it CANCELED and
   * takes nothing back, or its take-back reads the shadow before the command lands; the
   * device then installs a canceled job. The cancel writes the execution before it reads the shadow, and
   * this reads the execution after the command is committed: of the two, at least one sees
   * the other (the row's writes are ordered, each conditional on the version read), so the
   * command is taken back by the cancel or here. The same holds for a timeout's take-back and
   * a refusal at dispatch on the other instance. A device that reported an outcome for the
   * attempt, or is installing it, is left alone (a stop leaves installs to finish).
   *
   * An execution on a newer attempt whose command is out (the other instance sent the retry
   * meanwhile) gets that attempt's command back in place of this one, not a stay: this
   * command was written over the retry's (the sender read the shadow again on a conflict and
   * found its own job's command there), and a stay left the device with neither, the retry
   * recovering only at its timeout. Put back only where this command still stands
   * (replaceCommand; anything written since stands), then fenced in turn as a command just
   * sent: a cancel of the retry meanwhile found this command, not the retry's, and took
   * nothing back, so the retry's is taken back here.
   *
   * Resolves with whether the command stands: kept, or its take-back failed. One taken back,
   * replaced by its retry's or found replaced already is not counted against the job's rate
   * (the retry's was counted by the instance that sent it).
   */
  private async fenceCommand(key: { jobId: string; deviceId: string }, attempt: number, aid: string, row: ExecutionRecord | undefined, now: number, artifact: ArtifactRecord): Promise<boolean> {
    const cur = row ?? (await this.deps.store.getExecution(key.jobId, key.deviceId));
    if (cur && (cur.attempt ?? 1) === attempt) {
      if (cur.status === 'SUCCEEDED' || cur.status === 'FAILED') return true;
      if (!isTerminal(cur.status) && (cur.details.cancelRequested !== true || cur.details.agentStatus === 'INSTALLING')) return true;
    }
    if (cur && (cur.attempt ?? 1) > attempt && wantsItsCommand(cur)) {
      const retry = cur.attempt ?? 1;
      const retryId = agentJobId(key.jobId, retry);
      try {
        const put = await replaceCommand(this.desired, key.deviceId, aid, softwareFor(artifact, retryId));
        if (put === 'none') return false; // the retry's command (or what was written since) stands
        this.deps.logger.info("update command replaced at once by its retry's: the execution moved to a newer attempt while it was being sent", { ...key, agentJobId: aid, retry: retryId });
        await this.fenceCommand(key, retry, retryId, undefined, now, artifact);
        return false;
      } catch (err) {
        // the stale command is taken back instead (as before): the retry recovers at its timeout
        this.deps.logger.warn("retry's update command not put back; taking the stale one back", { ...key, agentJobId: aid, retry: retryId, error: asUpdraftError(err).message });
      }
    }
    const why = !cur ? 'its execution is gone' : (cur.attempt ?? 1) !== attempt ? `the execution is on attempt ${cur.attempt ?? 1} now` : `the execution is ${cur.details.cancelRequested === true && !isTerminal(cur.status) ? 'being canceled' : cur.status}`;
    this.deps.logger.info('update command taken back at once: the execution changed while it was being sent', { ...key, agentJobId: aid, why });
    const outcome = await this.takeBack(key.deviceId, aid, 'update command of a changed execution not taken back', { ...key, agentJobId: aid });
    if (outcome === 'done') return false;
    if (outcome !== 'for now' || !cur) return true;
    // failed for now: retried through the deadline index (pending-retract.ts) when nothing else
    // is due for the row; a row still due (a timeout or a stop's grace) takes its attempt's back then
    await mutateExecution(
      this.deps,
      key,
      (c) => {
        const idle = isTerminal(c.status) || (c.status === 'QUEUED' && c.dispatchedAt === undefined);
        if (!idle || c.dueAt !== undefined || c.details[RETRACT_PENDING] !== undefined) return undefined;
        return { details: { ...c.details, [RETRACT_PENDING]: aid }, dueAt: now + RETRACT_RETRY_MS };
      },
      now,
    );
    return true;
  }

  /**
   * The id of the job whose update command the device is asked for (`desired`) when that job
   * was created after `job` and the device has not finished it: its outcome not reported, its
   * execution there not ended. "The last asked wins" holds in the order the jobs were made: a
   * newer job's command supersedes an older one's, an older job's later wave does not
   * overwrite a newer one's (a hotfix over a slow rollout). A control command (a stay, a
   * rollback) ends its job on the device, and jobs created in the same millisecond have no
   * order: the command is sent. Reads nothing for a device asked for nothing, for this job
   * or for one it reported finishing; else the asked job's identity (the tracker caches the
   * last 1,000 jobs) and, for a newer one, the device's execution in it.
   */
  private async newerCommand(job: JobRecord, deviceId: string, desired: unknown, reported: ReportedSoftware | undefined): Promise<string | undefined> {
    const askedId = isJsonObject(desired) && typeof desired.jobId === 'string' ? desired.jobId : undefined;
    const asked = askedId === undefined ? undefined : parseAgentJobId(askedId);
    if (!asked || asked.control || asked.jobId === job.jobId) return undefined;
    // finished there: its outcome reported
    if (reported !== undefined && reported.jobId === askedId && (reported.status === 'SUCCESS' || reported.status === 'FAILURE')) return undefined;
    const other = await this.deps.tracker.jobIdentity(asked.jobId);
    if (!other || other.createdAt <= job.createdAt) return undefined;
    const theirs = await this.deps.store.getExecution(asked.jobId, deviceId);
    if (!theirs || isTerminal(theirs.status) || (theirs.attempt ?? 1) !== asked.attempt) return undefined;
    return asked.jobId;
  }

  /** Ends executions whose deadline passed. */
  private async processDue(now: number): Promise<void> {
    const jobs = new Map<string, JobRecord | undefined>();
    // each execution once per tick: one whose work failed for now (a retract the replica
    // refused) stays due, and the next round would list it again at once
    const seen = new Set<string>();
    for (let round = 0; round < 20; round++) {
      const listed = await this.deps.store.listDueExecutions(now, DUE_BATCH);
      const due = listed.filter((e) => !seen.has(`${e.jobId}\n${e.deviceId}`));
      if (due.length === 0) return;
      for (const e of due) seen.add(`${e.jobId}\n${e.deviceId}`);
      // the job's current status (a retry needs it), with the spec the engine keeps: executions
      // timing out tick after tick must not re-read a spec of megabytes each time
      for (const e of due) {
        if (jobs.has(e.jobId)) continue;
        const head = await this.deps.store.getJob(e.jobId, { omitSpec: true });
        jobs.set(e.jobId, head && (await this.withSpec(head)));
      }
      await Promise.all(due.map((e) => this.expire(jobs.get(e.jobId), e, now)));
      if (listed.length < DUE_BATCH) return;
    }
  }

  private async expire(job: JobRecord | undefined, e: ExecutionRecord, now: number): Promise<void> {
    const key = { jobId: e.jobId, deviceId: e.deviceId };
    const aid = agentJobId(e.jobId, e.attempt ?? 1);
    try {
      // a report committed to the shadow but not to the execution (a crash in between) is the
      // truth; read back, as the catch-up reads it: one the row holds already writes nothing
      // (applied as new, it moved lastReportAt to the moment of the timeout: the execution said
      // the device last reported as it timed out, 2026-12-06)
      const stored = await this.deps.store.getShadow(e.deviceId, '');
      const shadow = stored && !stored.deleted ? stored : undefined;
      const reported = shadow?.state.reported?.software;
      if (shadow && parseReportedSoftware(reported)?.jobId === aid) await this.deps.tracker.reapply(e.deviceId, reported, reportedAt(shadow));
      const spec = job ? specOf(job) : undefined;
      // TIMED_OUT and still due: a timeout written by an earlier pass whose command was not
      // taken back yet (the process died after the write, or the replica refused the retract)
      let unfinished: ExecutionRecord | undefined;
      // a timed-out attempt's command whose retract failed for now as its retry was queued
      let owed: string | undefined;
      // a device asked to stop that did not confirm within the grace, its command to take back
      let unconfirmed: ExecutionRecord | undefined;
      const written = await mutateExecution(
        this.deps,
        key,
        (cur) => {
          unfinished = undefined;
          owed = undefined;
          unconfirmed = undefined;
          if (cur.dueAt === undefined || cur.dueAt > now) return undefined;
          owed = owedRetract(cur);
          if (owed !== undefined) return undefined;
          if (cur.status === 'TIMED_OUT') {
            unfinished = cur;
            return undefined;
          }
          if (isTerminal(cur.status)) return { dueAt: undefined }; // nothing is due for a finished execution
          const canceled = cur.details.cancelRequested === true;
          // an install under way is left to finish, as the stop leaves it: ended as it stands
          if (canceled && cur.details.agentStatus !== 'INSTALLING') {
            unconfirmed = cur;
            return undefined;
          }
          const error = canceled ? 'canceled: the device did not confirm it stopped' : timeoutReason(spec, cur, now);
          const details: JsonObject = { ...cur.details, error };
          delete details.cancelBy;
          // a timeout stays due (its dueAt kept, indexed) until its command is taken back: the
          // mark that lets the next tick, after a restart too, finish what a crash cut short
          if (!canceled) return { status: 'TIMED_OUT', details };
          return { status: 'CANCELED', details, dueAt: undefined };
        },
        now,
      );
      if (owed !== undefined) return await this.retractOwed(key, owed, now);
      if (unconfirmed) return await this.endUnconfirmedCancel(unconfirmed, now);
      const timedOut = written?.status === 'TIMED_OUT' ? written : unfinished;
      if (!timedOut) return;
      // a device that comes back after its timeout must not start this attempt any more, also
      // when a retry is queued: the retry is a command of its own (`<jobId>.<attempt>`), sent
      // when the job's waves, rate, window, in-flight limit and pauses allow, maybe long after,
      // maybe never (the job canceled or aborted first, which ends an unsent retry without
      // telling the device anything). Left in place, the timed-out attempt's command was
      // installed by a device coming back meanwhile, outside all of that, and recorded nowhere
      // (its reports are about an attempt no longer current). An online device then gets the
      // stay and the retry one after the other: a download called off and started again.
      // Taken back before the retry is queued, whose write ends the mark (a crash in between
      // takes it back again, which finds the stay there and writes nothing)
      const attempt = timedOut.attempt ?? 1;
      // A retract that fails does not hold the retry back: a retry lost (the job found final by
      // the time the next tick tried) or never queued (a retract refused at every tick kept the
      // row due for good, filling the due batches) is worse than what it guards against. Refused
      // for good (4xx but 429: a shadow that cannot take the write), the mark ends; failed for
      // now (429, 5xx, the database), it is tried again a few seconds later: the mark stays, or
      // the queued retry carries it (pending-retract.ts) until the retry's own command replaces it
      const timedOutId = agentJobId(e.jobId, attempt);
      const transient = (await this.takeBack(e.deviceId, timedOutId, 'timed-out command not taken back', { jobId: e.jobId, deviceId: e.deviceId, attempt })) === 'for now';
      if (job && (await retryIfAllowed(this.deps, job, timedOut, now, transient ? timedOutId : undefined))) return;
      const stillMarked = (cur: ExecutionRecord) => cur.status === 'TIMED_OUT' && (cur.attempt ?? 1) === attempt && cur.dueAt !== undefined;
      await mutateExecution(this.deps, key, (cur) => (stillMarked(cur) ? { dueAt: transient ? now + RETRACT_RETRY_MS : undefined } : undefined), now);
    } catch (err) {
      this.deps.logger.warn('timeout not processed; retrying next tick', { jobId: e.jobId, deviceId: e.deviceId, error: asUpdraftError(err).message });
    }
  }

  /**
   * Takes back `commandId` from the device (a stay, retractCommand): `done`, or how it failed,
   * logged as `failed` with `fields`: `for now` (429, 5xx, the database: tried again later,
   * pending-retract.ts) or `for good` (a shadow that cannot take the write).
   */
  private async takeBack(deviceId: string, commandId: string, failed: string, fields: Record<string, unknown>): Promise<'done' | 'for now' | 'for good'> {
    try {
      await retractCommand(this.desired, deviceId, commandId);
      return 'done';
    } catch (err) {
      const e = asUpdraftError(err);
      this.deps.logger.warn(failed, { ...fields, error: e.message });
      return isTransient(e) ? 'for now' : 'for good';
    }
  }

  /**
   * Ends CANCELED an execution whose device did not confirm its stop within the grace, its
   * command taken back first: the stop's own take-back may have failed (a replica answering 429
   * as a big cancel wrote hundreds of stays at once, logged and never tried again), and a
   * device offline meanwhile would install the canceled build on coming back. Taken back before
   * the write, so a crash in between leaves the row due and the next tick does it again (it
   * finds the stay there and writes nothing). Failed for now, the row ends CANCELED owing the
   * retract (pending-retract.ts), tried again every RETRACT_RETRY_MS; refused for good, it ends
   * with a warning, as a timeout's retract does.
   */
  private async endUnconfirmedCancel(e: ExecutionRecord, now: number): Promise<void> {
    const key = { jobId: e.jobId, deviceId: e.deviceId };
    const attempt = e.attempt ?? 1;
    const commandId = agentJobId(e.jobId, attempt);
    const transient = (await this.takeBack(e.deviceId, commandId, 'canceled command not taken back', { ...key, agentJobId: commandId })) === 'for now';
    await mutateExecution(
      this.deps,
      key,
      (cur) => {
        if (isTerminal(cur.status) || cur.details.cancelRequested !== true || (cur.attempt ?? 1) !== attempt || cur.dueAt === undefined || cur.dueAt > now) return undefined;
        const details: JsonObject = { ...cur.details, error: 'canceled: the device did not confirm it stopped' };
        delete details.cancelBy;
        if (transient) details[RETRACT_PENDING] = commandId;
        return { status: 'CANCELED', details, dueAt: transient ? now + RETRACT_RETRY_MS : undefined };
      },
      now,
    );
  }

  /**
   * Takes back a timed-out attempt's command (`agentJobId`) whose retract failed for now when
   * its retry was queued (pending-retract.ts), then ends the mark; failed for now again, the
   * mark stays and the next tick tries again. Whatever became of the execution since (its
   * retry unsent, canceled, aborted, refused at dispatch) the command is still desired, unless
   * the device reported SUCCESS or FAILURE of it meanwhile (back online with the build while
   * the job was paused, rate-limited or out of its window): a stay then would call off a job
   * the device finished, and the retry's turn ends the execution SUCCEEDED unsent over it;
   * nothing is written and the mark ends. The fence's owed take-back comes here too.
   */
  private async retractOwed(key: { jobId: string; deviceId: string }, commandId: string, now: number): Promise<void> {
    const owes = (cur: ExecutionRecord) => owedRetract(cur) === commandId;
    try {
      await retractCommand(this.desired, key.deviceId, commandId);
    } catch (err) {
      const error = asUpdraftError(err);
      if (isTransient(error)) {
        this.deps.logger.warn('timed-out command not taken back; trying again later', { ...key, agentJobId: commandId, error: error.message });
        await mutateExecution(this.deps, key, (cur) => (owes(cur) ? { dueAt: now + RETRACT_RETRY_MS } : undefined), now);
        return;
      }
      this.deps.logger.warn('timed-out command not taken back: the shadow refuses it', { ...key, agentJobId: commandId, error: error.message });
    }
    // nothing else is due for such a row: a QUEUED one has no command out, an ended one no deadline
    await mutateExecution(this.deps, key, (cur) => (owes(cur) ? { details: withoutRetractPending(cur.details), dueAt: undefined } : undefined), now);
  }

  // ---- cancel, abort, rollback ------------------------------------------------------------

  /**
   * Ends a job CANCELED or ABORTED: queued executions end CANCELED; devices that have the
   * command but have not started installing are told to stop (stay command) and end
   * CANCELED when they confirm (or after a grace period); installs under way finish. With
   * `abort.rollback`, failed devices are asked to run what they ran before.
   */
  async stopJob(job: JobRecord, status: 'CANCELED' | 'ABORTED', reason: string, now: number): Promise<JobRecord> {
    // before anything is awaited: a device coming online from now is not added to it (one
    // being added already is caught by joinContinuous's second look at the job's status)
    this.retire(job.jobId);
    // a continuous job's count of devices follows them a tick behind (advance), and nothing
    // advances a stopped job: counted here, in the same write. A job made before rollouts has
    // no progress, so no count to keep (its list's summary would say 0 devices): counted too,
    // as its completion counts them (advance)
    const continuous = specOf(job)?.type === 'continuous';
    const total = continuous || !specOf(job) ? devicesOf(await this.deps.store.countExecutions(job.jobId)) : undefined;
    let current: JobRecord | undefined = job;
    let saved: JobRecord | undefined;
    for (let attempt = 0; attempt < 5 && current && !saved; attempt++) {
      if (isJobFinal(current.status)) return current;
      const p = progressOf(current);
      saved = await this.saveJob(current, status, { ...p, finishedAt: now, ...(total !== undefined ? { total } : {}), ...(status === 'ABORTED' ? { abortReason: reason } : {}) }, now);
      if (!saved) current = await this.deps.store.getJob(job.jobId);
    }
    if (!saved) throw new Error(`job ${job.jobId} could not be marked ${status}`);
    this.deps.logger.info(`job ${status.toLowerCase()}`, { jobId: job.jobId, reason });
    try {
      this.oweStop(saved.jobId, reason, await this.stopExecutions(saved, reason, now), now);
    } catch (err) {
      // the listing failed: the whole pass is owed
      this.oweStop(saved.jobId, reason, 1, now);
      throw err;
    }
    // a device added between the count and the stop's commit (a join or a scan on its way)
    if (continuous) await this.settleTotal(job.jobId, now);
    const spec = specOf(saved);
    if (status === 'ABORTED' && spec?.abort.rollback) await this.rollBackFailed(saved, now);
    return saved;
  }

  /**
   * Cancels every execution of a stopped job that has not finished (also redone on start after
   * a crash); `unmarked`: only those not marked stopping yet (a retry, `retryStops`: a marked
   * row's grace finishes it). Resolves with how many were left neither ended nor marked (a
   * write refused), which the caller owes (`oweStop`).
   */
  private async stopExecutions(job: JobRecord, reason: string, now: number, unmarked = false): Promise<number> {
    let owed = 0;
    let after: string | undefined;
    do {
      const page = await this.deps.store.listJobExecutions(job.jobId, { status: ['QUEUED', 'IN_PROGRESS'], limit: PAGE, ...(after ? { after } : {}) });
      const items = unmarked ? page.items.filter((e) => e.details.cancelRequested !== true) : page.items;
      const left = await Promise.all(items.map((e) => this.stopExecution(e, reason, now)));
      owed += left.filter((l) => l === 'owed').length;
      after = page.next;
    } while (after);
    return owed;
  }

  /** Remembers a stopped job whose stop left `owed` executions neither ended nor marked (none: forgets it). */
  private oweStop(jobId: string, reason: string, owed: number, now: number, tries = 0): void {
    if (owed === 0) {
      this.owedStops.delete(jobId);
      return;
    }
    const due = now + Math.min(STOP_RETRY_MAX_MS, STOP_RETRY_MS * 2 ** tries);
    this.owedStops.set(jobId, { reason, tries: tries + 1, due });
    if (tries === 0) this.deps.logger.warn('a stopped job has executions not ended yet (a write refused): its stop is tried again at the next ticks', { jobId, executions: owed });
  }

  /**
   * Passes the stop again over the executions of owed stopped jobs (`owedStops`) that are
   * neither ended nor marked, as their stop would have: idempotent (each write is conditional
   * on the row read). Run at each tick on any instance (a cancel is carried out by the
   * instance that took it), before the lead is looked at.
   */
  private async retryStops(now: number): Promise<void> {
    for (const [jobId, owed] of [...this.owedStops]) {
      if (owed.due > now && now >= owed.due - STOP_RETRY_MAX_MS) continue; // a clock set back tries at once
      try {
        const job = await this.deps.store.getJob(jobId, { omitSpec: true });
        if (!job || (job.status !== 'CANCELED' && job.status !== 'ABORTED')) {
          this.owedStops.delete(jobId);
          continue;
        }
        const left = await this.stopExecutions(job, owed.reason, now, true);
        this.oweStop(jobId, owed.reason, left, now, owed.tries);
        if (left === 0) {
          this.deps.logger.info("a stopped job's executions left open by a refused write are stopped now", { jobId });
          this.deps.events.emit('job.changed', { job });
        }
      } catch (err) {
        this.oweStop(jobId, owed.reason, 1, now, owed.tries);
        this.deps.logger.warn("a stopped job's executions still not stopped; tried again later", { jobId, error: asUpdraftError(err).message });
      }
    }
  }

  /**
   * Stops one execution of a stopped job; `owed` when a write failed before the row was ended
   * or marked (nothing is due for it then: the caller remembers the job, `oweStop`).
   */
  private async stopExecution(e: ExecutionRecord, reason: string, now: number): Promise<'owed' | undefined> {
    const key = { jobId: e.jobId, deviceId: e.deviceId };
    const aid = agentJobId(e.jobId, e.attempt ?? 1);
    // whether the row is ended or marked (from then on, its grace finishes the stop)
    let settled = false;
    try {
      if (e.status === 'QUEUED' && e.dispatchedAt === undefined) {
        const canceled = await mutateExecution(this.deps, key, (cur) => (cur.status === 'QUEUED' && cur.dispatchedAt === undefined ? canceledNow(cur, reason) : undefined), now, e);
        if (canceled) {
          settled = true;
          // the row says nothing was sent, but a dispatch whose write of "sent" failed (here or
          // on another instance) left the command on the device: taken back if there (one read
          // of the shadow when it is not). Written before the shadow is read, as the dispatch's
          // fence reads the row after its command is committed: one of the two sees the other
          try {
            await this.takeBackUnsent(key, aid, now);
          } catch (err) {
            // neither taken back nor owed on the row (its write failed too): remembered here
            this.oweTakeBack(key, aid, now, 0, asUpdraftError(err).message);
          }
          return undefined;
        }
        // dispatched (or finished) meanwhile: what follows reads it again
      }
      // once installing has begun the device finishes (its outcome is recorded as it comes)
      if (e.details.agentStatus === 'INSTALLING') return;
      // marked before the device is told, whether it has reported yet or not: a fast agent
      // confirms the stop (a FAILURE) as soon as the command is taken back, and its reports
      // (a DOWNLOADING sent before it heard of the cancel, then that FAILURE) must find the
      // execution waiting for the confirmation, or it is recorded FAILED. Marked already (a
      // pass cut short, redone at start): told again, which changes nothing once the device
      // has been told
      const marked =
        e.details.cancelRequested === true
          ? e
          : await mutateExecution(
              this.deps,
              key,
              (cur) => {
                if ((cur.status !== 'IN_PROGRESS' && cur.status !== 'QUEUED') || cur.details.cancelRequested === true || cur.details.agentStatus === 'INSTALLING') return undefined;
                const details: JsonObject = { ...cur.details, cancelRequested: true, cancelBy: now + CANCEL_GRACE_MS, cancelReason: reason };
                return { details, dueAt: Math.min(cur.dueAt ?? Infinity, now + CANCEL_GRACE_MS) };
              },
              now,
            );
      // finished, installing or marked by another pass meanwhile: nothing to take back here
      settled = true;
      if (!marked) return undefined;
      // the device reported finishing the command (SUCCESS or FAILURE in its shadow, not yet
      // recorded: a slow broker connection, or the report taken by another instance): nothing
      // was taken back, and the tracker records that outcome on the marked row (a SUCCESS ends
      // it SUCCEEDED; a FAILURE ends it CANCELED only when it is the device's stop, in the
      // agent's words for a job called off or after it answered the stay, and FAILED with its
      // own reason otherwise: execution-tracker.ts, stoppedOnRequest), or the end of its grace
      // does (expire applies the shadow's report first). Until 2026-12-05 a QUEUED row ended
      // CANCELED here all the same, the SUCCESS kept only as details.lateSuccess
      if ((await retractCommand(this.desired, e.deviceId, aid)) === 'finished') return undefined;
      // a device that had not reported (it may never have seen the command) ends CANCELED now;
      // one that reports from here on finds the mark: its stop (the agent's called-off FAILURE)
      // is recorded CANCELED, a FAILURE with a reason of its own ends it FAILED (also from this
      // CANCELED: failedAfterStop), a SUCCESS is kept as details.lateSuccess
      await mutateExecution(this.deps, key, (cur) => (cur.status === 'QUEUED' ? canceledNow(cur, reason) : undefined), now);
      return undefined;
    } catch (err) {
      const error = asUpdraftError(err).message;
      // marked already (the take-back failed): the end of its grace takes the command back (expire)
      if (settled) this.deps.logger.warn('execution not canceled yet; finished when its grace ends', { ...key, error });
      // not ended nor marked: nothing is due for it; the caller owes the stop (retryStops)
      else this.deps.logger.warn('execution not stopped yet; tried again at a later tick', { ...key, error });
      return settled ? undefined : 'owed';
    }
  }

  /**
   * Remembers a take-back of `aid`'s command (an execution ended CANCELED unsent) that neither
   * was done nor could be owed on its row, tried again at a later tick (`retryTakeBacks`).
   */
  private oweTakeBack(key: { jobId: string; deviceId: string }, aid: string, now: number, tries: number, error: string): void {
    const id = `${key.jobId}\n${key.deviceId}`;
    if (!this.owedTakeBacks.has(id) && this.owedTakeBacks.size >= MAX_OWED_TAKE_BACKS) {
      this.deps.logger.error('command of an execution canceled unsent not taken back, and too many owed to remember: the device may still be asked for it', { ...key, agentJobId: aid, error });
      return;
    }
    const due = now + Math.min(STOP_RETRY_MAX_MS, STOP_RETRY_MS * 2 ** tries);
    this.owedTakeBacks.set(id, { ...key, aid, tries: tries + 1, due });
    if (tries === 0) this.deps.logger.warn('command of an execution canceled unsent not taken back yet; tried again at a later tick', { ...key, agentJobId: aid, error });
  }

  /**
   * Tries again the take-backs owed in `owedTakeBacks` that are due, up to DUE_BATCH (at each
   * tick, before the lead is looked at), all at once as a stop's page is: their reads go in one
   * query on PostgreSQL (until 2026-12-06 one device after another, two reads each).
   */
  private async retryTakeBacks(now: number): Promise<void> {
    const due: [string, { jobId: string; deviceId: string; aid: string; tries: number }][] = [];
    for (const [id, owed] of this.owedTakeBacks) {
      if (due.length >= DUE_BATCH) break;
      if (owed.due > now && now >= owed.due - STOP_RETRY_MAX_MS) continue; // a clock set back tries at once
      due.push([id, owed]);
    }
    await Promise.all(
      due.map(async ([id, owed]) => {
        const key = { jobId: owed.jobId, deviceId: owed.deviceId };
        try {
          await this.takeBackUnsent(key, owed.aid, now);
          this.owedTakeBacks.delete(id);
          this.deps.logger.info('command of an execution canceled unsent taken back on a later try (or owed on its row)', { ...key, agentJobId: owed.aid });
        } catch (err) {
          this.oweTakeBack(key, owed.aid, now, owed.tries, asUpdraftError(err).message);
        }
      }),
    );
  }

  /**
   * Takes back `aid`'s command from a device whose execution was ended unsent (stopExecution),
   * if it is there; a take-back failed for now is owed through the deadline index
   * (pending-retract.ts), as the fence's is.
   */
  private async takeBackUnsent(key: { jobId: string; deviceId: string }, aid: string, now: number): Promise<void> {
    const outcome = await this.takeBack(key.deviceId, aid, 'command of an execution canceled unsent not taken back', { ...key, agentJobId: aid });
    if (outcome !== 'for now') return;
    await mutateExecution(
      this.deps,
      key,
      (c) => (isTerminal(c.status) && c.dueAt === undefined && c.details[RETRACT_PENDING] === undefined ? { details: { ...c.details, [RETRACT_PENDING]: aid }, dueAt: now + RETRACT_RETRY_MS } : undefined),
      now,
    );
  }

  private async rollBackFailed(job: JobRecord, now: number): Promise<void> {
    let after: string | undefined;
    do {
      const page = await this.deps.store.listJobExecutions(job.jobId, { status: ['FAILED', 'TIMED_OUT'], limit: PAGE, ...(after ? { after } : {}) });
      // one device that cannot be rolled back does not stop the rest of the fleet's rollback
      await Promise.all(
        page.items.map((e) =>
          this.rollBackExecution(e, now).catch((err: unknown) => this.deps.logger.warn('failed device not rolled back', { jobId: e.jobId, deviceId: e.deviceId, error: asUpdraftError(err).message })),
        ),
      );
      after = page.next;
    } while (after);
  }

  /**
   * A device whose failure is recorded after its job was aborted with rollback (it was
   * installing at the abort, or timed out later) is rolled back too: rollouts.md promises
   * every failed device. Run by every instance that sees the failure (a relayed event is
   * not durable, so the leader alone could miss it); the execution's `rollback` mark makes
   * the second one a no-op.
   */
  private async rollBackLate(e: ExecutionRecord): Promise<void> {
    try {
      const job = await this.deps.tracker.jobIdentity(e.jobId);
      if (!job || !specOf(job)?.abort.rollback) return;
      // the cached job's status is stale: read the stored one (the abort commits before its
      // own pass over failed devices, so a failure is seen by one of the two)
      const stored = await this.deps.store.getJob(e.jobId, { omitSpec: true });
      if (stored?.status !== 'ABORTED') return;
      const current = await this.deps.store.getExecution(e.jobId, e.deviceId);
      if (current && (current.status === 'FAILED' || current.status === 'TIMED_OUT')) await this.rollBackExecution(current, this.now());
    } catch (err) {
      this.deps.logger.warn('failed device not rolled back', { jobId: e.jobId, deviceId: e.deviceId, error: asUpdraftError(err).message });
    }
  }

  /** Asks a failed device for what it ran before the job, once; the outcome is kept in `details.rollback`. */
  private async rollBackExecution(e: ExecutionRecord, now: number): Promise<void> {
    if (e.details.rollback !== undefined) return;
    const previous = e.details.previous as JsonObject | undefined;
    // a deleted device has no shadow to ask (and an id registered again is a new device)
    let skipped = e.details.deviceDeletedAt !== undefined ? 'the device was deleted' : undefined;
    let to: string | null = null;
    if (skipped === undefined) {
      try {
        const r = await rollBack(this.desired, e.deviceId, e.jobId, previous);
        if ('to' in r) to = r.to;
        else skipped = `the device was asked for job ${r.supersededBy} since`;
      } catch (err) {
        // deleted between the read of its execution and the write (the replica takes no shadow for an unregistered id)
        if (!(err instanceof UpdraftError && err.code === 'NOT_FOUND')) throw err;
        skipped = 'the device is not registered';
      }
    }
    const rollback: JsonObject = skipped === undefined ? { to, at: now } : { to: null, skipped, at: now };
    await mutateExecution(this.deps, e, (cur) => (cur.details.rollback === undefined ? { details: { ...cur.details, rollback } } : undefined), now);
  }

  /** Work started by an event, awaited by `settled()`. */
  private readonly pending = new Set<Promise<void>>();

  private track(work: Promise<void>): void {
    this.pending.add(work);
    void work.finally(() => this.pending.delete(work));
  }

  /** Resolves when the work events started so far (late rollbacks) is done (tests, shutdown). */
  async settled(): Promise<void> {
    while (this.pending.size > 0) await Promise.all([...this.pending]);
  }

  // ---- continuous jobs and recovery ---------------------------------------------------------

  /** Adds the devices that match a continuous job now; 'stopped' when the job turned out to have ended meanwhile. */
  private async scanContinuous(job: JobRecord, spec: JobSpec, now: number): Promise<'stopped' | undefined> {
    const every = this.deps.continuousScanMs ?? ENGINE_DEFAULTS.continuousScanMs;
    const last = this.lastScan.get(job.jobId);
    const since = last ? now - last.at : 0;
    // a clock set back scans at once
    if (last && since >= 0 && (since < SCAN_SPACING * last.ms || (since < every && !last.wanted))) return undefined;
    // set first: a scan that fails is not retried at every tick
    this.lastScan.set(job.jobId, { at: now, ms: last?.ms ?? 0 });
    let ids: string[];
    try {
      ids = await resolveTargets(this.deps.store, spec.targets, false);
    } catch (err) {
      // the job's step goes on without the scan (its sends, its abort rules); looked at again at its next scan
      if (!(err instanceof StoredQueryError)) throw err;
      this.unparsableQuery(job.jobId, err);
      return undefined;
    }
    this.unparsable.delete(job.jobId);
    let added = 0;
    // every target again (those already in the job are skipped by the store), in pieces: one
    // write of a million rows held SQLite's event loop for seconds at each scan
    for (let i = 0; i < ids.length; i += JOB_CHUNK) {
      added += await this.deps.store.addExecutions(ids.slice(i, i + JOB_CHUNK).map((deviceId) => continuousExecution(job.jobId, deviceId, spec, now)));
    }
    this.lastScan.set(job.jobId, { at: now, ms: Math.max(0, this.now() - now) });
    if (added === 0) return undefined;
    // canceled or aborted meanwhile through another instance (a cancel here waits for the
    // tick): its stop's pass may have missed the devices just added; pass again
    const stopped = await this.stoppedJob(job.jobId);
    if (stopped) {
      this.oweStop(job.jobId, stopReasonOf(stopped), await this.stopExecutions(stopped, stopReasonOf(stopped), now), now);
      await this.settleTotal(job.jobId, now);
      return 'stopped';
    }
    this.deps.logger.info('continuous job picked up new devices', { jobId: job.jobId, added });
    this.deps.events.emit('job.changed', { job });
    return undefined;
  }

  /**
   * On start: records reports that reached the shadows but not the executions (a crash
   * between the two commits), finishes cancellations a crash interrupted, and queues the
   * retries of a continuous job's failed devices a crash left unqueued (queueOwedRetries).
   */
  private async recover(): Promise<void> {
    const now = this.now();
    // read with their specs (specOf below: a continuous job's owed retries)
    for await (const job of jobsIn(this.deps.store, { statuses: OPEN_JOB_STATUSES, pageSize: PAGE })) {
      const open = tally(await this.deps.store.countExecutions(job.jobId));
      if (open.QUEUED + open.IN_PROGRESS > 0) {
        await this.catchUp(job);
        if (job.status === 'CANCELED' || job.status === 'ABORTED') this.oweStop(job.jobId, stopReasonOf(job), await this.stopExecutions(job, stopReasonOf(job), now), now);
      }
      // a crash between a device's FAILED and its retry: a wave's end queues the retries it
      // owes before it is judged (a snapshot job's last wave too), but a continuous job's last
      // wave is never judged. Only that case is read here: it pages through every FAILED row
      // of the job, at every start and lease taken (a job with 300,000 held SQLite's event
      // loop about a second each)
      const spec = specOf(job);
      if (spec?.type === 'continuous' && !isJobFinal(job.status) && open.FAILED > 0) await this.queueOwedRetries(job, spec, progressOf(job).wave, now);
    }
    await this.deps.tracker.idle();
  }

  private async catchUp(job: JobRecord): Promise<void> {
    for await (const { executions: sent, more } of sentExecutionPages(this.deps.store, job, { pageSize: PAGE })) {
      // the page's shadows read together (one query on PostgreSQL): awaited one by one, every
      // lead taken cost a round trip per command out
      const shadows = await Promise.all(sent.map((e) => this.deps.store.getShadow(e.deviceId, '')));
      for (const [n, e] of sent.entries()) {
        const shadow = shadows[n];
        const reported = shadow && !shadow.deleted ? shadow.state.reported?.software : undefined;
        // read back, not a new report: a row it leaves as it is is not written (its
        // lastReportAt stays the device's), one it changes takes the report's own time for its
        // lastReportAt; its step timer counts from now (the shadow's clock may be behind)
        if (parseReportedSoftware(reported)?.jobId === agentJobId(e.jobId, e.attempt ?? 1)) void this.deps.tracker.reapply(e.deviceId, reported, reportedAt(shadow!));
      }
      // the embedded store reads synchronously: a job with 100,000 commands out would hold
      // the server for seconds at start-up; let device traffic through between pages
      if (more) await nextTurn();
    }
  }
}

/**
 * When the shadow's `reported.software` was last written, in ms: the newest timestamp of its
 * metadata's leaves (seconds, the replica's clock, which may be behind this one's: a report's
 * date only, never a timer's start); undefined without metadata.
 */
function reportedAt(shadow: ShadowRecord): number | undefined {
  const newest = (meta: unknown): number | undefined => {
    if (!isJsonObject(meta)) return undefined;
    if (typeof meta.timestamp === 'number') return meta.timestamp;
    let most: number | undefined;
    for (const v of Object.values(meta)) {
      const t = newest(v);
      if (t !== undefined && (most === undefined || t > most)) most = t;
    }
    return most;
  };
  const seconds = newest(shadow.metadata.reported?.software);
  return seconds === undefined ? undefined : seconds * 1000;
}

/**
 * A job held back by an outage of the artifact storage or of the MQTT broker goes on (`storageHeldSince` cleared):
 * its rate's clock is moved on by the wait (`rateEpoch`), so the allowance that built up
 * meanwhile is not sent in one burst at storage just back, and a ramp-up goes on where it
 * stopped. A wave begun, a window opened or a resume during the wait has a fresh clock already.
 */
function endHold(p: RolloutProgress, now: number): RolloutProgress {
  const { storageHeldSince: since, heldBy: _, ...rest } = p;
  if (since === undefined || p.rateEpoch === undefined || p.rateEpoch > since || now <= since) return rest;
  return movedEpoch(rest, now - since);
}

/**
 * Whether the rate's clock of a job is still to be moved on by an outage of the state
 * database: it ran before the outage (a wave begun, a window opened or a resume since has a
 * fresh clock), and no instance moved it on by this outage yet (another instance that led
 * when it ended, with its own view of it, did if its end is after this one's start).
 */
function owesOutage(p: RolloutProgress, o: { since: number; until: number }): boolean {
  return p.rateEpoch !== undefined && p.rateEpoch <= o.since && !(p.storeOutageUntil !== undefined && p.storeOutageUntil >= o.since);
}

/**
 * A job's rate after an outage of the state database: its clock moved on by the outage, as
 * `endHold` does for the artifact storage's (the allowance that built up meanwhile is not
 * sent in one burst, a ramp-up goes on where it stopped). A hold of the storage begun before
 * it covers it already: `endHold` moves the clock on by the whole wait.
 */
function skipOutage(p: RolloutProgress, o: { since: number; until: number }): RolloutProgress {
  const marked = { ...p, storeOutageUntil: o.until };
  if (p.rateEpoch === undefined || (p.storageHeldSince !== undefined && p.storageHeldSince <= o.since)) return marked;
  return movedEpoch(marked, o.until - o.since);
}

/**
 * A job's rate epoch moved on by `by` (a hold or an outage left out), with what was given up
 * since it (`rateForfeit`, tied to the epoch): left behind, the forfeit no longer counted and
 * the allowance above the cap it stood for was sent at once.
 */
function movedEpoch(p: RolloutProgress, by: number): RolloutProgress {
  if (p.rateEpoch === undefined) return p;
  const forfeit = p.rateForfeit !== undefined && p.rateForfeit.epoch === p.rateEpoch ? { rateForfeit: { ...p.rateForfeit, epoch: p.rateEpoch + by } } : {};
  return { ...p, rateEpoch: p.rateEpoch + by, ...forfeit };
}

/**
 * A job's rate after its clock stepped by `by` (`followStep`): every time the allowance is
 * judged by, written by the clock before the step, moved with it, so that the allowance is
 * what it was, and the step's id (`clockStep`). The same record when there is nothing to move
 * (a scheduled job) or it was moved by this step already.
 */
function shiftRate(p: RolloutProgress, by: number, id: number): RolloutProgress {
  if (p.clockStep === id) return p; // moved by this step already (a try before this one)
  if (p.rateEpoch === undefined && p.storageHeldSince === undefined && p.storeOutageUntil === undefined) return p;
  return {
    ...p,
    clockStep: id,
    ...(p.rateEpoch !== undefined ? { rateEpoch: p.rateEpoch + by } : {}),
    ...(p.rateForfeit !== undefined ? { rateForfeit: { ...p.rateForfeit, epoch: p.rateForfeit.epoch + by } } : {}),
    ...(p.storageHeldSince !== undefined ? { storageHeldSince: p.storageHeldSince + by } : {}),
    ...(p.storeOutageUntil !== undefined ? { storeOutageUntil: p.storeOutageUntil + by } : {}),
  };
}

/**
 * An execution's deadline that a step forward of the clock by `by` passed over (in (`from`,
 * `now`]), moved on by it with what it is computed from (`shiftDeadlines`); undefined for
 * anything else (nothing due there, ended, a take-back owed).
 */
function movedDeadline(cur: ExecutionRecord, from: number, now: number, by: number): Partial<ExecutionRecord> | undefined {
  if (cur.dueAt === undefined || cur.dueAt <= from || cur.dueAt > now) return undefined;
  if (isTerminal(cur.status) || owedRetract(cur) !== undefined) return undefined;
  const details: JsonObject = { ...cur.details };
  for (const k of ['phaseStartedAt', 'cancelBy', 'stepDeadlineAt'] as const) {
    const t = details[k];
    if (typeof t === 'number') details[k] = t + by;
  }
  return { dueAt: cur.dueAt + by, details, ...(cur.dispatchedAt !== undefined ? { dispatchedAt: cur.dispatchedAt + by } : {}) };
}

/** Allowance given up since the job's current rate epoch (`rateForfeit`). */
function forfeitOf(p: RolloutProgress): number {
  return p.rateForfeit !== undefined && p.rateForfeit.epoch === p.rateEpoch ? p.rateForfeit.count : 0;
}

/** Whether the job retries a device whose attempt FAILED. */
function retriesFailed(spec: JobSpec): boolean {
  return spec.retries.limit > 0 && spec.retries.on.includes('FAILED');
}

/** A job's executions, in every state: a continuous job's count of devices. */
function devicesOf(counts: readonly ExecutionCount[]): number {
  return counts.reduce((n, c) => n + c.count, 0);
}

/** QUEUED executions of waves up to `wave` whose command was not sent yet (what `nextUndispatched` lists). */
function unsentUpTo(counts: readonly ExecutionCount[], wave: number): number {
  return counts.reduce((n, c) => n + (c.status === 'QUEUED' && c.wave <= wave ? c.count - c.dispatched : 0), 0);
}

/**
 * Whether an execution wants its current attempt's command desired: sent (or reported on),
 * not ended, and not being stopped (an install under way is left to finish).
 */
function wantsItsCommand(e: ExecutionRecord): boolean {
  return !isTerminal(e.status) && e.dispatchedAt !== undefined && (e.details.cancelRequested !== true || e.details.agentStatus === 'INSTALLING');
}

/** Executions sent their command and without an outcome yet. */
function inFlight(counts: readonly ExecutionCount[]): number {
  return counts.reduce((n, c) => n + (c.status === 'QUEUED' || c.status === 'IN_PROGRESS' ? c.dispatched : 0), 0);
}

/** The first abort rule the counts break, as a sentence; undefined when none. */
export function abortReason(spec: JobSpec, t: ReturnType<typeof tally>): string | undefined {
  const finished = FINISHED.reduce((n, s) => n + t[s], 0);
  for (const rule of spec.abort.rules) {
    if (finished < rule.minFinished) continue;
    const failures = rule.type === 'ANY' ? t.FAILED + t.TIMED_OUT + t.REJECTED : t[rule.type];
    const pct = (failures / finished) * 100;
    if (pct >= rule.thresholdPercent) {
      return `${rule.type === 'ANY' ? 'failures' : rule.type} reached ${pct.toFixed(1)}% of ${finished} finished devices (threshold ${rule.thresholdPercent}% after at least ${rule.minFinished})`;
    }
  }
  return undefined;
}

/** A device's new execution of a continuous job: queued in the job's last wave, which takes every later device. */
function continuousExecution(jobId: string, deviceId: string, spec: JobSpec, now: number): ExecutionRecord {
  const wave = spec.plan.waves.length - 1;
  return { jobId, deviceId, status: 'QUEUED', details: {}, queuedAt: now, updatedAt: now, version: 1, ...(wave > 0 ? { wave } : {}) };
}
