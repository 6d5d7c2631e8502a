/** Finds an object key given more than once in a JSON text, which JSON.parse reduces to its last value. */

/** A key an object of a JSON text gives more than once. */
export interface RepeatedKey {
  /** the key, decoded (`"\u0061"` and `"a"` are one key, as JSON.parse reads them) */
  key: string;
  /** how many times that object gives it (at least 2) */
  times: number;
  /** the object's path (`plan.windows[0]`), '' for the top level */
  path: string;
}

/** One open object or array of the scan. */
interface Frame {
  /** the keys an object gave so far; undefined for an array */
  keys: Set<string> | undefined;
  /** the element an array is at (counted by its commas) */
  index: number;
  /** the key an object gave last (the name of the value that follows it) */
  last: string;
  /** an object expects a key next (after its `{` or a `,`), not a value */
  expectKey: boolean;
  /** where this container sits in its parent: a key or an index, undefined at the top */
  at: string | number | undefined;
}

/**
 * The first key an object of `text` gives twice (with how many times that object gives it,
 * and where the object is), or undefined. RFC 8259 section 4 leaves such an object's meaning
 * to the reader, and JSON.parse keeps the last value: `{"dryRun":true,"dryRun":false}` read
 * as a real run, where the sender (or a tool that merged two documents) may have meant the
 * first. JSON.parse's reviver is called once per key of the object it built, after the
 * duplicate is gone, so the text is read instead.
 *
 * `text` must be JSON that JSON.parse took: the scan only tells strings (with their escapes)
 * from structure, and keeps no grammar. One pass over the text, each character looked at once
 * (a key is decoded by JSON.parse only when it holds an escape), and one set of keys per open
 * object: time and memory linear in the text, which the caller bounds (a body's limit). Not
 * for device messages: it roughly doubles the cost of reading one, and a device is not asked
 * to send what it means once.
 */
export function repeatedKey(text: string): RepeatedKey | undefined {
  const frames: Frame[] = [];
  let top: Frame | undefined;
  // once found: the object that repeats the key, counted on to its end
  let found: { frame: Frame; key: string; times: number } | undefined;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      let j = i + 1;
      let escaped = false;
      for (; j < n; j++) {
        const d = text.charCodeAt(j);
        if (d === 0x5c /* \ */) {
          escaped = true;
          j++; // the escaped character (a `\"` does not end the string)
        } else if (d === 0x22) break;
      }
      // a key is the string an object holds where a key is expected: after `{` or `,`
      if (top?.keys !== undefined && top.expectKey) {
        const key = escaped ? (JSON.parse(text.slice(i, j + 1)) as string) : text.slice(i + 1, j);
        top.last = key;
        top.expectKey = false;
        if (found !== undefined) {
          if (found.frame === top && key === found.key) found.times++;
        } else if (top.keys.has(key)) {
          found = { frame: top, key, times: 2 };
        } else top.keys.add(key);
      }
      i = j;
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      const at = top === undefined ? undefined : top.keys === undefined ? top.index : top.last;
      top = { keys: c === 0x7b ? new Set() : undefined, index: 0, last: '', expectKey: c === 0x7b, at };
      frames.push(top);
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      if (found !== undefined && found.frame === top) return { key: found.key, times: found.times, path: pathOf(frames) };
      frames.pop();
      top = frames[frames.length - 1];
    } else if (c === 0x2c /* , */ && top !== undefined) {
      if (top.keys === undefined) top.index++;
      else top.expectKey = true;
    }
  }
  return undefined;
}

/**
 * The refusal of a repeated key, for what gave it (`request body`, a file's name):
 * `request body gives "dryRun" 2 times: give it once`. Refused as a repeated query parameter
 * is (docs/api.md), never reduced to one of its values.
 */
export function repeatedKeyMessage(source: string, r: RepeatedKey): string {
  return `${source} gives ${JSON.stringify(r.key)} ${r.times} times${r.path === '' ? '' : ` in ${r.path}`}: give it once`;
}

/** The path of the innermost of `frames` (`a.b[2]`), '' for the top level. */
function pathOf(frames: Frame[]): string {
  let path = '';
  for (const f of frames) {
    if (f.at === undefined) continue;
    path = typeof f.at === 'number' ? `${path}[${f.at}]` : path === '' ? f.at : `${path}.${f.at}`;
  }
  return path;
}
