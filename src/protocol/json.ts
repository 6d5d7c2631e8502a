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

/** Depth of nested objects: `{}` and `{a:1}` are 1, `{a:{b:1}}` is 2. Arrays count as leaves. */
export function objectDepth(value: JsonValue): number {
  if (!isJsonObject(value)) return 0;
  let max = 0;
  for (const key in value) {
    const d = objectDepth(value[key] as JsonValue);
    if (d > max) max = d;
  }
  return 1 + max;
}
