/** JSON value types shared by the shadow documents and their validation. */
export type JsonValue = null | boolean | number | string | JsonValue[] | JsonObject;
/** A JSON object (never an array, never null). */
export interface JsonObject {
  [key: string]: JsonValue;
}

/** True for a plain JSON object (not null, not an array). */
export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * The first attribute name a shadow document may not use, anywhere in `value`, or undefined.
 * `__proto__` is refused: merged into a plain object it would reach Object.prototype (a
 * device could then change every object of the server).
 */
export function forbiddenKey(value: JsonValue): string | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  if (Array.isArray(value)) {
    for (const v of value) {
      const bad = forbiddenKey(v);
      if (bad !== undefined) return bad;
    }
    return undefined;
  }
  for (const key of Object.keys(value)) {
    if (key === '__proto__') return key;
    const bad = forbiddenKey(value[key] as JsonValue);
    if (bad !== undefined) return bad;
  }
  return undefined;
}

/** Depth of nested objects and arrays: `{}`, `{a:1}` and `[1]` are 1, `{a:{b:1}}` and `{a:[1]}` are 2. */
export function objectDepth(value: JsonValue): number {
  // an array is a level too: an object inside arrays is no way around the limit, and a value
  // nested thousands deep (8 KiB of brackets) is refused before anything walks it recursively
  if (Array.isArray(value)) {
    let max = 0;
    for (const item of value) {
      const d = objectDepth(item);
      if (d > max) max = d;
    }
    return 1 + max;
  }
  if (!isJsonObject(value)) return 0;
  let max = 0;
  for (const key in value) {
    const d = objectDepth(value[key] as JsonValue);
    if (d > max) max = d;
  }
  return 1 + max;
}
