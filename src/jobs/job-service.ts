/**
 * Rollout jobs for operators: create (validated spec, resolved targets, waves assigned,
 * one transaction), pause, resume, cancel, delete (a finished one), and the job view (counts per state and wave,
 * progress). The rollout engine does the sending; this service changes a job's state under
 * the engine's lock so the two never race.
 */
import { randomUUID } from 'node:crypto';
import type { ArtifactService } from '../artifacts/artifact-service.ts';
import { parseArtifactRef } from '../artifacts/artifact-service.ts';
import { UpdraftError } from '../errors.ts';
import type { EventBus } from '../events/event-bus.ts';
import type { JsonObject } from '../protocol/json.ts';
import type { ArtifactRecord, ExecutionRecord, ExecutionStatus, IdempotencyClaim, JobRecord, StateStore } from '../store/state-store.ts';
import { createOnce, type CreatedOnce } from './idempotent-creation.ts';
import { parseJobRequest, specOf, specToJson, type JobSpec } from './job-spec.ts';
import { startInSlices } from '../util/in-slices.ts';
import { refusalOf } from './device-fit.ts';
import { assertJobMove, isJobFinal } from './job-state.ts';
import { CANCEL_GRACE_MS } from './deadlines.ts';
import { dropWaitingDeliveries } from '../events/webhook-notifier.ts';
import { progressOf, type RolloutEngine, type RolloutProgress } from './rollout-engine.ts';
import { hasAgentFeature } from '../protocol/agent-features.ts';
import { DEVICE_TIME_ZONE, inWindow, nextOpening } from '../protocol/maintenance-window.ts';
import { FINISHED, rateAllowance, tally, waveEnds, waveOf } from './rollout-math.ts';
import { resolveTargets, targetsProblem } from './targets.ts';

/** What the service needs. */
export interface JobServiceDeps {
  store: StateStore;
  events: EventBus;
  artifacts: ArtifactService;
  engine: RolloutEngine;
  now?: () => number;
}

/** A job as the API shows it. */
export interface JobView {
  job: JobRecord;
  /** Executions per state, all waves. */
  counts: Record<ExecutionStatus, number>;
  /** Executions per state, per wave. */
  waves: { wave: number; counts: Record<ExecutionStatus, number> }[];
  /**
   * Finished (SUCCEEDED, FAILED, TIMED_OUT, REJECTED) out of all but CANCELED and REMOVED, in
   * percent; with none of those, 100 for a COMPLETED job and 0 otherwise (a job canceled
   * before it sent anything has done nothing).
   */
  percentDone: number;
  total: number;
  /**
   * An unfinished continuous job whose stored query (targets.query, or a dynamic group's it
   * targets) this release no longer parses, saved by an earlier one: what is wrong and what to
   * do. It takes no new devices meanwhile; those it has go on.
   */
  targetsError?: string;
}

/** What a job would do, without creating it (`POST /api/v1/jobs/preview`, `job create --dry-run`). */
export interface JobPreview {
  artifact: string;
  type: JobSpec['type'];
  /** Devices targeted now (a continuous job adds those that match later). */
  total: number;
  /** Each wave's size and its first devices (by id, as they are sent). */
  waves: { wave: number; devices: number; first: string[] }[];
  /** When sending starts: the scheduled start, else now; then the first maintenance window open from it. */
  startsAt: number;
  /** The least time sending every command takes at the job's rate (absent without a rate): no approval, threshold or window counted. */
  minSendMinutes?: number;
  /**
   * Of the first `scanned` targets (by id, as they are sent), those the engine would skip
   * (REJECTED, nothing sent) by what they reported: a lower version than they run without
   * allowDowngrade, a build for another device type or over another version
   * (`jobs/device-fit.ts`); the first few named with the reason.
   */
  skipped: { scanned: number; downgrade: number; incompatible: number; first: { deviceId: string; error: string }[] };
  /**
   * With windows in each device's own time (`plan.timeZone: "device"`): of the same
   * targets, those whose agents did not say they hold an install for a window
   * (`reported.agent.features`, `protocol/agent-features.ts`): older agents, or devices that
   * never connected. They would install as soon as they have downloaded.
   */
  installAtOnce?: { count: number; first: string[] };
  /** What in the spec is likely a mistake, each said in one sentence (absent: nothing). */
  warnings?: string[];
}

/**
 * What in a spec is likely a mistake. A continuous job without abort rules: every device that
 * matches after its creation joins its last wave, where no canary or success threshold
 * applies, so abort rules are all that stops it when those devices fail. With windows in each
 * device's own time (the agent holds the install until its window opens): an in-progress
 * timeout shorter than a device may wait for its window (a day, or a week when the windows
 * open on some days only, less the longest window), so devices time out waiting; and an
 * in-flight limit below the largest wave (`largestWave` devices), since a device waiting for
 * its window holds its place, so the limit fills with devices waiting for their night and the
 * job sends no more meanwhile.
 */
function warningsOf(spec: JobSpec, largestWave: number): { warnings?: string[] } {
  const warnings: string[] = [];
  if (spec.type === 'continuous' && spec.abort.rules.length === 0) {
    warnings.push('a continuous job has no abort rule: the devices that match after its creation join its last wave, where no canary or success threshold applies, so nothing would stop it if they fail (add one, e.g. --abort FAILED:10:20, with --rollback to set failed devices back)');
  }
  const windows = spec.plan.timeZone === DEVICE_TIME_ZONE ? spec.plan.windows : undefined;
  const timeout = spec.timeouts.inProgressSeconds;
  if (windows && timeout !== undefined) {
    const longestWait = (windows.some((w) => w.days === undefined) ? 86_400 : 7 * 86_400) - Math.max(...windows.map((w) => w.minutes)) * 60;
    if (timeout < longestWait) {
      warnings.push(`a device outside its window may wait up to ${Math.ceil(longestWait / 3600)} h for it, longer than the in-progress timeout of ${timeout} s: it would time out waiting (give a timeout of ${longestWait} s or more)`);
    }
  }
  const inFlight = spec.plan.maxInFlight;
  if (windows && inFlight !== undefined && inFlight < largestWave) {
    warnings.push(`a device waiting for its window holds its place among the ${inFlight} in flight (maxInFlight): with ${largestWave} devices in a wave, the places may all go to devices waiting for their window while the job sends no more (give no maxInFlight, or one of ${largestWave} or more)`);
  }
  return warnings.length > 0 ? { warnings } : {};
}

/** Targets a preview reads the reported state of: enough to see a mistake, a bounded cost at any fleet size. */
export const PREVIEW_SCAN = 2_000;

/** Devices of each wave shown by a preview. */
const PREVIEW_FIRST = 5;

/** Operator operations on rollout jobs. */
export class JobService {
  private readonly deps: JobServiceDeps;

  constructor(deps: JobServiceDeps) {
    this.deps = deps;
  }

  private now(): number {
    return this.deps.now ? this.deps.now() : Date.now();
  }

  /** Creates a job from an API body; sends the first wave before resolving. */
  async create(body: Record<string, unknown>, claim?: IdempotencyClaim): Promise<JobView> {
    const now = this.now();
    const req = parseJobRequest(body, now);
    return this.createFromSpec(req.artifact, req.spec, req.description, now, claim);
  }

  /**
   * `create` holding the client's Idempotency-Key (`claim`): a job that holds the key already
   * is answered instead, nothing created (`replayed`; idempotent-creation.ts).
   */
  createWithKey(body: Record<string, unknown>, claim: IdempotencyClaim | undefined): Promise<CreatedOnce<JobView>> {
    return createOnce(this.deps.store, claim, (c) => this.create(body, c), (jobId) => this.view(jobId));
  }

  /**
   * What `create` would make of `body`, refused as `create` would refuse it (every problem of
   * the spec, an unknown artifact, an empty snapshot), but nothing is written or sent.
   */
  async preview(body: Record<string, unknown>): Promise<JobPreview> {
    const now = this.now();
    const { artifact, spec } = parseJobRequest(body, now);
    const { ids, record } = await this.targetsOf(artifact, spec);
    const { skipped, installAtOnce } = await this.skippedOf(record, spec, ids.slice(0, PREVIEW_SCAN));
    const ends = waveEnds(spec.plan.waves, ids.length);
    const waves = ends.map((end, w) => {
      const start = w === 0 ? 0 : ends[w - 1]!;
      return { wave: w, devices: end - start, first: ids.slice(start, Math.min(end, start + PREVIEW_FIRST)) };
    });
    const begin = spec.plan.startAt !== undefined && spec.plan.startAt > now ? spec.plan.startAt : now;
    const windows = spec.plan.timeZone === DEVICE_TIME_ZONE ? undefined : spec.plan.windows;
    const startsAt = windows && !inWindow(windows, begin, spec.plan.timeZone) ? (nextOpening(windows, begin, spec.plan.timeZone) ?? begin) : begin;
    const limited = spec.plan.maxPerMinute !== undefined || spec.plan.rampUp !== undefined;
    return { artifact, type: spec.type, total: ids.length, waves, startsAt, ...(limited && ids.length > 0 ? { minSendMinutes: sendMinutes(spec.plan, ids.length) } : {}), skipped, ...(installAtOnce ? { installAtOnce } : {}), ...warningsOf(spec, Math.max(0, ...waves.map((w) => w.devices))) };
  }

  /** The devices of `ids` the engine would skip by what they reported (`JobPreview.skipped`). */
  private async skippedOf(artifact: ArtifactRecord, spec: JobSpec, ids: string[]): Promise<Pick<JobPreview, 'skipped' | 'installAtOnce'>> {
    const out: JobPreview['skipped'] = { scanned: ids.length, downgrade: 0, incompatible: 0, first: [] };
    const localWindows = spec.plan.timeZone === DEVICE_TIME_ZONE && spec.plan.windows !== undefined;
    const atOnce = { count: 0, first: [] as string[] };
    const refusals = await startInSlices(ids, 500, async (deviceId) => {
      const shadow = await this.deps.store.getShadow(deviceId, '');
      const reported = shadow && !shadow.deleted ? shadow.state.reported : undefined;
      return { deviceId, refusal: refusalOf(artifact, spec.allowDowngrade === true, reported), holds: hasAgentFeature(reported?.agent, 'install-windows') };
    });
    for (const { deviceId, refusal, holds } of refusals) {
      if (localWindows && !refusal && !holds) {
        atOnce.count++;
        if (atOnce.first.length < PREVIEW_FIRST) atOnce.first.push(deviceId);
      }
      if (!refusal) continue;
      out[refusal.kind]++;
      if (out.first.length < PREVIEW_FIRST) out.first.push({ deviceId, error: refusal.error });
    }
    return { skipped: out, ...(localWindows ? { installAtOnce: atOnce } : {}) };
  }

  /** The artifact's record, and the devices a spec targets now; BAD_REQUEST for an empty snapshot. */
  private async targetsOf(artifactRef: string, spec: JobSpec, known?: ArtifactRecord): Promise<{ ids: string[]; record: ArtifactRecord }> {
    const { name, version } = parseArtifactRef(artifactRef);
    const record = known ?? (await this.deps.artifacts.current(name, version)); // NOT_FOUND naming it (the store's answer, not a kept record: it may have been deleted)
    // bytes the storage says it lacks: every device would fail its download (CONFLICT naming them)
    await this.deps.artifacts.requireBytes(record);
    const ids = await resolveTargets(this.deps.store, spec.targets, true);
    if (ids.length === 0 && spec.type === 'snapshot') {
      throw new UpdraftError('BAD_REQUEST', 'the target set is empty: the groups and query select no registered device (a continuous job may start empty)');
    }
    // a continuous job's waves are drawn from the devices it targets at its creation; devices
    // that match later join its last wave. Started empty, its first waves (a canary and its
    // threshold) would have no devices and be passed at once: refused rather than skipped
    if (ids.length === 0 && spec.plan.waves.length > 1) {
      throw new UpdraftError('BAD_REQUEST', `the target set is empty, and a continuous job's waves are drawn from the devices it targets at its creation (devices that match later join its last wave): its ${spec.plan.waves.length - 1} first wave(s) would be skipped. Create it with one wave (abort rules still watch every device), or once devices match`);
    }
    return { ids, record };
  }

  /**
   * Creates a job from a validated spec (the deploy command's single-wave jobs come here too),
   * holding `claim`'s key (IdempotencyKeyTaken, nothing created, when another job holds it).
   */
  async createFromSpec(artifactRef: string, spec: JobSpec, description: string | undefined, now = this.now(), claim?: IdempotencyClaim): Promise<JobView> {
    const { name, version } = parseArtifactRef(artifactRef);
    // the artifact is not deleted under the creation (artifact-service.ts)
    // once written, the job row is what keeps the artifact (the store's check)
    const job = await this.deps.artifacts.whileCreatingJob(name, version, (record) => this.write(artifactRef, spec, description, now, record, claim));
    this.deps.events.emit('job.changed', { job });
    await this.deps.engine.kick(job.jobId);
    return this.view(job.jobId);
  }

  /** Writes a new job and its executions. */
  private async write(artifactRef: string, spec: JobSpec, description: string | undefined, now: number, record: ArtifactRecord, claim: IdempotencyClaim | undefined): Promise<JobRecord> {
    const { store } = this.deps;
    const { name, version } = parseArtifactRef(artifactRef);
    const { ids } = await this.targetsOf(artifactRef, spec, record);
    const ends = waveEnds(spec.plan.waves, ids.length);
    const jobId = randomUUID();
    const scheduled = spec.plan.startAt !== undefined && spec.plan.startAt > now;
    const progress: RolloutProgress = { wave: 0, total: ids.length, sentSinceEpoch: 0, ...(scheduled ? {} : { startedAt: now, waveStartedAt: now, rateEpoch: now }) };
    const job: JobRecord = {
      jobId,
      artifactName: name,
      artifactVersion: version,
      status: scheduled ? 'SCHEDULED' : 'IN_PROGRESS',
      createdAt: now,
      spec: specToJson(spec),
      progress: progress as unknown as JsonObject,
      updatedAt: now,
      version: 1,
    };
    if (description) job.description = description;
    const executions: ExecutionRecord[] = ids.map((deviceId, i) => {
      const wave = waveOf(ends, i);
      return { jobId, deviceId, status: 'QUEUED', details: {}, queuedAt: now, updatedAt: now, version: 1, ...(wave > 0 ? { wave } : {}) };
    });
    await store.createJob(job, executions, claim);
    return job;
  }

  /** A job; NOT_FOUND naming it. */
  async get(jobId: string): Promise<JobRecord> {
    const job = await this.deps.store.getJob(jobId);
    if (!job) throw new UpdraftError('NOT_FOUND', `job ${jobId} does not exist; list jobs with: updraft job list`);
    return job;
  }

  /** The job with its counts per state and wave. */
  async view(jobId: string): Promise<JobView> {
    const job = await this.get(jobId);
    const counts = await this.deps.store.countExecutions(jobId);
    const all = tally(counts);
    const waveCount = Math.max(specOf(job)?.plan.waves.length ?? 1, ...counts.map((c) => c.wave + 1));
    const waves = Array.from({ length: waveCount }, (_, w) => ({ wave: w, counts: tally(counts, (x) => x === w) }));
    const total = Object.values(all).reduce((a, b) => a + b, 0);
    const relevant = total - all.CANCELED - all.REMOVED;
    const finished = FINISHED.reduce((n, s) => n + all[s], 0);
    const spec = specOf(job);
    const targetsError = spec?.type === 'continuous' && !isJobFinal(job.status) ? await targetsProblem(this.deps.store, spec.targets) : undefined;
    return { job, counts: all, waves, total, percentDone: relevant === 0 ? (job.status === 'COMPLETED' ? 100 : 0) : Math.round((finished / relevant) * 1000) / 10, ...(targetsError ? { targetsError } : {}) };
  }

  /** Pauses sending (devices already updating go on; timeouts still apply). */
  pause(jobId: string): Promise<JobView> {
    return this.change(jobId, (job, p, now) => {
      assertJobMove(jobId, job.status, 'PAUSED');
      return { status: 'PAUSED', progress: { ...p, pause: { reason: 'operator', wave: p.wave, message: 'paused by an operator', at: now } } };
    });
  }

  /**
   * Resumes a paused job. After a wave that missed its threshold or needed approval, this is
   * the approval: the next wave starts. The rate window restarts.
   */
  resume(jobId: string): Promise<JobView> {
    return this.change(jobId, (job, p, now) => {
      // SCHEDULED -> IN_PROGRESS is the engine's move at startAt, not a resume
      if (job.status === 'SCHEDULED') throw new UpdraftError('CONFLICT', `job ${jobId} is SCHEDULED: only a paused job resumes (it starts at its startAt; cancel it and create another to start now)`);
      assertJobMove(jobId, job.status, 'IN_PROGRESS');
      const { pause, ...rest } = p;
      const nextWave = pause && pause.reason !== 'operator' ? pause.wave + 1 : p.wave;
      const startAt = specOf(job)?.plan.startAt;
      const waiting = startAt !== undefined && startAt > now && p.startedAt === undefined;
      // a job paused before its startAt and resumed after it starts now: what the engine's
      // SCHEDULED -> IN_PROGRESS step records (its start, its first wave's) is recorded here
      const starts = !waiting && p.startedAt === undefined;
      const progress: RolloutProgress = { ...rest, wave: nextWave, rateEpoch: now, sentSinceEpoch: 0, ...(nextWave !== p.wave || starts ? { waveStartedAt: now } : {}), ...(starts ? { startedAt: now } : {}) };
      return { status: waiting ? 'SCHEDULED' : 'IN_PROGRESS', progress };
    });
  }

  /** Cancels a job: queued executions end CANCELED; devices not yet installing are told to stop. */
  async cancel(jobId: string): Promise<JobView> {
    await this.deps.engine.exclusive(async () => {
      const job = await this.get(jobId);
      assertJobMove(jobId, job.status, 'CANCELED');
      await this.deps.engine.stopJob(job, 'CANCELED', 'job canceled by an operator', this.now());
    });
    return this.view(jobId);
  }

  /**
   * Deletes a finished job (COMPLETED, CANCELED, ABORTED) and everything kept under its id: its
   * executions, their counts, its devices' logs (`StateStore.deleteJob`) and its webhook
   * deliveries still waiting. NOT_FOUND for no such job; CONFLICT, deleting nothing, for a job
   * not finished (cancel it first) or one whose devices are still being stopped or installing.
   * Devices keep what they report of it (`reported.software.jobId`); their histories no longer
   * list it. Resolves with the job as it was, without its spec.
   */
  async delete(jobId: string): Promise<JobRecord> {
    const r = await this.deps.store.deleteJob(jobId);
    if (!r.job) throw new UpdraftError('NOT_FOUND', `job ${jobId} does not exist; list jobs with: updraft job list`);
    if (!r.deleted && r.unfinished !== undefined) {
      throw new UpdraftError(
        'CONFLICT',
        `job ${jobId} is ${r.job.status}, but ${r.unfinished} of its device(s) have not finished with it yet (being stopped, installing, or owed the take-back of its command); delete it once they have: a stop waits at most ${CANCEL_GRACE_MS / 60_000} minutes, an install the job's timeout (updraft job show ${jobId})`,
      );
    }
    if (!r.deleted) throw new UpdraftError('CONFLICT', `job ${jobId} is ${r.job.status}: only a finished job (COMPLETED, CANCELED or ABORTED) can be deleted; cancel it first (updraft job cancel ${jobId})`);
    await dropWaitingDeliveries(this.deps.store, jobId);
    this.deps.events.emit('job.deleted', { jobId });
    return r.job;
  }

  private async change(jobId: string, edit: (job: JobRecord, p: RolloutProgress, now: number) => { status: JobRecord['status']; progress: RolloutProgress }): Promise<JobView> {
    await this.deps.engine.exclusive(async () => {
      for (let attempt = 0; attempt < 5; attempt++) {
        const job = await this.get(jobId);
        if (!specOf(job)) throw new UpdraftError('CONFLICT', `job ${jobId} predates rollouts; it cannot be paused or resumed`);
        const now = this.now();
        const { status, progress } = edit(job, progressOf(job), now);
        if (await this.deps.engine.saveJob(job, status, progress, now)) return;
      }
      throw new UpdraftError('CONFLICT', `job ${jobId} is being changed concurrently; retry`);
    });
    this.deps.engine.wake();
    return this.view(jobId);
  }
}

/** The least whole minutes in which the rate (and ramp-up) of `plan` allows `count` commands. */
function sendMinutes(plan: JobSpec['plan'], count: number): number {
  // rateAllowance is monotonic: search the smallest minute count whose allowance covers them
  let lo = 0;
  let hi = 1;
  while (rateAllowance(plan, hi * 60_000) < count) hi *= 2;
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2);
    if (rateAllowance(plan, mid * 60_000) >= count) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}
