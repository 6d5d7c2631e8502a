/** JSON value types shared by the shadow documents and their validation. */
import { UpdraftError } from '../errors.ts';
import { repeatedKey, type RepeatedKey } from './json-keys.ts';

export type JsonValue = null | boolean | number | string | JsonValue[] | JsonObject;
/** A JSON object (never an array, never null). */
export interface JsonObject {
  [key: string]: JsonValue;
}

/**
 * Decodes UTF-8 and refuses what is not (RFC 8259 section 8.1: JSON exchanged between systems
 * is UTF-8), where `Buffer.toString` puts U+FFFD in place of each bad byte, which was stored.
 * A BOM is kept, so JSON.parse refuses it as before. Stateless (fatal, not streaming), so one
 * serves every call. On every device message: for a 270-byte agent report it costs what
 * `toString` does (0.11-0.12 us), where `buffer.isUtf8` before `toString` costs 0.15 us.
 */
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** The text of a payload, or undefined when its bytes are not UTF-8. */
export function utf8Text(payload: Uint8Array): string | undefined {
  try {
    return strictUtf8.decode(payload);
  } catch {
    return undefined;
  }
}

/** True for a plain JSON object (not null, not an array). */
export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Why a payload is not a JSON object (`parseJsonObject`). */
export type JsonTextDefect = 'not-utf8' | 'not-json' | 'not-object';

/** What a caller answers for each `JsonTextDefect` (one constant per caller: the shadow, the REST API, the AWS door). */
export type JsonTextMessages = Readonly<Record<JsonTextDefect, string>>;

/**
 * The JSON object a payload holds (bytes decoded strictly, `utf8Text`; text as it is), or why
 * it holds none. The defect is returned, not thrown, so that callers with different errors
 * (UpdraftError, the AWS door's AwsJobsError, none for a salvaged clientToken) share it
 * without a closure or an options object per call: it runs on every device message. Its
 * strings are not checked (`requireJsonObject` checks them): a rejection still echoes the
 * clientToken of a report refused for what a string of it holds.
 */
export function parseJsonObject(payload: Uint8Array | string): JsonObject | JsonTextDefect {
  const text = typeof payload === 'string' ? payload : utf8Text(payload);
  return text === undefined ? 'not-utf8' : parseText(text);
}

function parseText(text: string): JsonObject | JsonTextDefect {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return 'not-json';
  }
  return isJsonObject(parsed) ? parsed : 'not-object';
}

/**
 * `parseJsonObject`, throwing BAD_REQUEST with the caller's message for the defect, and
 * BAD_REQUEST naming the first string or key that holds a character no store keeps
 * (`unstorableString`): every document Updraft takes (the REST API's bodies, the shadow's
 * and the other device requests' payloads) passes here. With `repeated` (the REST API's
 * bodies, not device messages: `repeatedKey` reads the whole text again), an object that
 * gives a key more than once is refused with the message it makes, where JSON.parse kept
 * the last value.
 */
export function requireJsonObject(payload: Uint8Array | string, messages: JsonTextMessages, repeated?: (found: RepeatedKey) => string): JsonObject {
  const text = typeof payload === 'string' ? payload : utf8Text(payload);
  if (text === undefined) throw new UpdraftError('BAD_REQUEST', messages['not-utf8']);
  const parsed = parseText(text);
  if (typeof parsed === 'string') throw new UpdraftError('BAD_REQUEST', messages[parsed]);
  if (repeated !== undefined) {
    const found = repeatedKey(text);
    if (found !== undefined) throw new UpdraftError('BAD_REQUEST', repeated(found));
  }
  // the text, not the value: one regular expression over it costs a sixth of a walk of the
  // value's strings (a 300-byte agent report: 80 ns, against 520 ns), and finds nothing in
  // almost every message; the value is walked only when it finds a suspect
  if ((typeof payload === 'string' ? SUSPECT_STRING : SUSPECT_ESCAPE).test(text)) {
    const bad = unstorableString(parsed, '');
    if (bad !== undefined) throw new UpdraftError('BAD_REQUEST', bad);
  }
  return parsed;
}

/**
 * Where a JSON text may hold U+0000 or a lone surrogate: as an escape (`\u0000`, `\ud800` to
 * `\udfff`), the only way in text decoded strictly from UTF-8 bytes (a raw U+0000 is no JSON,
 * and UTF-8 cannot encode a surrogate). A false alarm (`"\\u0000"`, an escaped backslash, or
 * a surrogate pair) costs a walk of the value, which finds nothing.
 */
const SUSPECT_ESCAPE = /\\u(?:0000|[dD][89a-fA-F])/;
/** `SUSPECT_ESCAPE`, for a text given as a string, which may also hold a surrogate as it is. */
const SUSPECT_STRING = /\\u(?:0000|[dD][89a-fA-F])|[\ud800-\udfff]/;

/**
 * U+0000 and an unpaired surrogate (a high one not followed by a low one, a low one not
 * preceded by a high one): no store keeps them alike. PostgreSQL's text and jsonb refuse both
 * (`unsupported Unicode escape sequence`, `invalid input syntax for type json`), SQLite keeps
 * them; and no UTF-8 can carry a lone surrogate out again (JSON.stringify escapes it, Buffer
 * writes U+FFFD). A surrogate pair (an emoji) is a character like any other.
 */
const UNSTORABLE = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/**
 * What in `text` no store keeps, as a message names it (`a NUL character (U+0000)`, `an
 * unpaired surrogate (U+D800)`), or undefined: for names read from a URL (ids, cursors) and
 * for `unstorableString`.
 */
export function unstorableChar(text: string): string | undefined {
  const found = UNSTORABLE.exec(text);
  if (found === null) return undefined;
  const code = found[0].charCodeAt(0);
  return code === 0 ? 'a NUL character (U+0000)' : `an unpaired surrogate (U+${code.toString(16).toUpperCase()})`;
}

/**
 * The message naming the first string or key of `value` (whose own path is `path`, '' for a
 * whole document) that holds what no store keeps (`unstorableChar`), or undefined:
 * `state.reported.x holds a NUL character (U+0000), which cannot be stored`, `the key "a\u0000"
 * in state.reported holds ...`. Iterative, as `jsonDefect`, so that no nesting overflows the
 * stack; it builds paths, and runs only on a text `requireJsonObject` found suspect.
 */
export function unstorableString(value: JsonValue, path: string): string | undefined {
  const holds = (item: JsonValue, at: string) => {
    const bad = typeof item === 'string' ? unstorableChar(item) : undefined;
    return bad === undefined ? undefined : `${at} holds ${bad}, which cannot be stored`;
  };
  if (typeof value !== 'object' || value === null) return holds(value, path);
  return firstAt(value, path, holds, (key, at) => {
    const bad = unstorableChar(key);
    // a key is named escaped: as it is, a NUL would cut the message where it is shown
    return bad === undefined ? undefined : `the key ${JSON.stringify(key)} ${at === '' ? 'at the top level' : `in ${at}`} holds ${bad}, which cannot be stored`;
  });
}

/**
 * The first answer `check` gives for a value of `container` (whose own path is `path`, '' for
 * a whole document) that is no array or object, or `checkKey` for a key, with its path
 * (`a.b[2]`). Walked depth-first in `jsonDefect`'s order, iteratively, so that no nesting
 * overflows the stack. It builds a path per container: run only once something was found.
 */
function firstAt(container: JsonValue[] | JsonObject, path: string, check: (item: JsonValue, at: string) => string | undefined, checkKey?: (key: string, at: string) => string | undefined): string | undefined {
  const containers: (JsonValue[] | JsonObject)[] = [container];
  const paths: string[] = [path];
  const visit = (item: JsonValue, here: string): string | undefined => {
    if (typeof item !== 'object' || item === null) return check(item, here);
    containers.push(item);
    paths.push(here);
    return undefined;
  };
  while (containers.length > 0) {
    const c = containers.pop()!;
    const at = paths.pop()!;
    if (Array.isArray(c)) {
      for (let i = 0; i < c.length; i++) {
        const found = visit(c[i]!, `${at}[${i}]`);
        if (found !== undefined) return found;
      }
    } else {
      for (const key in c) {
        const found = checkKey?.(key, at) ?? visit(c[key]!, at === '' ? key : `${at}.${key}`);
        if (found !== undefined) return found;
      }
    }
  }
  return undefined;
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

/** Why a parsed JSON value cannot be stored as it was sent (`jsonDefect`). */
export type JsonDefect =
  /** objects and arrays nest deeper than allowed */
  | { kind: 'depth' }
  /** a number beyond the double range: JSON.parse makes it ±Infinity, which JSON.stringify writes as null */
  | { kind: 'number'; path: string };

/**
 * The first defect of `value` (whose own path is `path`, e.g. `state.reported`), or undefined:
 * objects and arrays nested deeper than `maxDepth` levels (`{}`, `{a:1}` and `[1]` are 1
 * level, `{a:{b:1}}` and `{a:[1]}` are 2; an array is a level too, so an object inside arrays
 * is no way around the limit), or a number that is not finite, named by its path
 * (`state.reported.cfg.list[1]`): `1e999` parses as Infinity, and what is stored and answered
 * would be null while the replica's cache held Infinity.
 *
 * One walk, iterative, stopping at the first container past `maxDepth`: JSON.parse builds a
 * value nested hundreds of thousands deep without recursion (half a million levels of brackets
 * fit in the largest `shadow.maxDocumentBytes`, 1 MiB), and a recursive walk overflowed the
 * stack from about 10,000 levels, a 500 instead of the 400 (QA, at 64 KiB). Nothing walks a
 * request recursively before this check. It builds no path: it runs on every report, and a
 * string per container was about a third of the walk's cost (micro-benchmarks of an agent's
 * reported section: 82-144 ns with them, 56-92 ns without); a non-finite number, once found,
 * is named by `nonFinitePath`.
 */
export function jsonDefect(value: JsonValue, maxDepth: number, path: string): JsonDefect | undefined {
  if (typeof value === 'number') return Number.isFinite(value) ? undefined : { kind: 'number', path };
  if (typeof value !== 'object' || value === null) return undefined;
  const containers: (JsonValue[] | JsonObject)[] = [value];
  const levels: number[] = [1];
  while (containers.length > 0) {
    const container = containers.pop()!;
    const level = levels.pop()!;
    if (level > maxDepth) return { kind: 'depth' };
    if (Array.isArray(container)) {
      for (let i = 0; i < container.length; i++) {
        const item = container[i]!;
        if (typeof item === 'number') {
          if (!Number.isFinite(item)) return { kind: 'number', path: nonFinitePath(value, path) };
        } else if (typeof item === 'object' && item !== null) {
          containers.push(item);
          levels.push(level + 1);
        }
      }
    } else {
      for (const key in container) {
        const item = container[key]!;
        if (typeof item === 'number') {
          if (!Number.isFinite(item)) return { kind: 'number', path: nonFinitePath(value, path) };
        } else if (typeof item === 'object' && item !== null) {
          containers.push(item);
          levels.push(level + 1);
        }
      }
    }
  }
  return undefined;
}

/**
 * The path of the first non-finite number in `value`, walked as `jsonDefect` walks it (same
 * order, iterative), naming each container: the one `jsonDefect` found, since it met no
 * container past its depth before it. Only called once one was found.
 */
function nonFinitePath(value: JsonValue[] | JsonObject, path: string): string {
  return firstAt(value, path, (item, at) => (typeof item === 'number' && !Number.isFinite(item) ? at : undefined)) ?? path; // found: jsonDefect met one
}
