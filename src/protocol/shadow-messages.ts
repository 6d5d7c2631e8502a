/**
 * Message shapes of the shadow protocol (docs/design.md §2) and their validation at the edge.
 * Semantics follow the well-known device-shadow contract; messages match it word for word
 * where it has one, so that clients written against it understand our rejections.
 */
import { isUtf8 } from 'node:buffer';
import { UpdraftError } from '../errors.ts';
import { isJsonObject, jsonDefect, parseJsonObject, requireJsonObject, type JsonObject, type JsonTextMessages, type JsonValue } from './json.ts';
import type { ShadowRef } from './topics.ts';

/** Size and shape limits applied to every request. */
export interface ShadowLimits {
  /**
   * Largest request payload, and largest stored state (`{"desired":...,"reported":...}` as
   * JSON, stateSize in document.ts; metadata not counted), in bytes.
   */
  maxDocumentBytes: number;
  /** Deepest nesting of objects and arrays in `desired` or `reported`, the section itself level 1 (jsonDefect). */
  maxDepth: number;
}

/** Defaults: 8 KiB documents and 6 levels, the values of the reference shadow service. */
export const DEFAULT_LIMITS: ShadowLimits = { maxDocumentBytes: 8192, maxDepth: 6 };

/** A request on `.../update`. `null` for a section clears it; `null` for a key deletes it. */
export interface UpdateRequest {
  state: { desired?: JsonObject | null; reported?: JsonObject | null };
  clientToken?: string;
  /** Optimistic concurrency: applies only if the shadow's current version equals it. */
  version?: number;
}

/** A request on `.../get` or `.../delete`. */
export interface SimpleRequest {
  clientToken?: string;
  /** For delete: applies only if the shadow's current version equals it. */
  version?: number;
}

/** The stored and answered document shape. */
export interface ShadowDocument {
  state: { desired?: JsonObject; reported?: JsonObject; delta?: JsonObject };
  metadata: { desired?: JsonObject; reported?: JsonObject };
  version: number;
  /** Seconds since the epoch. */
  timestamp: number;
  clientToken?: string;
}

/** Published on `.../update/accepted`: the accepted request's state and its metadata. */
export interface UpdateAccepted {
  state: { desired?: JsonObject | null; reported?: JsonObject | null };
  metadata: { desired?: JsonObject; reported?: JsonObject };
  version: number;
  timestamp: number;
  clientToken?: string;
}

/** Published on `.../update/delta`: desired attributes that differ from reported. */
export interface DeltaMessage {
  state: JsonObject;
  metadata: JsonObject;
  version: number;
  timestamp: number;
  clientToken?: string;
}

/** One side of an `.../update/documents` message. */
export interface DocumentSnapshot {
  state: { desired?: JsonObject; reported?: JsonObject };
  metadata: { desired?: JsonObject; reported?: JsonObject };
  version: number;
}

/** Published on `.../update/documents` after every accepted update: before and after. */
export interface DocumentsMessage {
  previous: DocumentSnapshot | null;
  current: DocumentSnapshot;
  timestamp: number;
  clientToken?: string;
}

/** Published on `.../rejected`. */
export interface Rejection {
  code: number;
  message: string;
  timestamp: number;
  clientToken?: string;
}

/** Published on `.../delete/accepted`. */
export interface DeleteAccepted {
  version: number;
  timestamp: number;
  clientToken?: string;
}

const MAX_CLIENT_TOKEN = 64;

/** The rejection of a payload whose bytes are not UTF-8 (RFC 8259 section 8.1). */
export const NOT_UTF8 = 'Invalid JSON: the payload is not UTF-8';

/**
 * AWS IoT's answer to a payload that is not UTF-8, 415 (Device Shadow error messages,
 * https://docs.aws.amazon.com/iot/latest/developerguide/device-shadow-error-messages.html).
 * Updraft's own topics answer it 400 `NOT_UTF8` (docs/protocol.md#rejections).
 */
export const AWS_NOT_UTF8 = 'Unsupported documented encoding; supported encoding is UTF-8';

/**
 * Refuses, as AWS IoT does, with 415, the payload of a request that came by the AWS family
 * when its bytes are not UTF-8. A payload over the size limit is left to `parseJsonPayload`'s
 * 413, checked first on both families.
 */
export function refuseAwsEncoding(payload: Buffer, limits: ShadowLimits): void {
  if (payload.length <= limits.maxDocumentBytes && !isUtf8(payload)) throw new UpdraftError('BAD_REQUEST', AWS_NOT_UTF8, { status: 415 });
}

/** What a device is answered when its payload is no JSON object (the shadow and the requests beside it). */
export const PAYLOAD_JSON_MESSAGES: JsonTextMessages = {
  'not-utf8': NOT_UTF8,
  'not-json': 'Invalid JSON',
  'not-object': 'Invalid JSON: the payload must be a JSON object',
};

/** Parses a payload as a JSON object; 413 above the size limit, 400 for anything else. */
export function parseJsonPayload(payload: Buffer | string, limits: ShadowLimits): JsonObject {
  const size = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
  if (size > limits.maxDocumentBytes) {
    throw new UpdraftError('TOO_LARGE', `The payload exceeds the maximum size allowed (${size} > ${limits.maxDocumentBytes} bytes)`);
  }
  return requireJsonObject(payload, PAYLOAD_JSON_MESSAGES);
}

/**
 * Whether `token` has more than 64 characters, counted as code points (docs/protocol.md): an
 * emoji is one character, not the two UTF-16 units of `length`. Only a string over 64 units
 * is counted (one of at most 64 units has at most 64 code points), so the usual token costs
 * nothing more; one over 128 units has over 64 code points and is not counted either.
 */
export function clientTokenTooLong(token: string): boolean {
  return token.length > MAX_CLIENT_TOKEN && (token.length > 2 * MAX_CLIENT_TOKEN || [...token].length > MAX_CLIENT_TOKEN);
}

/** Reads the optional `clientToken` (a string of 1 to 64 characters, clientTokenTooLong). */
export function readClientToken(req: JsonObject): string | undefined {
  const token = req.clientToken;
  if (token === undefined) return undefined;
  if (typeof token !== 'string' || token.length === 0 || clientTokenTooLong(token)) {
    throw new UpdraftError('BAD_REQUEST', `Invalid clientToken: must be a string of 1 to ${MAX_CLIENT_TOKEN} characters`);
  }
  return token;
}

function readVersion(req: JsonObject): number | undefined {
  const version = req.version;
  if (version === undefined) return undefined;
  if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 0) {
    throw new UpdraftError('BAD_REQUEST', 'Invalid version: must be a non-negative integer');
  }
  return version;
}

function readSection(state: JsonObject, key: 'desired' | 'reported', limits: ShadowLimits): JsonObject | null | undefined {
  const section = state[key];
  if (section === undefined || section === null) return section;
  if (!isJsonObject(section)) {
    throw new UpdraftError('BAD_REQUEST', `${key === 'desired' ? 'Desired' : 'Reported'} node must be an object`);
  }
  const defect = jsonDefect(section, limits.maxDepth, `state.${key}`);
  if (defect?.kind === 'depth') {
    throw new UpdraftError('BAD_REQUEST', `JSON contains too many levels of nesting; maximum is ${limits.maxDepth}`);
  }
  if (defect?.kind === 'number') {
    throw new UpdraftError('BAD_REQUEST', `${defect.path} is not a finite number: a JSON number beyond the double range (about ±1.8e308) cannot be stored`);
  }
  return section;
}

/** The nodes of an update request, and of a get or delete (whose `version` a get ignores). */
const UPDATE_NODES: readonly string[] = ['state', 'clientToken', 'version'];
const SIMPLE_NODES: readonly string[] = ['clientToken', 'version'];
const STATE_NODES: readonly string[] = ['desired', 'reported'];

/**
 * Refuses, by name, every node of a request that its operation does not take: a misspelt
 * node changes what the request does without a word (`versoin` made a conditional update
 * unconditional; `reportd` wrote nothing of what it held). `thingName` and `shadowName` are
 * taken when they name the request's own thing and shadow: the AWS IoT Device SDK v2's
 * IotShadowClient (JavaScript, Java) serializes its whole request object, topic fields
 * included, into every payload, and AWS IoT takes them.
 */
function refuseUnknownNodes(req: JsonObject, nodes: readonly string[], what: string, ref: ShadowRef | undefined): void {
  const unknown: string[] = [];
  for (const k of Object.keys(req)) {
    if (nodes.includes(k)) continue;
    if (ref && k === 'thingName' && req[k] === ref.deviceId) continue;
    if (ref && k === 'shadowName' && ref.name !== '' && req[k] === ref.name) continue;
    if (ref && (k === 'thingName' || k === 'shadowName')) {
      const own = k === 'thingName' ? `the topic's thing '${ref.deviceId}'` : ref.name === '' ? 'no named shadow (the topic is the classic shadow\'s)' : `the topic's shadow '${ref.name}'`;
      throw new UpdraftError('BAD_REQUEST', `${k} ${JSON.stringify(req[k])} does not match ${own}: the topic says which shadow a request is for`);
    }
    unknown.push(k);
  }
  if (unknown.length === 0) return;
  const named = unknown.map((k) => `'${k}'`).join(', ');
  throw new UpdraftError('BAD_REQUEST', `Request contains ${unknown.length === 1 ? 'an invalid node' : 'invalid nodes'}: ${named} (${what} takes ${nodes.join(', ')})`);
}

/**
 * Validates an update request; throws 400/413 naming the problem. `ref`, the shadow the
 * request's topic names, lets a payload name it too (`thingName`, `shadowName`).
 */
export function parseUpdateRequest(payload: Buffer | string, limits: ShadowLimits, ref?: ShadowRef): UpdateRequest {
  const req = parseJsonPayload(payload, limits);
  const clientToken = readClientToken(req);
  const version = readVersion(req);
  // AWS IoT's first answer to a payload without state, whatever else it holds
  if (!('state' in req)) throw new UpdraftError('BAD_REQUEST', 'Missing required node: state');
  refuseUnknownNodes(req, UPDATE_NODES, 'an update', ref);
  const state = req.state as JsonValue;
  if (!isJsonObject(state)) throw new UpdraftError('BAD_REQUEST', 'State node must be an object');
  // AWS IoT's words: a misspelt section (`reportd`) was dropped and the rest written
  const invalid = Object.keys(state).filter((k) => !STATE_NODES.includes(k));
  if (invalid.length > 0) {
    throw new UpdraftError('BAD_REQUEST', `State contains ${invalid.length === 1 ? 'an invalid node' : 'invalid nodes'}: ${invalid.map((k) => `'${k}'`).join(', ')}`);
  }
  const desired = readSection(state, 'desired', limits);
  const reported = readSection(state, 'reported', limits);
  if (desired === undefined && reported === undefined) {
    throw new UpdraftError('BAD_REQUEST', 'State node must contain desired or reported');
  }
  const out: UpdateRequest = { state: {} };
  if (desired !== undefined) out.state.desired = desired;
  if (reported !== undefined) out.state.reported = reported;
  if (clientToken !== undefined) out.clientToken = clientToken;
  if (version !== undefined) out.version = version;
  return out;
}

/**
 * Validates a get or delete request. An empty payload is an empty request. A get takes
 * `version` and ignores it: the AWS IoT Device SDK v1 (thingShadow, versioning on by default)
 * adds the version it knows to every request, gets included, and AWS IoT takes it.
 */
export function parseSimpleRequest(payload: Buffer | string, limits: ShadowLimits, ref?: ShadowRef, op: 'get' | 'delete' = 'get'): SimpleRequest {
  if (payload.length === 0) return {};
  const req = parseJsonPayload(payload, limits);
  refuseUnknownNodes(req, SIMPLE_NODES, `a ${op}`, ref);
  const clientToken = readClientToken(req);
  const out: SimpleRequest = {};
  if (clientToken !== undefined) out.clientToken = clientToken;
  const version = readVersion(req);
  if (version !== undefined) out.version = version;
  return out;
}

/**
 * Best-effort clientToken of a payload that failed validation, to echo on the rejection; none
 * from bytes that are not UTF-8 (as the AWS jobs door): decoded leniently, a token holding a
 * bad byte read as another token (U+FFFD in its place), one the device never sent.
 */
export function salvageClientToken(payload: Buffer | string): string | undefined {
  const v = parseJsonObject(payload);
  if (typeof v !== 'string' && typeof v.clientToken === 'string' && v.clientToken !== '' && !clientTokenTooLong(v.clientToken)) return v.clientToken;
  return undefined;
}
