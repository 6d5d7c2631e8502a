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

/**
 * Whether objects and arrays nest deeper than `max` levels in `value`: `{}`, `{a:1}` and `[1]`
 * are 1 level, `{a:{b:1}}` and `{a:[1]}` are 2. An array is a level too: an object inside
 * arrays is no way around the limit.
 *
 * Iterative, and it stops at the first container past `max`: JSON.parse builds a value nested
 * hundreds of thousands deep without recursion (half a million levels of brackets fit in the
 * largest `shadow.maxDocumentBytes`, 1 MiB), and a recursive walk overflowed the stack from
 * about 10,000 levels, a 500 instead of this 400 (QA, at 64 KiB). Nothing walks a request
 * recursively before this check.
 */
export function deeperThan(value: JsonValue, max: number): boolean {
  if (typeof value !== 'object' || value === null) return false;
  const containers: (JsonValue[] | JsonObject)[] = [value];
  const levels: number[] = [1];
  while (containers.length > 0) {
    const container = containers.pop()!;
    const level = levels.pop()!;
    if (level > max) return true;
    if (Array.isArray(container)) {
      for (const item of container) {
        if (typeof item === 'object' && item !== null) {
          containers.push(item);
          levels.push(level + 1);
        }
      }
    } else {
      for (const key in container) {
        const item = container[key]!;
        if (typeof item === 'object' && item !== null) {
          containers.push(item);
          levels.push(level + 1);
        }
      }
    }
  }
  return false;
}
