/**
 * Pure shadow document logic (docs/design.md §2): merging an update into the stored state,
 * per-attribute metadata, the delta, and the shapes answered on each topic. No I/O here;
 * the replica (`replica.ts`) adds persistence and publishing.
 */
import { UpdraftError } from '../errors.ts';
import { forbiddenKey, isJsonObject, type JsonObject, type JsonValue } from '../protocol/json.ts';
import type {
  DeltaMessage,
  DocumentSnapshot,
  ShadowDocument,
  ShadowLimits,
  UpdateAccepted,
  UpdateRequest,
} from '../protocol/shadow-messages.ts';
import { rememberStateText, type ShadowRecord } from '../store/state-store.ts';

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
 * `patch` merged into `target` and its metadata `meta`, as new objects: `null` deletes a key,
 * objects merge leaf by leaf, anything else (including arrays) replaces. Metadata gets
 * `{timestamp}` on every leaf written. Objects left empty by deletions are removed; an object
 * with no leaf to write changes nothing, whatever it lands on (no empty object is stored).
 *
 * Copy on write: only the objects on the patch's paths are copied; every subtree the patch
 * does not touch, and every value it writes, is shared with `target` or `patch`. Shadow
 * records, requests and answers are never mutated once built (the replica caches records and
 * the store serializes them), so sharing is safe, and an update of one leaf no longer copies
 * the whole document and its metadata twice over (a full copy was 4% of the server's time
 * in a fleet update).
 */
function merged(target: JsonObject | undefined, meta: JsonObject | undefined, patch: JsonObject, now: number): { value: JsonObject; meta: JsonObject } {
  const out: JsonObject = target ? { ...target } : {};
  const outMeta: JsonObject = meta ? { ...meta } : {};
  for (const key of Object.keys(patch)) {
    const value = patch[key] as JsonValue;
    if (value === null) {
      delete out[key];
      delete outMeta[key];
    } else if (isJsonObject(value)) {
      // own properties only: an inherited one (Object.prototype's) is never merged into
      const had = Object.hasOwn(out, key) && isJsonObject(out[key]);
      // metadata mirrors the state tree: an object's metadata is an object of its keys'
      const childMeta = had && Object.hasOwn(outMeta, key) && isJsonObject(outMeta[key]) ? (outMeta[key] as JsonObject) : undefined;
      const child = merged(had ? (out[key] as JsonObject) : undefined, childMeta, value, now);
      if (Object.keys(child.value).length > 0) {
        out[key] = child.value;
        outMeta[key] = child.meta;
      } else if (had) {
        // emptied by its deletions (a stored object is never empty)
        delete out[key];
        delete outMeta[key];
      }
      // else an object without leaves (`{}`, `{"a":{}}`) onto a value, an array or nothing
      // writes nothing: only null deletes. It deleted the value while update/accepted,
      // which echoes the request, said `{}` was set (QA)
    } else {
      out[key] = value;
      outMeta[key] = { timestamp: now };
    }
  }
  return { value: out, meta: outMeta };
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
      out[key] = want; // shared with the record, which is never mutated (see merged)
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
      out[key] = m; // shared, as in computeDelta
    }
  }
  return out;
}

/**
 * Size in bytes of a record's state as the limit counts it (state only, not metadata); its
 * JSON text is kept for the store's write of the record (`stateText`).
 */
function stateSize(state: ShadowRecord['state']): number {
  const text = JSON.stringify(state);
  rememberStateText(state, text);
  return Buffer.byteLength(text);
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
  // new top levels; below them, what the request does not touch is shared (see merged)
  const state: ShadowRecord['state'] = live ? { ...live.state } : {};
  const metadata: ShadowRecord['metadata'] = live ? { ...live.metadata } : {};
  const acceptedMeta: UpdateAccepted['metadata'] = {};
  for (const section of SECTIONS) {
    const patch = request.state[section];
    if (patch === undefined) continue;
    if (patch === null) {
      delete state[section];
      delete metadata[section];
      continue;
    }
    const result = merged(state[section], metadata[section], patch, now);
    if (Object.keys(result.value).length === 0) {
      delete state[section];
      delete metadata[section];
    } else {
      state[section] = result.value;
      metadata[section] = result.meta;
    }
    acceptedMeta[section] = requestMetadata(patch, now);
  }
  const size = stateSize(state);
  if (size > limits.maxDocumentBytes) {
    throw new UpdraftError('TOO_LARGE', `The payload exceeds the maximum size allowed: the document would be ${size} bytes, the limit is ${limits.maxDocumentBytes}`);
  }
  const version = currentVersion + 1;
  const next: ShadowRecord = { deviceId: ref.deviceId, name: ref.name, version, deleted: false, state, metadata, timestamp: now };
  const accepted: UpdateAccepted = { state: request.state, metadata: acceptedMeta, version, timestamp: now };
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
