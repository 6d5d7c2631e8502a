/**
 * Pure shadow document logic (DESIGN.md §2): merging an update into the stored state,
 * per-attribute metadata, the delta, and the shapes answered on each topic. No I/O here;
 * the replica (`replica.ts`) adds persistence and publishing.
 */
import { UpdraftError } from '../errors.ts';
import { cloneJson, forbiddenKey, isJsonObject, type JsonObject, type JsonValue } from '../protocol/json.ts';
import type {
  DeltaMessage,
  DocumentSnapshot,
  ShadowDocument,
  ShadowLimits,
  UpdateAccepted,
  UpdateRequest,
} from '../protocol/shadow-messages.ts';
import type { ShadowRecord } from '../store/state-store.ts';

type Section = 'desired' | 'reported';
const SECTIONS: readonly Section[] = ['desired', 'reported'];

/** Deep equality of JSON values; arrays compare as whole values, element by element. */
export function jsonEqual(a: JsonValue | undefined, b: JsonValue | undefined): boolean {
  if (a === b) return true;
  if (a === null || b === null || a === undefined || b === undefined) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    return a.every((v, i) => jsonEqual(v, b[i]));
  }
  if (isJsonObject(a)) {
    if (!isJsonObject(b)) return false;
    const ka = Object.keys(a);
    if (ka.length !== Object.keys(b).length) return false;
    return ka.every((k) => k in b && jsonEqual(a[k], b[k]));
  }
  return false;
}

/**
 * Merges `patch` into `target` (both mutated copies): `null` deletes a key, objects merge
 * leaf by leaf, anything else (including arrays) replaces. Metadata gets `{timestamp}` on
 * every leaf written. Objects left empty by deletions are removed.
 */
function mergeInto(target: JsonObject, meta: JsonObject, patch: JsonObject, now: number): void {
  for (const key of Object.keys(patch)) {
    const value = patch[key] as JsonValue;
    if (value === null) {
      delete target[key];
      delete meta[key];
    } else if (isJsonObject(value)) {
      // own properties only: an inherited one (Object.prototype's) is never merged into
      const had = Object.hasOwn(target, key) && isJsonObject(target[key]);
      const child = had ? (target[key] as JsonObject) : {};
      // metadata mirrors the state tree: an object's metadata is an object of its keys'
      const childMeta = had && Object.hasOwn(meta, key) && isJsonObject(meta[key]) ? (meta[key] as JsonObject) : {};
      mergeInto(child, childMeta, value, now);
      if (Object.keys(child).length === 0) {
        delete target[key];
        delete meta[key];
      } else {
        target[key] = child;
        meta[key] = childMeta;
      }
    } else {
      target[key] = cloneJson(value);
      meta[key] = { timestamp: now };
    }
  }
}

/** Metadata of a request's own leaves (for update/accepted): every leaf, nulls included. */
function requestMetadata(patch: JsonObject, now: number): JsonObject {
  const out: JsonObject = {};
  for (const [key, value] of Object.entries(patch)) {
    out[key] = isJsonObject(value) ? requestMetadata(value, now) : { timestamp: now };
  }
  return out;
}

/**
 * The delta: every desired attribute whose value differs from reported, nested objects
 * compared leaf by leaf and arrays as whole values. Undefined when nothing differs.
 */
export function computeDelta(desired: JsonObject | undefined, reported: JsonObject | undefined): JsonObject | undefined {
  if (!desired) return undefined;
  const out: JsonObject = {};
  for (const [key, want] of Object.entries(desired)) {
    const have = reported?.[key];
    if (isJsonObject(want) && isJsonObject(have)) {
      const sub = computeDelta(want, have);
      if (sub) out[key] = sub;
    } else if (!jsonEqual(want, have)) {
      out[key] = cloneJson(want);
    }
  }
  return Object.keys(out).length === 0 ? undefined : out;
}

/** The part of `metadata` that describes the keys present in `delta`. */
export function pickMetadata(delta: JsonObject, metadata: JsonObject | undefined): JsonObject {
  const out: JsonObject = {};
  for (const [key, value] of Object.entries(delta)) {
    const m = metadata?.[key];
    if (isJsonObject(value) && isJsonObject(m)) {
      out[key] = pickMetadata(value, m);
    } else if (m !== undefined) {
      out[key] = cloneJson(m);
    }
  }
  return out;
}

/** Size in bytes of a record's state as the limit counts it (state only, not metadata). */
export function stateSize(state: ShadowRecord['state']): number {
  return Buffer.byteLength(JSON.stringify(state));
}

/** Result of applying an update: the record to store and the update/accepted message. */
export interface AppliedUpdate {
  next: ShadowRecord;
  accepted: UpdateAccepted;
}

/**
 * Applies an update request to the current record (undefined or a tombstone start empty).
 * The version grows by one from the last version ever used, so it is never reused, even
 * across delete. Throws 409 on a version mismatch and 413 when the result is too large.
 */
export function applyUpdate(
  current: ShadowRecord | undefined,
  ref: { deviceId: string; name: string },
  request: UpdateRequest,
  now: number,
  limits: ShadowLimits,
): AppliedUpdate {
  const live = current && !current.deleted ? current : undefined;
  // here, where the merge is, so that every caller is covered (MQTT, AWS doors, the engine)
  for (const section of SECTIONS) {
    const bad = request.state[section] ? forbiddenKey(request.state[section]) : undefined;
    if (bad !== undefined) throw new UpdraftError('BAD_REQUEST', `Invalid attribute name "${bad}" in the ${section} node`);
  }
  const currentVersion = current?.version ?? 0;
  if (request.version !== undefined && request.version !== (live ? currentVersion : 0)) {
    throw new UpdraftError('CONFLICT', 'Version conflict');
  }
  const state: ShadowRecord['state'] = live ? cloneJson(live.state) : {};
  const metadata: ShadowRecord['metadata'] = live ? cloneJson(live.metadata) : {};
  const acceptedMeta: UpdateAccepted['metadata'] = {};
  for (const section of SECTIONS) {
    const patch = request.state[section];
    if (patch === undefined) continue;
    if (patch === null) {
      delete state[section];
      delete metadata[section];
      continue;
    }
    const target = state[section] ?? {};
    const meta = metadata[section] ?? {};
    mergeInto(target, meta, patch, now);
    if (Object.keys(target).length === 0) {
      delete state[section];
      delete metadata[section];
    } else {
      state[section] = target;
      metadata[section] = meta;
    }
    acceptedMeta[section] = requestMetadata(patch, now);
  }
  const size = stateSize(state);
  if (size > limits.maxDocumentBytes) {
    throw new UpdraftError('TOO_LARGE', `The payload exceeds the maximum size allowed: the document would be ${size} bytes, the limit is ${limits.maxDocumentBytes}`);
  }
  const version = currentVersion + 1;
  const next: ShadowRecord = { deviceId: ref.deviceId, name: ref.name, version, deleted: false, state, metadata, timestamp: now };
  const accepted: UpdateAccepted = { state: cloneJson(request.state), metadata: acceptedMeta, version, timestamp: now };
  if (request.clientToken !== undefined) accepted.clientToken = request.clientToken;
  return { next, accepted };
}

/** The tombstone written by a delete: no state, the version bumped so it is never reused. */
export function tombstone(current: ShadowRecord, now: number): ShadowRecord {
  return { deviceId: current.deviceId, name: current.name, version: current.version + 1, deleted: true, state: {}, metadata: {}, timestamp: now };
}

/** The delta message for a record, or undefined when desired matches reported. */
export function deltaMessage(record: ShadowRecord, now: number, clientToken?: string): DeltaMessage | undefined {
  const delta = computeDelta(record.state.desired, record.state.reported);
  if (!delta) return undefined;
  const msg: DeltaMessage = { state: delta, metadata: pickMetadata(delta, record.metadata.desired), version: record.version, timestamp: now };
  if (clientToken !== undefined) msg.clientToken = clientToken;
  return msg;
}

/** The full document answered on get/accepted: desired, reported, delta, metadata. */
export function fullDocument(record: ShadowRecord, now: number, clientToken?: string): ShadowDocument {
  // shallow copies: the answer is serialized at once, and only `state.delta` is added to it
  const doc: ShadowDocument = { state: { ...record.state }, metadata: record.metadata, version: record.version, timestamp: now };
  const delta = computeDelta(record.state.desired, record.state.reported);
  if (delta) doc.state.delta = delta;
  if (clientToken !== undefined) doc.clientToken = clientToken;
  return doc;
}

/** One side of an update/documents message; shares the record's objects (it is serialized at once). */
export function snapshot(record: ShadowRecord | undefined): DocumentSnapshot | null {
  if (!record || record.deleted) return null;
  return { state: record.state, metadata: record.metadata, version: record.version };
}
