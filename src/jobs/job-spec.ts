/**
 * A rollout job's specification (docs/design.md §4): targets, snapshot or continuous, the
 * rollout plan (waves, thresholds, rate, ramp-up, scheduled start, maintenance windows), abort rules, timeouts,
 * retries and downgrade protection. `parseJobRequest` validates an operator's request and
 * reports every problem it finds at once, as one BAD_REQUEST line.
 */
import { UpdraftError } from '../errors.ts';
import { parseQuery } from '../fleet/query.ts';
import { isJsonObject, type JsonObject } from '../protocol/json.ts';
import { isValidId } from '../protocol/topics.ts';
import { DEVICE_TIME_ZONE, isTimeZone, windowProblems, type MaintenanceWindow } from '../protocol/maintenance-window.ts';
import { descriptionProblem } from '../protocol/known-fields.ts';

/** Which devices a job is for: the union of the listed devices, the groups' members and the query's matches. */
export interface JobTargets {
  devices?: string[];
  groups?: string[];
  query?: string;
}

/** One wave of the rollout plan. */
export interface WaveSpec {
  /** This wave takes this many more devices... */
  count?: number;
  /** ...or grows the rollout to this share (0 < p <= 100) of all targets. The last wave always takes the rest. */
  percent?: number;
  /** Percentage (0..100) of the wave's finished devices that must succeed before the next wave starts; below it the job pauses. */
  successThreshold: number;
  /** Pause after this wave even when it met its threshold, until an operator resumes the job. */
  requireApproval: boolean;
}

/** Failure types an abort rule counts. */
export type FailureType = 'FAILED' | 'TIMED_OUT' | 'REJECTED' | 'ANY';

/** Abort when `type` failures reach `thresholdPercent` of finished executions, once at least `minFinished` have finished. */
export interface AbortRule {
  type: FailureType;
  thresholdPercent: number;
  minFinished: number;
}

/** The whole specification, stored with the job (JobRecord.spec). */
export interface JobSpec {
  targets: JobTargets;
  /** snapshot: targets fixed at creation; continuous: devices that match later are added. */
  type: 'snapshot' | 'continuous';
  plan: {
    waves: WaveSpec[];
    /** Most update commands sent per minute (absent: no limit). */
    maxPerMinute?: number;
    /**
     * Most devices with a command and no outcome yet (absent: no limit). Bounds the load on
     * the broker and the download path, and with it each device's time from command to
     * outcome (Little's law: in flight / throughput), however large the wave.
     */
    maxInFlight?: number;
    /** Exponential ramp-up: `initialPerMinute` in a wave's first minute, times `factor` each minute after, up to maxPerMinute. */
    rampUp?: { initialPerMinute: number; factor: number };
    /** Milliseconds since the epoch before which nothing is sent. */
    startAt?: number;
    /** Daily times when commands may be sent (absent: any time); see `maintenance-window.ts`. */
    windows?: MaintenanceWindow[];
    /**
     * IANA time zone of `windows` (absent: UTC), or `"device"`: each device's own. Then the
     * engine sends at any time, the command carries the windows (`installWindows`), and each
     * agent downloads at once and installs when a window is open in its local time.
     */
    timeZone?: string;
  };
  abort: { rules: AbortRule[]; rollback: boolean };
  /** Seconds; absent means no timeout. inProgress counts from the command being sent; step from the device's last report. */
  timeouts: { inProgressSeconds?: number; stepSeconds?: number };
  /** Retries of FAILED and/or TIMED_OUT executions; each is a new attempt with its own device-side job id. */
  retries: { limit: number; on: ('FAILED' | 'TIMED_OUT')[] };
  /** Send the update to devices that run a higher version (else they end REJECTED). */
  allowDowngrade: boolean;
}

/** A validated create-job request. */
export interface JobRequest {
  artifact: string;
  description?: string;
  spec: JobSpec;
}

const MAX_WAVES = 20;

/** Validates a create-job body; BAD_REQUEST listing every problem. */
export function parseJobRequest(body: Record<string, unknown>, now: number): JobRequest {
  const errors: string[] = [];
  const bad = (m: string) => errors.push(m);
  const known = ['artifact', 'description', 'targets', 'type', 'plan', 'abort', 'timeouts', 'retries', 'allowDowngrade'];
  for (const k of Object.keys(body)) if (!known.includes(k)) bad(`unknown field "${k}" (fields: ${known.join(', ')})`);

  if (typeof body.artifact !== 'string') bad('artifact must be a string like fw@2.0.0');
  const description = descriptionProblem(body.description);
  if (description) bad(description);

  const targets = parseTargets(body.targets, bad);
  const type = body.type ?? 'snapshot';
  if (type !== 'snapshot' && type !== 'continuous') bad('type must be "snapshot" or "continuous"');

  const plan = parsePlan(body.plan, now, bad);
  const abort = parseAbort(body.abort, bad);
  const timeouts = parseTimeouts(body.timeouts, bad);
  const retries = parseRetries(body.retries, bad);
  if (body.allowDowngrade !== undefined && typeof body.allowDowngrade !== 'boolean') bad('allowDowngrade must be true or false');

  if (errors.length > 0) throw new UpdraftError('BAD_REQUEST', errors.join('; '));
  const spec: JobSpec = { targets, type: type as JobSpec['type'], plan, abort, timeouts, retries, allowDowngrade: body.allowDowngrade === true };
  return { artifact: body.artifact as string, ...(typeof body.description === 'string' ? { description: body.description } : {}), spec };
}

function parseTargets(value: unknown, bad: (m: string) => void): JobTargets {
  if (!isJsonObject(value)) {
    bad('targets must be an object with devices, groups and/or query');
    return {};
  }
  const t: JobTargets = {};
  // a target given and refused (a bad query, a bad id) is no empty set: said once, as what it is (QA)
  let refused = false;
  const badTarget = (m: string) => {
    refused = true;
    bad(m);
  };
  for (const k of Object.keys(value)) if (!['devices', 'groups', 'query'].includes(k)) bad(`unknown field "targets.${k}" (devices, groups, query)`);
  if (value.devices !== undefined) {
    if (!Array.isArray(value.devices)) badTarget('targets.devices must be an array of device ids');
    else {
      const badId = value.devices.find((d) => typeof d !== 'string' || !isValidId(d));
      if (badId !== undefined) badTarget(`"${String(badId)}" is not a valid device id`);
      else t.devices = [...new Set(value.devices as string[])];
    }
  }
  if (value.groups !== undefined) {
    if (!Array.isArray(value.groups) || value.groups.some((g) => typeof g !== 'string' || !isValidId(g))) badTarget('targets.groups must be an array of group names');
    else t.groups = [...new Set(value.groups as string[])];
  }
  if (value.query !== undefined) {
    if (typeof value.query !== 'string') badTarget('targets.query must be a string');
    else {
      try {
        parseQuery(value.query);
        t.query = value.query;
      } catch (err) {
        badTarget(`targets.query: ${(err as Error).message}`);
      }
    }
  }
  if (!t.devices?.length && !t.groups?.length && t.query === undefined && !refused) bad('the target set is empty: give targets.devices, targets.groups or targets.query');
  return t;
}

function isPercent(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 && v <= 100;
}

function isPositiveInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v > 0;
}

function parsePlan(value: unknown, now: number, bad: (m: string) => void): JobSpec['plan'] {
  const plan: JobSpec['plan'] = { waves: [{ percent: 100, successThreshold: 0, requireApproval: false }] };
  if (value === undefined) return plan;
  if (!isJsonObject(value)) {
    bad('plan must be an object');
    return plan;
  }
  const fields = ['waves', 'maxPerMinute', 'maxInFlight', 'rampUp', 'startAt', 'windows', 'timeZone'];
  for (const k of Object.keys(value)) if (!fields.includes(k)) bad(`unknown field "plan.${k}" (${fields.join(', ')})`);
  if (value.waves !== undefined) {
    const waves = value.waves;
    if (!Array.isArray(waves) || waves.length === 0 || waves.length > MAX_WAVES) {
      bad(`plan.waves must be an array of 1 to ${MAX_WAVES} waves`);
    } else {
      let lastPercent = 0;
      plan.waves = waves.map((w, i) => {
        const where = `plan.waves[${i}]`;
        const wave: WaveSpec = { successThreshold: 0, requireApproval: false };
        if (!isJsonObject(w)) {
          bad(`${where} must be an object`);
          return wave;
        }
        for (const k of Object.keys(w)) if (!['count', 'percent', 'successThreshold', 'requireApproval'].includes(k)) bad(`unknown field "${where}.${k}"`);
        if (w.count !== undefined && w.percent !== undefined) bad(`${where}: give count or percent, not both`);
        if (w.count !== undefined) {
          if (!isPositiveInt(w.count)) bad(`${where}.count must be a positive integer`);
          else wave.count = w.count;
        } else if (w.percent !== undefined) {
          if (!isPercent(w.percent) || w.percent === 0) bad(`${where}.percent must be a number above 0 and at most 100`);
          else if (w.percent < lastPercent) bad(`${where}.percent (${w.percent}) must not be lower than an earlier wave's (${lastPercent}): percentages are cumulative`);
          else {
            wave.percent = w.percent;
            lastPercent = w.percent;
          }
        } else if (i < waves.length - 1) {
          bad(`${where} needs count or percent (only the last wave may omit it: it takes the rest)`);
        }
        if (w.successThreshold !== undefined) {
          if (!isPercent(w.successThreshold)) bad(`${where}.successThreshold must be a percentage from 0 to 100`);
          else wave.successThreshold = w.successThreshold;
        }
        if (w.requireApproval !== undefined) {
          if (typeof w.requireApproval !== 'boolean') bad(`${where}.requireApproval must be true or false`);
          else wave.requireApproval = w.requireApproval;
        }
        // a wave's threshold and approval gate the wave after it: on the last one they would
        // be ignored, and a job written to stop below 95% would complete at 10% without a word
        if (i === waves.length - 1 && wave.successThreshold > 0) {
          bad(`${where} is the last wave: a successThreshold gates the next wave and none follows; to stop a failing last wave, use abort rules (abort.rules, --abort)`);
        }
        if (i === waves.length - 1 && wave.requireApproval) bad(`${where} is the last wave: requireApproval holds the next wave and none follows`);
        return wave;
      });
    }
  }
  if (value.maxPerMinute !== undefined) {
    if (!isPositiveInt(value.maxPerMinute)) bad('plan.maxPerMinute must be a positive integer');
    else plan.maxPerMinute = value.maxPerMinute;
  }
  if (value.maxInFlight !== undefined) {
    if (!isPositiveInt(value.maxInFlight)) bad('plan.maxInFlight must be a positive integer');
    else plan.maxInFlight = value.maxInFlight;
  }
  if (value.rampUp !== undefined) {
    const r = value.rampUp;
    // each value named on its own, so a form puts the message under the control that holds it
    if (!isJsonObject(r)) bad('plan.rampUp must be {initialPerMinute: positive integer, factor: number from 1 to 100}');
    else if (Object.keys(r).some((k) => !['initialPerMinute', 'factor'].includes(k))) {
      // a misspelt or misplaced cap ("maxPerMinute" belongs to plan) would be lost without a word
      for (const k of Object.keys(r)) if (!['initialPerMinute', 'factor'].includes(k)) bad(`unknown field "plan.rampUp.${k}" (initialPerMinute, factor)`);
    } else if (!isPositiveInt(r.initialPerMinute) || typeof r.factor !== 'number' || !(r.factor >= 1 && r.factor <= 100)) {
      if (!isPositiveInt(r.initialPerMinute)) bad('plan.rampUp.initialPerMinute must be a positive integer');
      if (typeof r.factor !== 'number' || !(r.factor >= 1 && r.factor <= 100)) bad('plan.rampUp.factor must be a number from 1 to 100');
    } else {
      plan.rampUp = { initialPerMinute: r.initialPerMinute, factor: r.factor };
      if (plan.maxPerMinute !== undefined && r.initialPerMinute > plan.maxPerMinute) bad('plan.rampUp.initialPerMinute must not exceed plan.maxPerMinute');
    }
  }
  if (value.startAt !== undefined) {
    const t = typeof value.startAt === 'number' ? value.startAt : typeof value.startAt === 'string' ? Date.parse(value.startAt) : NaN;
    // a time JavaScript's Date cannot hold (beyond ±8.64e15 ms) would make a job that can never start
    if (!Number.isFinite(t) || Number.isNaN(new Date(t).getTime())) bad('plan.startAt must be an ISO 8601 time or milliseconds since the epoch');
    else if (t > now) plan.startAt = t;
  }
  if (value.windows !== undefined) {
    const problems = windowProblems(value.windows);
    for (const problem of problems) bad(problem);
    if (problems.length === 0) plan.windows = (value.windows as unknown as MaintenanceWindow[]).map((w) => ({ start: w.start, minutes: w.minutes, ...(w.days ? { days: [...new Set(w.days)] } : {}) }));
  }
  if (value.timeZone !== undefined) {
    // "device": each device's own time zone; the engine sends at any time and each agent installs in its local window
    if (typeof value.timeZone !== 'string' || (value.timeZone !== DEVICE_TIME_ZONE && !isTimeZone(value.timeZone))) bad('plan.timeZone must be an IANA time zone such as Europe/Madrid or UTC, or "device" (each device\'s own)');
    else if (value.windows === undefined) bad('plan.timeZone is the time zone of plan.windows: give the windows too');
    else plan.timeZone = value.timeZone;
  }
  return plan;
}

function parseAbort(value: unknown, bad: (m: string) => void): JobSpec['abort'] {
  const abort: JobSpec['abort'] = { rules: [], rollback: false };
  if (value === undefined) return abort;
  if (!isJsonObject(value)) {
    bad('abort must be an object {rules, rollback}');
    return abort;
  }
  for (const k of Object.keys(value)) if (!['rules', 'rollback'].includes(k)) bad(`unknown field "abort.${k}" (rules, rollback)`);
  if (value.rollback !== undefined && typeof value.rollback !== 'boolean') bad('abort.rollback must be true or false');
  abort.rollback = value.rollback === true;
  if (value.rules === undefined) return abort;
  if (!Array.isArray(value.rules)) {
    bad('abort.rules must be an array');
    return abort;
  }
  value.rules.forEach((r, i) => {
    const where = `abort.rules[${i}]`;
    if (!isJsonObject(r)) return bad(`${where} must be an object`);
    // a misspelt minFinished would abort after the first finished device, a misplaced rollback would be lost
    const unknown = Object.keys(r).filter((k) => !['type', 'thresholdPercent', 'minFinished'].includes(k));
    if (unknown.length > 0) return unknown.forEach((k) => bad(`unknown field "${where}.${k}" (type, thresholdPercent, minFinished)`));
    const type = r.type ?? 'ANY';
    if (!['FAILED', 'TIMED_OUT', 'REJECTED', 'ANY'].includes(type as string)) return bad(`${where}.type must be FAILED, TIMED_OUT, REJECTED or ANY`);
    if (!isPercent(r.thresholdPercent) || r.thresholdPercent === 0) return bad(`${where}.thresholdPercent must be a number above 0 and at most 100`);
    const min = r.minFinished ?? 1;
    if (!isPositiveInt(min)) return bad(`${where}.minFinished must be a positive integer`);
    abort.rules.push({ type: type as FailureType, thresholdPercent: r.thresholdPercent, minFinished: min });
  });
  return abort;
}

function parseTimeouts(value: unknown, bad: (m: string) => void): JobSpec['timeouts'] {
  const t: JobSpec['timeouts'] = {};
  if (value === undefined) return t;
  if (!isJsonObject(value)) {
    bad('timeouts must be an object {inProgressSeconds, stepSeconds}');
    return t;
  }
  for (const k of Object.keys(value)) if (!['inProgressSeconds', 'stepSeconds'].includes(k)) bad(`unknown field "timeouts.${k}" (inProgressSeconds, stepSeconds)`);
  for (const k of ['inProgressSeconds', 'stepSeconds'] as const) {
    const v = value[k];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || v > 30 * 86400) bad(`timeouts.${k} must be a number of seconds above 0 and at most 30 days`);
    else t[k] = v;
  }
  return t;
}

function parseRetries(value: unknown, bad: (m: string) => void): JobSpec['retries'] {
  const r: JobSpec['retries'] = { limit: 0, on: ['FAILED', 'TIMED_OUT'] };
  if (value === undefined) return r;
  if (!isJsonObject(value)) {
    bad('retries must be an object {limit, on}');
    return r;
  }
  for (const k of Object.keys(value)) if (!['limit', 'on'].includes(k)) bad(`unknown field "retries.${k}" (limit, on)`);
  if (value.limit !== undefined) {
    if (typeof value.limit !== 'number' || !Number.isSafeInteger(value.limit) || value.limit < 0 || value.limit > 10) bad('retries.limit must be an integer from 0 to 10');
    else r.limit = value.limit;
  }
  if (value.on !== undefined) {
    if (!Array.isArray(value.on) || value.on.length === 0 || value.on.some((x) => x !== 'FAILED' && x !== 'TIMED_OUT')) bad('retries.on must list FAILED and/or TIMED_OUT');
    else r.on = [...new Set(value.on as ('FAILED' | 'TIMED_OUT')[])];
  }
  return r;
}

/** The spec of a job as stored (JsonObject), read back. */
export function specOf(job: { spec?: JsonObject }): JobSpec | undefined {
  return job.spec as unknown as JobSpec | undefined;
}

/** A spec stored as JSON. */
export function specToJson(spec: JobSpec): JsonObject {
  return JSON.parse(JSON.stringify(spec)) as JsonObject;
}

/** The default spec of a plain deployment: one wave, everyone at once, no timeouts, no retries. */
export function deploymentSpec(devices: string[]): JobSpec {
  return {
    targets: { devices },
    type: 'snapshot',
    plan: { waves: [{ percent: 100, successThreshold: 0, requireApproval: false }] },
    abort: { rules: [], rollback: false },
    timeouts: {},
    retries: { limit: 0, on: ['FAILED', 'TIMED_OUT'] },
    allowDowngrade: true,
  };
}
