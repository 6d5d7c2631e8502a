/**
 * Message shapes of the AWS IoT Jobs device MQTT API (issue 9), as the developer guide
 * documents them (https://docs.aws.amazon.com/iot/latest/developerguide/jobs-mqtt-api.html)
 * and the AWS IoT Device SDKs parse them. Timestamps are seconds since the epoch.
 */
import type { AwsJobsRequest } from './aws-topics.ts';
import { isJsonObject, parseJsonObject, type JsonObject, type JsonTextMessages } from './json.ts';
import { clientTokenTooLong } from './shadow-messages.ts';

/** Job execution states as AWS names them (Updraft's execution states use the same names). */
export type AwsJobStatus = 'QUEUED' | 'IN_PROGRESS' | 'SUCCEEDED' | 'FAILED' | 'TIMED_OUT' | 'REJECTED' | 'REMOVED' | 'CANCELED';

/** The states a device may set with UpdateJobExecution. */
export const DEVICE_SETTABLE_STATUSES: readonly AwsJobStatus[] = ['IN_PROGRESS', 'SUCCEEDED', 'FAILED', 'REJECTED'];

/** The documented `code` values of a `.../rejected` answer. */
export type AwsJobsErrorCode =
  | 'InvalidTopic'
  | 'InvalidJson'
  | 'InvalidRequest'
  | 'InvalidStateTransition'
  | 'ResourceNotFound'
  | 'VersionMismatch'
  | 'InternalError'
  | 'RequestThrottled'
  | 'TerminalStateReached';

/** `JobExecutionState`: what an update answer and a VersionMismatch carry. */
export interface AwsJobExecutionState {
  status: AwsJobStatus;
  statusDetails?: Record<string, string>;
  versionNumber: number;
}

/** `JobExecutionSummary`, in `get` and `notify`. */
export interface AwsJobExecutionSummary {
  jobId: string;
  queuedAt: number;
  startedAt?: number;
  lastUpdatedAt: number;
  versionNumber: number;
  executionNumber: number;
}

/** `JobExecution`, in `start-next`, `{jobId}/get` and `notify-next`. */
export interface AwsJobExecution extends AwsJobExecutionSummary {
  thingName: string;
  status: AwsJobStatus;
  statusDetails?: Record<string, string>;
  jobDocument?: JsonObject;
}

/** A `.../rejected` answer. */
export interface AwsJobsRejection {
  code: AwsJobsErrorCode;
  message: string;
  timestamp: number;
  clientToken?: string;
  executionState?: AwsJobExecutionState;
}

/** An error the jobs door answers on `.../rejected` with its AWS code. */
export class AwsJobsError extends Error {
  readonly code: AwsJobsErrorCode;
  readonly executionState: AwsJobExecutionState | undefined;

  constructor(code: AwsJobsErrorCode, message: string, executionState?: AwsJobExecutionState) {
    super(message);
    this.name = 'AwsJobsError';
    this.code = code;
    this.executionState = executionState;
  }
}

/** A validated request body (every field optional; which ones apply depends on the operation). */
export interface AwsJobsRequestBody {
  clientToken?: string;
  status?: AwsJobStatus;
  statusDetails?: Record<string, string>;
  expectedVersion?: number;
  executionNumber?: number;
  includeJobExecutionState?: boolean;
  includeJobDocument?: boolean;
  stepTimeoutInMinutes?: number;
  /**
   * An update's `stepTimeoutInMinutes: -1`: the step timer an earlier update set is canceled
   * (UpdateJobExecution takes 1 to 10080 "or -1"; StartNextPendingJobExecution 1 to 10080 only,
   * https://docs.aws.amazon.com/iot/latest/apireference/API_iot-jobs-data_UpdateJobExecution.html).
   */
  cancelStepTimer?: true;
}

/** AWS limits: clientToken up to 64 characters (code points, clientTokenTooLong). */
const MAX_CLIENT_TOKEN = 64;
/**
 * AWS limits of a statusDetails entry (DetailsMap: JobExecutionState.statusDetails and
 * UpdateJobExecution in the API reference,
 * https://docs.aws.amazon.com/iot/latest/apireference/API_iot-jobs-data_JobExecutionState.html,
 * and the service model, botocore data/iot-jobs-data/2017-09-29/service-2.json: DetailsKey,
 * DetailsValue): a key of 1 to 128 characters matching `[a-zA-Z0-9:_-]+`, a value of 1 to
 * 1,024 characters (counted as code points, as the clientToken: an emoji is one) matching
 * `[^\p{C}]+` (no control, format or unassigned characters). AWS documents no bound on the
 * number of entries (DetailsMap has none), so Updraft sets none either: the request's size
 * (MAX_PAYLOAD) and the shadow's that carries the details (shadow.maxDocumentBytes) bound it.
 */
const STATUS_DETAILS_KEY = /^[a-zA-Z0-9:_-]{1,128}$/;
const STATUS_DETAILS_VALUE = /^[^\p{C}]+$/u;
export const MAX_STATUS_DETAILS_VALUE = 1024;
/** stepTimeoutInMinutes: 1 minute to 7 days (10080), per the UpdateJobExecution reference. */
const MAX_STEP_TIMEOUT = 10_080;
const MAX_PAYLOAD = 16_384;

/** Why `d` is not a statusDetails map AWS takes (naming the first bad entry), or undefined. */
export function statusDetailsDefect(d: unknown): string | undefined {
  if (!isJsonObject(d)) return 'statusDetails must be a map of strings to strings';
  for (const [k, v] of Object.entries(d)) {
    const defect = entryDefect(k, v);
    if (defect !== undefined) return defect;
  }
  return undefined;
}

/** Why one statusDetails entry is not one AWS takes, or undefined: the rule of both `statusDetailsDefect` and `statusDetailsOf`. */
function entryDefect(k: string, v: unknown): string | undefined {
  if (!STATUS_DETAILS_KEY.test(k)) {
    // a key can be long: name it by its start
    const name = JSON.stringify(k.length > 64 ? `${k.slice(0, 64)}...` : k);
    return `statusDetails key ${name} must be 1 to 128 characters of a-z, A-Z, 0-9, ':', '_' and '-'`;
  }
  if (typeof v !== 'string') return `statusDetails.${k} must be a string`;
  // UTF-16 units over-count: code points are counted only for a value that may be too long
  const length = v.length > MAX_STATUS_DETAILS_VALUE ? [...v].length : v.length;
  if (length === 0 || length > MAX_STATUS_DETAILS_VALUE) return `statusDetails.${k} must be 1 to ${MAX_STATUS_DETAILS_VALUE} characters, not ${length}`;
  if (!STATUS_DETAILS_VALUE.test(v)) return `statusDetails.${k} must not hold control, format or unassigned characters (Unicode category C: a line break, a tab, a zero-width joiner)`;
  return undefined;
}

/**
 * The statusDetails in `value` as AWS bounds them, for what reads them back from a report
 * (`reported.software.statusDetails`, which a device may also write through its shadow):
 * the entries AWS would take (no bound on their number: the shadow's size bounds them);
 * undefined when none.
 */
export function statusDetailsOf(value: unknown): Record<string, string> | undefined {
  if (!isJsonObject(value)) return undefined;
  const kept: [string, string][] = [];
  for (const [k, v] of Object.entries(value)) {
    // the messages are built only for a bad entry: a report's well-formed details build none
    if (entryDefect(k, v) === undefined) kept.push([k, v as string]);
  }
  // fromEntries defines each key as data: a "__proto__" entry stays an entry
  return kept.length === 0 ? undefined : Object.fromEntries(kept);
}

/** The InvalidJson messages of a payload that is no JSON object. */
const INVALID_JSON_MESSAGES: JsonTextMessages = {
  'not-utf8': 'Request payload is not valid JSON: it is not UTF-8',
  'not-json': 'Request payload is not valid JSON',
  'not-object': 'Request payload must be a JSON object',
};

function invalid(message: string): AwsJobsError {
  return new AwsJobsError('InvalidRequest', message);
}

/**
 * The fields of each request's payload, as AWS documents them
 * (https://docs.aws.amazon.com/iot/latest/developerguide/jobs-mqtt-api.html) and the SDKs send them.
 */
const REQUEST_FIELDS: Readonly<Record<AwsJobsRequest['op'], { name: string; fields: readonly string[] }>> = {
  get: { name: 'GetPendingJobExecutions', fields: ['clientToken'] },
  'start-next': { name: 'StartNextPendingJobExecution', fields: ['clientToken', 'statusDetails', 'stepTimeoutInMinutes'] },
  describe: { name: 'DescribeJobExecution', fields: ['clientToken', 'executionNumber', 'includeJobDocument'] },
  update: {
    name: 'UpdateJobExecution',
    fields: ['clientToken', 'status', 'statusDetails', 'expectedVersion', 'executionNumber', 'includeJobExecutionState', 'includeJobDocument', 'stepTimeoutInMinutes'],
  },
};

/**
 * Refuses, by name, every top-level field the request does not take: a misspelt field
 * changes what the request does without a word (`expectedversion` made a conditional update
 * unconditional). The project's rule, as for the shadow's nodes: a field is refused, never
 * dropped. `thingName` (and `jobId` on a describe or an update) are taken when they name the
 * topic's own: the AWS IoT Device SDK v2's IotJobsClient serializes its whole request object,
 * topic fields included, into the payload. Without `req`, the fields of an update.
 */
function refuseUnknownFields(v: JsonObject, req: AwsJobsRequest | undefined): void {
  const { name, fields } = REQUEST_FIELDS[req?.op ?? 'update'];
  const unknown: string[] = [];
  for (const k of Object.keys(v)) {
    if (fields.includes(k)) continue;
    if (req && k === 'thingName') {
      if (v[k] === req.thing) continue;
      throw invalid(`thingName ${JSON.stringify(v[k])} does not match the topic's thing '${req.thing}': the topic says which thing a request is for`);
    }
    if (req && k === 'jobId' && 'jobId' in req) {
      if (v[k] === req.jobId) continue;
      throw invalid(`jobId ${JSON.stringify(v[k])} does not match the topic's job '${req.jobId}': the topic says which job a request is for`);
    }
    unknown.push(k);
  }
  if (unknown.length === 0) return;
  // a field named a long way is named by its start, as a statusDetails key
  const shown = (k: string) => JSON.stringify(k.length > 64 ? `${k.slice(0, 64)}...` : k);
  const named = unknown.slice(0, 5).map((k) => {
    const meant = fields.find((f) => f.toLowerCase() === k.toLowerCase());
    return meant ? `${shown(k)} (did you mean "${meant}"?)` : shown(k);
  });
  if (unknown.length > 5) named.push(`and ${unknown.length - 5} more`);
  throw invalid(`Request contains ${unknown.length === 1 ? 'an invalid field' : 'invalid fields'}: ${named.join(', ')}; ${name} takes ${fields.join(', ')}`);
}

/**
 * Parses and validates a Jobs request payload; an empty payload is `{}`. `req`, the request
 * its topic names, says which fields it takes (any other is refused, InvalidRequest).
 */
export function parseAwsJobsBody(payload: Buffer, req?: AwsJobsRequest): AwsJobsRequestBody {
  if (payload.length > MAX_PAYLOAD) throw invalid(`The payload exceeds the maximum size allowed (${payload.length} > ${MAX_PAYLOAD} bytes)`);
  if (payload.length === 0) return {};
  // strict: Buffer.toString would put U+FFFD for each byte that is not UTF-8 and store that
  const v = parseJsonObject(payload);
  if (typeof v === 'string') throw new AwsJobsError('InvalidJson', INVALID_JSON_MESSAGES[v]);
  refuseUnknownFields(v, req);
  const out: AwsJobsRequestBody = {};
  if (v.clientToken !== undefined) {
    if (typeof v.clientToken !== 'string' || v.clientToken.length === 0 || clientTokenTooLong(v.clientToken)) throw invalid(`clientToken must be a string of 1 to ${MAX_CLIENT_TOKEN} characters`);
    out.clientToken = v.clientToken;
  }
  if (v.status !== undefined) {
    if (typeof v.status !== 'string' || !(DEVICE_SETTABLE_STATUSES as readonly string[]).includes(v.status)) {
      throw invalid(`status must be one of ${DEVICE_SETTABLE_STATUSES.join(', ')}`);
    }
    out.status = v.status as AwsJobStatus;
  }
  if (v.statusDetails !== undefined && v.statusDetails !== null) {
    const d = v.statusDetails;
    const defect = statusDetailsDefect(d);
    if (defect !== undefined) throw invalid(defect);
    out.statusDetails = d as Record<string, string>;
  }
  for (const k of ['expectedVersion', 'executionNumber'] as const) {
    const n = v[k];
    if (n === undefined) continue;
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 1) throw invalid(`${k} must be a positive integer`);
    out[k] = n;
  }
  for (const k of ['includeJobExecutionState', 'includeJobDocument'] as const) {
    const b = v[k];
    if (b === undefined) continue;
    if (typeof b !== 'boolean') throw invalid(`${k} must be true or false`);
    out[k] = b;
  }
  if (v.stepTimeoutInMinutes !== undefined) {
    const n = v.stepTimeoutInMinutes;
    const update = req?.op === 'update';
    if (update && n === -1) out.cancelStepTimer = true;
    else if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 1 || n > MAX_STEP_TIMEOUT) throw invalid(`stepTimeoutInMinutes must be an integer from 1 to ${MAX_STEP_TIMEOUT}${update ? ', or -1 to cancel the step timer an earlier update set' : ''}`);
    else out.stepTimeoutInMinutes = n;
  }
  return out;
}

/** Best-effort clientToken of a payload that failed validation, to echo on the rejection. */
export function salvageJobsClientToken(payload: Buffer): string | undefined {
  // nothing from bytes that are not UTF-8: the token read from them may not be the one sent
  const v = parseJsonObject(payload);
  if (typeof v !== 'string' && typeof v.clientToken === 'string' && v.clientToken !== '' && !clientTokenTooLong(v.clientToken)) return v.clientToken;
  return undefined;
}
