/**
 * The shape of a configuration file: nested objects whose leaves are the schema's settings.
 * A key the schema does not know is refused by name, with the setting it most likely meant:
 * a typo (`{"mqtt": {"prot": 1884}}`) left the default in force without a word.
 */
import type { Setting } from './schema.ts';

/** Problems of the file's shape, one message each (the values themselves are checked by the schema). */
export function fileShapeErrors(values: unknown, settings: readonly Setting[]): string[] {
  const errors: string[] = [];
  if (!isObject(values)) return [`must hold a JSON object of settings, e.g. {"mqtt": {"port": 1884}}; got ${kind(values)}`];
  const paths = settings.map((s) => s.path);
  const groups = new Set(paths.flatMap((p) => p.split('.').slice(0, -1).map((_, i, parts) => parts.slice(0, i + 1).join('.'))));
  const walk = (obj: Record<string, unknown>, prefix: string) => {
    for (const [key, value] of Object.entries(obj)) {
      const at = prefix ? `${prefix}.${key}` : key;
      if (key.includes('.') && (paths.includes(at) || groups.has(at))) {
        errors.push(`${at} must be written nested, as {"${at.split('.').join('": {"')}": ...}}`);
      } else if (paths.includes(at)) {
        continue; // a setting: its value is the schema's to check
      } else if (groups.has(at)) {
        if (isObject(value)) walk(value, at);
        else {
          const inside = settings.filter((s) => s.path.startsWith(`${at}.`));
          // a secret written one level up ("webhook": "<the key>") is not quoted either
          const got = inside.some((s) => s.secret) ? `${Array.isArray(value) ? 'an array' : value === null ? 'null' : `a ${typeof value}`} (not shown: it may be a secret)` : kind(value);
          errors.push(`${at} must be an object of settings (${inside.map((s) => s.path).join(', ')}), got ${got}`);
        }
      } else {
        const near = closest(at, [...paths, ...groups]);
        errors.push(`unknown setting ${at}${near ? ` (did you mean ${near}?)` : ''}`);
      }
    }
  };
  walk(values, '');
  return errors;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function kind(v: unknown): string {
  return Array.isArray(v) ? 'an array' : v === null ? 'null' : JSON.stringify(v);
}

/** The candidate nearest to `word` (case aside) within a few edits, or undefined. */
export function closest(word: string, candidates: string[]): string | undefined {
  const w = word.toLowerCase();
  let best: string | undefined;
  let bestDistance = Math.min(3, Math.max(1, Math.floor(w.length / 3)));
  for (const c of candidates) {
    const d = editDistance(w, c.toLowerCase());
    if (d <= bestDistance && (best === undefined || d < bestDistance)) {
      best = c;
      bestDistance = d;
    }
  }
  return best;
}

/** Levenshtein distance: insertions, deletions and substitutions. */
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length]!;
}
